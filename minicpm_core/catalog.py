"""The models a server can switch to: every published checkpoint of every supported family, then each
family's demo, each as the ModelSettings that load it (minicpm_core.slot switches to those).

A choice keeps everything of the running settings but the model itself (device, dtype, cache folder,
concurrency), so switching never changes how the server runs, only what it runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import download, paths
from .families import FAMILIES, ModelFamily, by_name
from .settings import ModelSettings


@dataclass(frozen=True)
class ModelChoice:
    family: ModelFamily
    settings: ModelSettings  # what loading it takes
    size_gb: float | None    # the download's size; None for a demo (it ships with the app)
    dtype: str = ""
    note: str = ""

    @property
    def name(self) -> str:
        return self.settings.name

    @property
    def demo(self) -> bool:
        return self.settings.demo

    @property
    def directory(self) -> Path:
        """Where its checkpoint is (a known model's download folder under the cache folder)."""
        if self.demo:
            return paths.demo_model_dir(self.settings.demo_family)
        return download.default_model_dir(self.settings.model, self.settings.cache_dir)

    def downloaded(self) -> bool:
        """Whether it can be loaded without downloading: a demo, or a complete download."""
        return self.demo or (self.directory.is_dir() and not download.missing_files(self.directory))

    def is_loaded(self, settings: ModelSettings, loaded_path: Path | None = None) -> bool:
        """Whether `settings` (a slot's) load this choice, also when --model named its folder by path."""
        if settings == self.settings:
            return True
        if loaded_path is None:
            return False
        return _same_dir(loaded_path, self.directory)


def choices(current: ModelSettings) -> list[ModelChoice]:
    """Every known model of every family (each family's default first), then each family's demo."""
    known = [ModelChoice(family, _with(current, model=model.id, demo=False), model.size_gb, model.dtype, model.note)
             for family in FAMILIES for model in family.known_models]
    demos = [ModelChoice(by_name(name), _with(current, demo=True, demo_family=name), None)
             for name in paths.DEMO_FAMILIES]
    return known + demos


def download_size_gb(model_id: str) -> float | None:
    """The download size of a published checkpoint of a supported family (decimal GB), None if unknown."""
    known = (family.known_model(model_id) for family in FAMILIES)
    return next((model.size_gb for model in known if model is not None), None)


def _with(current: ModelSettings, **changes) -> ModelSettings:
    # A demo's `model` is never read, so the running one's is kept: it only takes part in equality.
    return current.model_copy(update=changes)


def _same_dir(a: Path, b: Path) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False
