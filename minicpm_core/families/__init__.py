"""The model families this project serves, and which one a checkpoint belongs to.

`detect(model_dir)` reads the checkpoint's config.json and asks each family in FAMILIES whether it
recognises it (by its keys, never by the directory's name or `model_type`, which transformers may
route elsewhere). A checkpoint no family recognises gets ModelNotFound listing the supported
families and why each one does not fit. `DEFAULT_FAMILY` (MiniCPM-2B) is what the project assumes
where no checkpoint is at hand: the default model id, a remote server's unknown context length.

Everything that differs between families lives in the family objects (base.py); the modules
outside this package ask them rather than naming a template, marker, context length or model class.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import ModelNotFound
from .base import KnownModel, ModelFamily
from .minicpm2b import MINICPM_2B
from .minicpm5 import MINICPM5

# Asked in this order; MiniCPM-2B first (the default, and what a bare id or no checkpoint means).
FAMILIES: tuple[ModelFamily, ...] = (MINICPM_2B, MINICPM5)
DEFAULT_FAMILY: ModelFamily = MINICPM_2B

__all__ = ["DEFAULT_FAMILY", "FAMILIES", "KnownModel", "ModelFamily", "by_name", "detect", "read_config",
           "supported_labels"]


def by_name(name: str) -> ModelFamily:
    """The family whose stable `name` this is; ValueError naming the known ones otherwise."""
    for family in FAMILIES:
        if family.name == name:
            return family
    raise ValueError(f"unknown model family {name!r}; known: {', '.join(f.name for f in FAMILIES)}")


def supported_labels() -> str:
    return ", ".join(family.label for family in FAMILIES)


def read_config(model_dir: str | Path) -> dict[str, Any]:
    """The checkpoint's config.json as a dict; ModelNotFound saying what is wrong with it otherwise."""
    path = Path(model_dir) / "config.json"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelNotFound(f"No config.json in {model_dir}.") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelNotFound(f"{path} is not readable JSON ({exc}); the download may be incomplete.") from None
    if not isinstance(raw, dict):
        raise ModelNotFound(f"{path} is not a model config (a JSON object); the download may be damaged.")
    return raw


def detect(model_dir: str | Path, config: dict[str, Any] | None = None) -> ModelFamily:
    """The family of the checkpoint in `model_dir`, from its files (`config`: its config.json, if read)."""
    model_dir = Path(model_dir)
    if config is None:
        config = read_config(model_dir)
    for family in FAMILIES:
        if family.recognises(config, model_dir):
            return family
    reasons = "; ".join(f"not {family.label}: {_why_not(family, config, model_dir)}" for family in FAMILIES)
    raise ModelNotFound(
        f"{model_dir / 'config.json'} is not the config of a supported model family ({reasons}). "
        f"Supported families: {'; '.join(_family_summary(f) for f in FAMILIES)}.",
        code="unsupported_family", path=model_dir, families=supported_labels())


def _why_not(family: ModelFamily, config: dict[str, Any], model_dir: Path) -> str:
    try:
        return family.mismatch(config, model_dir) or "it does not match"
    except NotImplementedError:  # a family that only answers yes or no
        return "it does not match"


def _family_summary(family: ModelFamily) -> str:
    return f"{family.label} (e.g. {', '.join(model.id for model in family.known_models[:3])})"
