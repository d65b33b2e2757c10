"""MiniCPM chat (MiniCPM-2B and MiniCPM5): loading, prompting, the streaming engine and the HTTP API.

This package never imports Streamlit; the app in `chat_app.py`, `app_pages/` and `ui/` sits on top of it.
Importing it is cheap: torch and transformers load when a model does.
"""

from .errors import ContextOverflow, GenerationFailed, InvalidRequest, MiniCPMError, ModelNotFound
from .params import PRESETS, GenerationParams

__all__ = ["ContextOverflow", "GenerationFailed", "InvalidRequest", "MiniCPMError", "ModelNotFound",
           "PRESETS", "GenerationParams", "load_model", "Engine", "LoadedModel"]


def __getattr__(name):  # lazy: `from minicpm_core import load_model` without importing torch up front
    if name in ("load_model", "LoadedModel"):
        from . import loader
        return getattr(loader, name)
    if name == "Engine":
        from .engine import Engine
        return Engine
    raise AttributeError(name)
