"""Model options shared by the Streamlit app and the HTTP API: flags, environment, defaults.

`streamlit run chat_app.py -- --model X` and `python -m minicpm_core.api --model X` accept the
same flags; each falls back to an environment variable (MINICPM_MODEL, MINICPM_DTYPE,
MINICPM_DEVICE, ...) and then to the seed tutorial's model and download place.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass

from .families import DEFAULT_FAMILY

DEFAULT_MODEL = DEFAULT_FAMILY.default_model.id  # the seed tutorial's
DEFAULT_CACHE_DIR = "/root/autodl-tmp"  # where the seed tutorial downloads to
DEFAULT_MAX_QUEUE = 32  # requests that may wait for a free slot; one more is refused (HTTP 429)


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class ModelOptions:
    model: str = DEFAULT_MODEL
    dtype: str = "auto"
    device: str = "auto"
    cache_dir: str = DEFAULT_CACHE_DIR
    demo: bool = False
    trust_remote_code: bool = False
    max_concurrent: int = 1
    max_queue: int = DEFAULT_MAX_QUEUE


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    env = os.environ.get
    group = parser.add_argument_group("model")
    group.add_argument("--model", default=env("MINICPM_MODEL", DEFAULT_MODEL),
                       help="local checkpoint directory or ModelScope id (env MINICPM_MODEL; default %(default)s)")
    group.add_argument("--dtype", default=env("MINICPM_DTYPE", "auto"),
                       choices=["auto", "bfloat16", "float16", "float32"], help="weights dtype (env MINICPM_DTYPE)")
    group.add_argument("--device", default=env("MINICPM_DEVICE", "auto"),
                       help="auto, cuda, cuda:N or cpu (env MINICPM_DEVICE)")
    group.add_argument("--cache-dir", default=env("MINICPM_CACHE_DIR", DEFAULT_CACHE_DIR),
                       help="where model ids are looked up and downloaded (env MINICPM_CACHE_DIR)")
    group.add_argument("--demo", action="store_true", default=_env_flag("MINICPM_DEMO"),
                       help="run the tiny demo model that comes with the app (canned answers to a few questions, "
                            "no download) instead of MiniCPM-2B (env MINICPM_DEMO=1)")
    group.add_argument("--trust-remote-code", action="store_true",
                       help="execute the Python code shipped inside the checkpoint (off by default)")
    group.add_argument("--max-concurrent", type=int, default=int(env("MINICPM_MAX_CONCURRENT", "1")),
                       help="replies generated at once; others wait in a fair queue (default %(default)s)")
    group.add_argument("--max-queue", type=int, default=int(env("MINICPM_MAX_QUEUE", str(DEFAULT_MAX_QUEUE))),
                       help="requests that may wait for a free slot; more are refused (HTTP 429) with a hint "
                            "of when to retry (env MINICPM_MAX_QUEUE; default %(default)s)")


def model_options(args: argparse.Namespace) -> ModelOptions:
    return ModelOptions(model=args.model, dtype=args.dtype, device=args.device, cache_dir=args.cache_dir,
                        demo=args.demo, trust_remote_code=args.trust_remote_code,
                        max_concurrent=args.max_concurrent, max_queue=args.max_queue)


def parse_model_options(argv: Sequence[str] | None = None) -> ModelOptions:
    parser = argparse.ArgumentParser(add_help=False)
    add_model_arguments(parser)
    args, _ = parser.parse_known_args(argv)
    return model_options(args)


def load_engine(options: ModelOptions):
    """Load the model the options name (or the demo model) and start an engine on it."""
    from .engine import Engine
    from .loader import load_model

    if options.demo:
        from . import paths

        lm = load_model(paths.demo_checkpoint_dir(), device=options.device, dtype=options.dtype, demo=True)
    else:
        lm = load_model(options.model, device=options.device, dtype=options.dtype,
                        cache_dir=options.cache_dir, trust_remote_code=options.trust_remote_code)
    return Engine(lm, max_concurrent=options.max_concurrent, max_queue=options.max_queue)
