"""`python -m minicpm_core.api`: load the model once, then serve it with uvicorn.

Same model flags as the Streamlit app (`--model`, `--dtype`, `--device`, ..., each with an env
fallback), plus where to listen, an optional API key and whether to log prompt text: all declared
in minicpm_core.settings (ApiSettings). Served beyond loopback without --api-key, it makes a key at
start, prints it and requires it (as the app does with its access token); MINICPM_ALLOW_OPEN=1 serves
with no key anyway. A bad value, or a model that cannot be loaded, ends the
program with its message (which names the flag, or the path and the download command) and exit
status 2, without a traceback.
"""

from __future__ import annotations

import ipaddress
import logging
import secrets
import sys
from collections.abc import Sequence

from ..settings import ALLOW_OPEN_ENV, AccessSettings, ApiSettings, resolve

GENERATED_KEY_BYTES = 24  # 192 random bits


def is_loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may well be reachable
        return False


def exposure_warning(host: str, api_key: str | None) -> str | None:
    """What to tell the user who serves without a key on an address other machines can reach."""
    if api_key or is_loopback(host):
        return None
    return (f"warning: the API listens on {host} without an API key ({ALLOW_OPEN_ENV}=1): anyone who can reach "
            "this port can use the model.")


def effective_api_key(host: str, api_key: str | None, allow_open: bool) -> tuple[str | None, bool]:
    """The key the server requires, and whether it was generated here: the given one; else, beyond
    loopback and without the opt-out, a new random one; else none."""
    if api_key is not None or is_loopback(host) or allow_open:
        return api_key, False
    return secrets.token_urlsafe(GENERATED_KEY_BYTES), True


def key_notice(key: str, host: str, port: int) -> str:
    local = f"http://127.0.0.1:{port}"
    return (f"\n  No --api-key given and the API listens on {host}, so it made one. Send it with every request:\n"
            f"    Authorization: Bearer {key}\n"
            f"  e.g.  curl {local}/v1/models -H 'Authorization: Bearer {key}'\n"
            "  Pass --api-key KEY to choose it, or --host 127.0.0.1 to serve this machine only.\n")


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
        allow_open = resolve(AccessSettings).allow_open
        engine = load_engine(settings.model)
    except MiniCPMError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    import uvicorn

    from .guard import json_error_http

    api_key, generated = effective_api_key(server.host, server.api_key, allow_open)
    app = create_app(engine, api_key=api_key, log_prompts=server.log_prompts, model_name=server.served_model_name)
    if generated and api_key is not None:  # a generated key is never None
        print(key_notice(api_key, server.host, server.port), flush=True)
    elif warning := exposure_warning(server.host, api_key):
        print(warning, file=sys.stderr, flush=True)
    uvicorn.run(app, host=server.host, port=server.port, log_level="info", http=json_error_http())
    return 0


if __name__ == "__main__":
    sys.exit(main())
