"""`python -m minicpm_core.api`: load the model once, then serve it with uvicorn.

Same model flags as the Streamlit app (`--model`, `--dtype`, `--device`, ..., each with an env
fallback), plus where to listen, an optional API key and whether to log prompt text: all declared
in minicpm_core.settings (ApiSettings). A bad value, or a model that cannot be loaded, ends the
program with its message (which names the flag, or the path and the download command) and exit
status 2, without a traceback.
"""

from __future__ import annotations

import ipaddress
import logging
import sys
from collections.abc import Sequence

from ..settings import ApiSettings


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
    from ..errors import MiniCPMError

    try:
        settings = ApiSettings.parse(argv)
    except MiniCPMError as exc:  # a bad flag value or environment variable
        print(f"error: {exc}", file=sys.stderr)
        return 2
    server = settings.server
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from ..engine import load_engine
    from .app import check_api_key, create_app

    try:
        check_api_key(server.api_key)  # before the minutes a model takes to load
        engine = load_engine(settings.model)
    except MiniCPMError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    import uvicorn

    app = create_app(engine, api_key=server.api_key, log_prompts=server.log_prompts,
                     model_name=server.served_model_name)
    if warning := exposure_warning(server.host, server.api_key):
        print(warning, file=sys.stderr, flush=True)
    uvicorn.run(app, host=server.host, port=server.port, log_level="info")
    return 0


if __name__ == "__main__":
    sys.exit(main())
