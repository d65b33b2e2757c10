"""`python -m minicpm_core.api`: load the model once, then serve it with uvicorn.

Same model flags as the Streamlit app (`--model`, `--dtype`, `--device`, ..., each with an env
fallback), plus where to listen, an optional API key and whether to log prompt text. A model that
cannot be loaded ends the program with its message (which names the path and the download
command) and exit status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import sys
from collections.abc import Sequence

DEFAULT_HOST = "0.0.0.0"
DEFAULT_PORT = 6006  # the seed tutorial's port (autodl maps it to the outside)


def build_parser() -> argparse.ArgumentParser:
    from ..options import add_model_arguments

    parser = argparse.ArgumentParser(
        prog="python -m minicpm_core.api",
        description="Serve MiniCPM-2B over HTTP: the seed tutorial's POST / and OpenAI's /v1/chat/completions.")
    add_model_arguments(parser)
    server = parser.add_argument_group("server")
    server.add_argument("--host", default=os.environ.get("MINICPM_HOST", DEFAULT_HOST),
                        help="address to listen on (env MINICPM_HOST; default %(default)s)")
    server.add_argument("--port", type=int, default=int(os.environ.get("MINICPM_PORT", DEFAULT_PORT)),
                        help="port (env MINICPM_PORT; default %(default)s)")
    server.add_argument("--api-key", default=os.environ.get("MINICPM_API_KEY") or None,
                        help="require this key as 'Authorization: Bearer KEY' or 'x-api-key: KEY' "
                             "(env MINICPM_API_KEY; default: no key)")
    server.add_argument("--served-model-name", default=None,
                        help="model name reported by /v1/models (default: the --model value, a local path by its "
                             "directory's name)")
    server.add_argument("--log-prompts", action="store_true",
                        help="also log prompt and reply text (off: only token counts and timings)")
    return parser


def exposure_warning(host: str, api_key: str | None) -> str | None:
    """What to tell the user who serves without a key on an address other machines can reach."""
    if api_key:
        return None
    try:
        if host == "localhost" or ipaddress.ip_address(host).is_loopback:
            return None
    except ValueError:  # a host name: it may well be reachable
        pass
    return (f"warning: the API listens on {host} without an API key: anyone who can reach this port can use "
            "the model. Set one with --api-key KEY (or MINICPM_API_KEY), or listen on --host 127.0.0.1.")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from ..errors import MiniCPMError
    from ..options import load_engine, model_options
    from .app import check_api_key, create_app

    try:
        check_api_key(args.api_key)  # before the minutes a model takes to load
        engine = load_engine(model_options(args))
    except MiniCPMError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    import uvicorn

    app = create_app(engine, api_key=args.api_key, log_prompts=args.log_prompts,
                     model_name=args.served_model_name)
    if warning := exposure_warning(args.host, args.api_key):
        print(warning, file=sys.stderr, flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0


if __name__ == "__main__":
    sys.exit(main())
