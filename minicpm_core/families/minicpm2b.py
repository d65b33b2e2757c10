"""MiniCPM-2B (sft/dpo, bf16/fp16/fp32) and MiniCPM-1B-sft, which has the same architecture.

Its config.json maps onto transformers' native Granite architecture. MiniCPM-2B is a Llama decoder
with three muP scalars, and Granite has exactly those knobs:

    embedding_multiplier = scale_emb
    residual_multiplier  = scale_depth / sqrt(num_hidden_layers)
    logits_scaling       = hidden_size / dim_model_base
    attention_multiplier = 1 / sqrt(head_dim)   (Granite's default of 1.0 would be wrong)

so no modeling code of our own (and none shipped in a checkpoint) is needed. Older uploads lack
`model_type` and say `max_position_embeddings: 2048`; both are handled here. The family is
recognised by those scalars in config.json, never by the checkpoint's name or `model_type`.

The chat format is `[system text]<用户>{question}<AI>{answer}<用户>{question}<AI>`: the template tags
only user turns. `<用户>` and `<AI>` are not special tokens (each is several pieces), so a reply
ends on text: the engine looks for them in what it decodes.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ..errors import ModelNotFound
from .base import KnownModel, ModelFamily

CONTEXT_LENGTH = 4096  # what MiniCPM-2B was trained for; the first fp32 upload understated it
# The keys that make a config.json MiniCPM-2B's: the shape plus the three muP scalars.
REQUIRED_KEYS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size",
                 "intermediate_size", "scale_emb", "scale_depth", "dim_model_base")
# The upstream template, exactly as OpenBMB ships it in tokenizer_config.json.
CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'user' %}"
    "{{'<用户>' + message['content'].strip() + '<AI>'}}{% else %}{{message['content'].strip()}}"
    "{% endif %}{% endfor %}"
)
MODEL_TYPES = ("minicpm", None)  # the first fp32 upload has no model_type
USER_TAG, ASSISTANT_TAG = "<用户>", "<AI>"
# The seed tutorial's server: temperature 0.5, top_p 0.8, repetition_penalty 1.02.
SEED_DEFAULTS = {"temperature": 0.5, "top_p": 0.8, "repetition_penalty": 1.02}
# The presets beside the seed's values ("balanced"), as this project has always had them.
PRESET_CHANGES = {"precise": {"temperature": 0.1, "top_p": 0.5},
                  "creative": {"temperature": 0.9, "top_p": 0.95, "repetition_penalty": 1.05}}


class MiniCPM2BFamily(ModelFamily):
    """MiniCPM-2B's config mapped onto Granite; see the module docstring."""

    def mismatch(self, config: dict[str, Any], model_dir: Path) -> str | None:
        missing = [k for k in REQUIRED_KEYS if k not in config]
        if missing:
            return f"it lacks {', '.join(missing)}"
        model_type = config.get("model_type")
        if model_type not in MODEL_TYPES:  # MiniCPM3's config carries the muP scalars too: not this model
            return f"its model_type is {model_type!r}, not MiniCPM-2B's ({MODEL_TYPES[0]!r}, or none in old uploads)"
        return None

    def transformers_config(self, config: dict[str, Any]):
        """Build the Granite config that computes exactly MiniCPM-2B's forward pass."""
        from transformers import GraniteConfig

        layers = config["num_hidden_layers"]
        heads = config["num_attention_heads"]
        head_dim = config["hidden_size"] // heads
        rope = config.get("rope_scaling") or {}
        if rope:
            raise ModelNotFound(f"rope_scaling={rope!r} is not MiniCPM-2B (the 128k variant is not supported).")
        return GraniteConfig(
            vocab_size=config["vocab_size"],
            hidden_size=config["hidden_size"],
            intermediate_size=config["intermediate_size"],
            num_hidden_layers=layers,
            num_attention_heads=heads,
            num_key_value_heads=config.get("num_key_value_heads") or heads,
            hidden_act=config.get("hidden_act", "silu"),
            max_position_embeddings=max(config.get("max_position_embeddings", CONTEXT_LENGTH), CONTEXT_LENGTH),
            rms_norm_eps=config.get("rms_norm_eps", 1e-5),
            bos_token_id=config.get("bos_token_id", 1),
            eos_token_id=config.get("eos_token_id", 2),
            pad_token_id=config.get("pad_token_id"),
            tie_word_embeddings=config.get("tie_word_embeddings", True),
            rope_parameters={"rope_type": "default", "rope_theta": float(config.get("rope_theta", 10000.0))},
            attention_bias=config.get("attention_bias", False),
            embedding_multiplier=float(config["scale_emb"]),
            residual_multiplier=float(config["scale_depth"]) / math.sqrt(layers),
            logits_scaling=config["hidden_size"] / config["dim_model_base"],
            attention_multiplier=1.0 / math.sqrt(head_dim),
            architectures=[self.model_class_name],
        )


MINICPM_2B = MiniCPM2BFamily(
    name="minicpm-2b",
    label="MiniCPM-2B",
    context_length=CONTEXT_LENGTH,
    model_class_name="GraniteForCausalLM",
    stop_markers=(USER_TAG, ASSISTANT_TAG),
    fallback_chat_template=CHAT_TEMPLATE,
    defaults=SEED_DEFAULTS,
    preset_changes=PRESET_CHANGES,
    tokenizer_files=("tokenizer.model", "tokenizer.json"),  # sentencepiece upstream; tokenizer.json beside it
    known_models=(  # the first is the seed tutorial's choice, and the default
        KnownModel("OpenBMB/MiniCPM-2B-sft-fp32", 10.9, "float32", "the seed tutorial's model"),
        KnownModel("OpenBMB/MiniCPM-2B-sft-bf16", 5.5, "bfloat16"),
        KnownModel("OpenBMB/MiniCPM-2B-dpo-fp16", 5.5, "float16", "for GPUs without bfloat16 (V100, T4)"),
        KnownModel("OpenBMB/MiniCPM-2B-dpo-bf16", 5.5, "bfloat16"),
        KnownModel("OpenBMB/MiniCPM-2B-dpo-fp32", 10.9, "float32"),
        KnownModel("OpenBMB/MiniCPM-1B-sft-bf16", 2.7, "bfloat16", "the same architecture, smaller"),
    ),
)
