"""MiniCPM-2B's config.json mapped onto transformers' native Granite architecture.

MiniCPM-2B is a Llama decoder with three muP scalars, and Granite has exactly those knobs:

    embedding_multiplier = scale_emb
    residual_multiplier  = scale_depth / sqrt(num_hidden_layers)
    logits_scaling       = hidden_size / dim_model_base
    attention_multiplier = 1 / sqrt(head_dim)   (Granite's default of 1.0 would be wrong)

so no modeling code of our own (and none shipped in a checkpoint) is needed. Older uploads lack
`model_type` and say `max_position_embeddings: 2048`; both are handled here.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from transformers import GraniteConfig

from .errors import ModelNotFound

MINICPM_CONTEXT = 4096  # what MiniCPM-2B was trained for; the first fp32 upload understated it
REQUIRED_KEYS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size",
                 "intermediate_size", "scale_emb", "scale_depth", "dim_model_base")


def read_minicpm_config(model_dir: Path) -> dict[str, Any]:
    path = Path(model_dir) / "config.json"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelNotFound(f"No config.json in {model_dir}.") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelNotFound(f"{path} is not readable JSON ({exc}); the download may be incomplete.") from None
    missing = [k for k in REQUIRED_KEYS if k not in raw]
    if missing:
        raise ModelNotFound(
            f"{path} is not a MiniCPM-2B config: it lacks {', '.join(missing)}. "
            "This project serves MiniCPM-2B checkpoints (sft/dpo, bf16/fp16/fp32)."
        )
    return raw


def granite_config_from_minicpm(raw: dict[str, Any]) -> GraniteConfig:
    """Build the Granite config that computes exactly MiniCPM-2B's forward pass."""
    layers = raw["num_hidden_layers"]
    heads = raw["num_attention_heads"]
    head_dim = raw["hidden_size"] // heads
    rope = raw.get("rope_scaling") or {}
    if rope:
        raise ModelNotFound(f"rope_scaling={rope!r} is not MiniCPM-2B (the 128k variant is not supported).")
    return GraniteConfig(
        vocab_size=raw["vocab_size"],
        hidden_size=raw["hidden_size"],
        intermediate_size=raw["intermediate_size"],
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=raw.get("num_key_value_heads") or heads,
        hidden_act=raw.get("hidden_act", "silu"),
        max_position_embeddings=max(raw.get("max_position_embeddings", MINICPM_CONTEXT), MINICPM_CONTEXT),
        rms_norm_eps=raw.get("rms_norm_eps", 1e-5),
        bos_token_id=raw.get("bos_token_id", 1),
        eos_token_id=raw.get("eos_token_id", 2),
        pad_token_id=raw.get("pad_token_id"),
        tie_word_embeddings=raw.get("tie_word_embeddings", True),
        rope_parameters={"rope_type": "default", "rope_theta": float(raw.get("rope_theta", 10000.0))},
        attention_bias=raw.get("attention_bias", False),
        embedding_multiplier=float(raw["scale_emb"]),
        residual_multiplier=float(raw["scale_depth"]) / math.sqrt(layers),
        logits_scaling=raw["hidden_size"] / raw["dim_model_base"],
        attention_multiplier=1.0 / math.sqrt(head_dim),
        architectures=["GraniteForCausalLM"],
    )
