"""MiniCPM5 (5-2B, 5-1B and their -SFT checkpoints): plain Llama with ChatML and a thinking mode.

The checkpoints are standard `LlamaForCausalLM` (GQA with 16 query and 2 KV heads, an explicit
head_dim, untied embeddings, 131,072 positions), native in transformers: the config.json maps onto
`LlamaConfig` unchanged and no code shipped in a checkpoint is needed or run.

The chat format is ChatML, with a `<think>…</think>` block switched by `enable_thinking` in the
checkpoint's own template. The template ships in the checkpoint (`chat_template.jinja`, or
`chat_template` in tokenizer_config.json) and is always used: there is no fallback, a checkpoint
without one is refused (`require_chat_template`). A turn ends on the special token `<|im_end|>`.
The template writes the BOS itself, so its text is encoded without adding special tokens (one BOS,
as transformers' `apply_chat_template(tokenize=True)`, vLLM and llama.cpp send). Tool calls follow
the `minicpm5` format of `minicpm_core.tools`.

The family is recognised from the files: a Llama config.json AND a ChatML chat template, never from
the directory's name. It deliberately says nothing about splitting the reasoning from the answer;
that is `minicpm_core.reasoning`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ..errors import ModelNotFound
from .base import KnownModel, ModelFamily

CONTEXT_LENGTH = 131072
IM_START, IM_END = "<|im_start|>", "<|im_end|>"
LLAMA_TYPE, LLAMA_CLASS = "llama", "LlamaForCausalLM"
TEMPLATE_FILE = "chat_template.jinja"

# OpenBMB's recommendations. 5-2B: temperature 1.0, top_p 0.95, min_p 0 (llama.cpp's default min_p
# of 0.05 makes it repeat). No repetition penalty is recommended: 1.0 undoes MiniCPM-2B's 1.02.
DEFAULTS = {"temperature": 1.0, "top_p": 0.95, "min_p": 0.0, "repetition_penalty": 1.0}
# 5-1B: temperature 0.9 with thinking, 0.7 without (its model card and vLLM's recipe; top_p 0.95).
# Applied to 1B-SFT as well: its card gives no values of its own (unconfirmed).
_ONE_B = {True: MappingProxyType(dict(DEFAULTS, temperature=0.9)),
          False: MappingProxyType(dict(DEFAULTS, temperature=0.7))}
RECOMMENDED_BY_MODEL: Mapping[str, Mapping[bool, Mapping[str, float]]] = MappingProxyType({
    "OpenBMB/MiniCPM5-1B": _ONE_B,
    "OpenBMB/MiniCPM5-1B-SFT": _ONE_B,
})

# Our presets beside the recommended values ("balanced"): cooler and narrower, or hotter. Not OpenBMB's.
PRESET_CHANGES = {"precise": {"temperature": 0.5, "top_p": 0.8}, "creative": {"temperature": 1.2}}

# Sizes are bf16 weight bytes: 2 bytes per parameter. 1B: 1,080,632,832 parameters (model card);
# 2B: 2,516,756,480, computed from its published shape with untied embeddings, which matches the
# 5,033,512,960 weight bytes a third party reports (approx.; OpenBMB gives "about 2.5B").
KNOWN_MODELS = (  # the first is the family's default
    # OpenBMB's deployment notes give thinking off for 5-1B only; SGLang's cookbook shows it on 5-2B
    # (unconfirmed which holds): the switch stays, and the note says what OpenBMB says.
    KnownModel("OpenBMB/MiniCPM5-2B", 5.03, "bfloat16",
               "thinks; OpenBMB documents thinking off for 5-1B only; approx. 2.5B parameters"),
    KnownModel("OpenBMB/MiniCPM5-1B", 2.16, "bfloat16", "thinking on or off; the smallest"),
    KnownModel("OpenBMB/MiniCPM5-2B-SFT", 5.03, "bfloat16", "before RL: supervised fine-tuning only"),
    KnownModel("OpenBMB/MiniCPM5-1B-SFT", 2.16, "bfloat16", "before RL: supervised fine-tuning only"),
)


def shipped_chat_template(model_dir: Path) -> str | None:
    """The chat template the checkpoint ships: chat_template.jinja, else tokenizer_config.json's."""
    path = Path(model_dir) / TEMPLATE_FILE
    if path.is_file():
        return path.read_text(encoding="utf-8")
    try:
        config = json.loads((Path(model_dir) / "tokenizer_config.json").read_text(encoding="utf-8"))
        template = config.get("chat_template")
    except (OSError, ValueError, AttributeError):
        return None
    if isinstance(template, list):  # named templates: [{"name": "default", "template": "..."}, ...]
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default")
    return template if isinstance(template, str) else None


def require_chat_template(model_dir: Path) -> str:
    """The shipped template, or ModelNotFound: MiniCPM5 has no fallback template of ours."""
    template = shipped_chat_template(model_dir)
    if template is None:
        raise ModelNotFound(
            f"{model_dir} has no chat template ({TEMPLATE_FILE} or chat_template in tokenizer_config.json). "
            "A MiniCPM5 checkpoint ships one: download it again, completely.")
    return template


def _is_llama(config: dict[str, Any]) -> bool:
    return config.get("model_type") == LLAMA_TYPE or LLAMA_CLASS in (config.get("architectures") or [])


class MiniCPM5Family(ModelFamily):
    """MiniCPM5 as plain Llama; see the module docstring."""

    def mismatch(self, config: dict[str, Any], model_dir: Path) -> str | None:
        architectures = config.get("architectures") or []
        if not _is_llama(config):
            return f"it is not a Llama config (model_type {config.get('model_type')!r}, architectures {architectures})"
        template = shipped_chat_template(model_dir)
        if template is None:
            return "it ships no chat template"
        if IM_START not in template:
            return f"its chat template is not ChatML (no {IM_START})"
        return None

    def missing_files(self, config: dict[str, Any], model_dir: Path) -> list[str]:
        """A Llama download without its chat template is incomplete: MiniCPM5's template ships in the files."""
        if _is_llama(config) and shipped_chat_template(model_dir) is None:
            return [f"chat template ({TEMPLATE_FILE}, or chat_template in tokenizer_config.json)"]
        return []

    def transformers_config(self, config: dict[str, Any]):
        """The config.json as a LlamaConfig, unchanged: MiniCPM5 is transformers' Llama."""
        from transformers import LlamaConfig

        return LlamaConfig.from_dict(dict(config, architectures=[self.model_class_name]))

    def defaults_for(self, model_id: str | None, thinking: bool | None = None) -> Mapping[str, float]:
        """Recommended sampling for one checkpoint (by its id) in one mode; the family's otherwise.
        `thinking` None (the template leaves it to the model, which then thinks) counts as thinking."""
        return RECOMMENDED_BY_MODEL.get(model_id or "", {}).get(thinking is not False, self.defaults)


MINICPM5 = MiniCPM5Family(
    name="minicpm5",
    label="MiniCPM5",
    context_length=CONTEXT_LENGTH,
    model_class_name=LLAMA_CLASS,
    stop_tokens=(IM_END,),
    fallback_chat_template=None,
    defaults=DEFAULTS,
    preset_changes=PRESET_CHANGES,
    known_models=KNOWN_MODELS,
    thinking=True,
    template_writes_bos=True,  # the template opens with `{{- bos_token }}`; the tokenizer would add a second
    tool_format="minicpm5",
)
