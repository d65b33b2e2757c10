"""Minimal stand-in for the family interface (the `family` branch writes the real base.py).

Only here so that minicpm5.py and its tests run on this branch; the names and fields follow the
interface the lead fixed: KnownModel, and ModelFamily with `recognises`/`mismatch` and
`transformers_config`.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any


@dataclass(frozen=True)
class KnownModel:
    id: str               # ModelScope id, e.g. "OpenBMB/MiniCPM-2B-sft-bf16"
    size_gb: float        # download size
    dtype: str            # "bfloat16" | "float16" | "float32"
    note: str = ""


@dataclass(frozen=True, eq=False)
class ModelFamily:
    name: str
    label: str
    context_length: int
    model_class_name: str
    stop_markers: tuple[str, ...] = ()
    stop_tokens: tuple[str, ...] = ()
    fallback_chat_template: str | None = None
    defaults: Mapping[str, float] = field(default_factory=dict)
    known_models: tuple[KnownModel, ...] = ()
    thinking: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "defaults", MappingProxyType(dict(self.defaults)))

    @property
    def model_class(self) -> type:
        return getattr(importlib.import_module("transformers"), self.model_class_name)

    def recognises(self, config: dict[str, Any], model_dir: Path) -> bool:
        return self.mismatch(config, model_dir) is None

    def mismatch(self, config: dict[str, Any], model_dir: Path) -> str | None:
        raise NotImplementedError

    def transformers_config(self, config: dict[str, Any]):
        raise NotImplementedError
