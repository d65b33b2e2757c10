"""What differs between model families, as one small object per family.

A family is everything the rest of the project must know to serve a checkpoint beyond its weights:
how its config.json becomes a transformers config and model class, the chat template to use when
the checkpoint ships none, the text or special tokens that end a reply, its context length, the
sampling values its authors recommend, and the checkpoint ids it is published under.

It deliberately holds no code that runs a model: the loader, the prompt module and the engine ask a
family for values and stay the same for every family. Nothing here imports torch or transformers
at import time (`model_class` and `transformers_config` import them when called).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import PretrainedConfig


@dataclass(frozen=True)
class KnownModel:
    """A published checkpoint of a family, as the model list and the download command show it."""

    id: str               # ModelScope id, e.g. "OpenBMB/MiniCPM-2B-sft-bf16"
    size_gb: float        # download size
    dtype: str            # "bfloat16" | "float16" | "float32"
    note: str = ""


def _frozen(mapping: Mapping[str, float]) -> Mapping[str, float]:
    return MappingProxyType(dict(mapping))


# eq=False: one instance per family, compared (and hashed, e.g. as a cache key) by identity.
@dataclass(frozen=True, eq=False)
class ModelFamily:
    """One model family. Subclasses implement `recognises` and `transformers_config`."""

    name: str                          # stable id: "minicpm-2b", "minicpm5"
    label: str                         # shown to users: "MiniCPM-2B"
    context_length: int                # tokens the family was trained for
    model_class_name: str              # the transformers class that runs it, e.g. "LlamaForCausalLM"
    stop_markers: tuple[str, ...] = ()  # TEXT that ends a reply, found in the decoded text
    stop_tokens: tuple[str, ...] = ()   # SPECIAL tokens that end a turn; ids via the tokenizer
    fallback_chat_template: str | None = None  # used only when the checkpoint ships none
    defaults: Mapping[str, float] = field(default_factory=dict)  # by GenerationParams field name
    known_models: tuple[KnownModel, ...] = ()  # the first one is the family's default model
    tokenizer_files: tuple[str, ...] = ("tokenizer.json",)  # any one of them makes the tokenizer complete
    thinking: bool = False             # the template takes enable_thinking
    # How a rendered template becomes ids. False: the tokenizer adds its special tokens (BOS), as
    # MiniCPM-2B's chat() does over a template without one. True: the template writes them itself
    # (`{{- bos_token }}`), so the text is encoded as it is, as apply_chat_template(tokenize=True),
    # vLLM and llama.cpp do: one BOS, never two.
    template_writes_bos: bool = False
    tool_format: str | None = None     # name of the tool-call format (minicpm_core.tools); None: no tools
    # The presets other than "balanced" (which is the recommended values), as changes to those values
    # by field name: {"precise": {...}, "creative": {...}}; see `presets`.
    preset_changes: Mapping[str, Mapping[str, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "defaults", _frozen(self.defaults))
        object.__setattr__(self, "preset_changes",
                           MappingProxyType({name: _frozen(c) for name, c in self.preset_changes.items()}))

    @property
    def model_class(self) -> type:
        """The transformers model class, imported on first use (torch comes with it)."""
        return getattr(importlib.import_module("transformers"), self.model_class_name)

    @property
    def default_model(self) -> KnownModel:
        return self.known_models[0]

    def known_model(self, source: str | Path | None) -> KnownModel | None:
        """The published checkpoint `source` (what --model was) is, if it is one: its id, in any case,
        or a local directory named as the id's last part (how a download lays it out); else None."""
        if not source:
            return None
        text = str(source).strip().rstrip("/\\")
        name = Path(text).name.lower()
        for model in self.known_models:
            if text.lower() == model.id.lower() or name == model.id.rsplit("/", 1)[-1].lower():
                return model
        return None

    def defaults_for(self, model_id: str | None, thinking: bool | None = None) -> Mapping[str, float]:
        """Recommended sampling for one checkpoint (by its id) in one mode; a family whose checkpoints
        all share one recommendation answers `defaults` whatever the arguments."""
        return self.defaults

    def presets(self, model_id: str | None = None, thinking: bool | None = None) -> dict[str, dict[str, float]]:
        """The sidebar's presets for one checkpoint and mode, in their order: "balanced" is the
        recommended values (`defaults_for`), the others are those values with `preset_changes`."""
        base = dict(self.defaults_for(model_id, thinking))
        changes = {name: dict(c) for name, c in self.preset_changes.items()}
        named = {**changes, "balanced": {}}
        order: list[str] = [name for name in ("precise", "balanced", "creative") if name in named]
        order += [name for name in named if name not in order]
        return {name: {**base, **named[name]} for name in order}

    def encode_rendered(self, text: str, tokenizer) -> list[int]:
        """The ids of a rendered chat template, with exactly one BOS (see `template_writes_bos`)."""
        return list(tokenizer(text, add_special_tokens=not self.template_writes_bos)["input_ids"])

    def kv_bytes_per_token(self, config: Mapping[str, Any], dtype_bytes: int) -> int:
        """Bytes one token's keys and values take in the cache: 2 (K and V) x layers x KV heads x
        head_dim x `dtype_bytes`, from a config.json-shaped mapping. `head_dim` when given (MiniCPM5's is
        not hidden_size / heads), and the KV heads of grouped-query attention, not the query heads."""
        heads = config["num_attention_heads"]
        kv_heads = config.get("num_key_value_heads") or heads
        head_dim = config.get("head_dim") or config["hidden_size"] // heads
        return 2 * config["num_hidden_layers"] * kv_heads * head_dim * dtype_bytes

    def recognises(self, config: dict[str, Any], model_dir: Path) -> bool:
        """Whether the checkpoint in `model_dir` (its parsed config.json: `config`) is of this family."""
        return self.mismatch(config, model_dir) is None

    def mismatch(self, config: dict[str, Any], model_dir: Path) -> str | None:
        """Why the checkpoint is not of this family, in a few words for an error message; None if it is."""
        raise NotImplementedError

    def missing_files(self, config: dict[str, Any], model_dir: Path) -> list[str]:
        """What a download of this family's layout (judged by `config` alone) lacks beyond config.json,
        weights and tokenizer, which every family needs; one entry per missing piece."""
        return []

    def transformers_config(self, config: dict[str, Any]) -> PretrainedConfig:
        """The transformers config that makes `model_class` compute this family's forward pass."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<model family {self.name}>"
