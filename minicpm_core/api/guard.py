"""The API's door: the API key and the body size, checked before the app reads a byte.

`RequestGuard` is pure ASGI, so it never wraps a streamed response (Starlette's BaseHTTPMiddleware
would). A body sent without Content-Length (chunked) is read here up to `MAX_BODY_BYTES` and
replayed to the app. `check_api_key` refuses, at startup, a key no HTTP client could send.
"""

from __future__ import annotations

import hmac
import logging

from ..errors import InvalidRequest
from .errors import APIError, error_response
from .protocol import MAX_BODY_BYTES

log = logging.getLogger(__name__)

OPEN_PATHS = ("/health", "/docs", "/redoc", "/openapi.json")  # readable without the API key


class RequestGuard:
    """Checks the API key and the body size before the app reads anything."""

    def __init__(self, app, api_key: str | None):
        self.app, self.api_key = app, api_key

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        err = self.refusal(scope)
        if err is None and _header(scope, "transfer-encoding"):
            receive, err = await _buffered_body(receive)
        if err is None:
            return await self.app(scope, receive, send)
        log.info("%s %s -> %d %s", scope["method"], scope["path"], err.status, err.message)
        await error_response(err, scope["path"])(scope, receive, send)

    def refusal(self, scope) -> APIError | None:
        headers = {k.lower(): v for k, v in scope["headers"]}  # raw bytes: a key is compared as bytes
        if self.api_key and scope["path"] not in OPEN_PATHS:
            given = _presented_key(headers)
            if given is None:
                return APIError(401, "Missing API key: send 'Authorization: Bearer <key>' or 'x-api-key: <key>'.",
                                code="invalid_api_key")
            if not hmac.compare_digest(given, self.api_key.encode()):
                return APIError(401, "Incorrect API key.", code="invalid_api_key")
        length = headers.get(b"content-length", b"")
        if length and b"transfer-encoding" in headers:  # how a request is smuggled past a proxy
            return APIError(400, "The request has both Content-Length and Transfer-Encoding; send only one.",
                            code="ambiguous_length")
        if length.isdigit() and int(length) > MAX_BODY_BYTES:
            return _too_large(int(length))
        return None


def _presented_key(headers: dict[bytes, bytes]) -> bytes | None:
    auth = headers.get(b"authorization", b"")
    return auth[7:].strip() if auth[:7].lower() == b"bearer " else headers.get(b"x-api-key")


def check_api_key(api_key: str | None) -> str | None:
    """The key as given, or InvalidRequest when no client could send it (HTTP headers are ASCII)."""
    if api_key is None:
        return None
    if not api_key:
        raise InvalidRequest("The API key is empty: pass a non-empty --api-key (or MINICPM_API_KEY), or none "
                             "for an open server.", "api_key")
    bad = next((c for c in api_key if not "!" <= c <= "~"), None)
    if bad is not None:
        raise InvalidRequest(f"The API key contains {bad!r}: use printable ASCII only (letters, digits, "
                             "punctuation; no spaces), because HTTP clients send the key in a header as ASCII.",
                             "api_key")
    return api_key


def _header(scope, name: str) -> str | None:
    for key, value in scope["headers"]:
        if key.decode("latin-1").lower() == name:
            return value.decode("latin-1")
    return None


def _too_large(size: int) -> APIError:
    return APIError(413, f"The request body is {size} bytes or more; at most {MAX_BODY_BYTES} are accepted.",
                    code="request_too_large")


async def _buffered_body(receive):
    """Read a body of unknown length up to the limit; return a receive that replays it, or an error."""
    body, more = bytearray(), True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            break
        body += message.get("body", b"")
        more = message.get("more_body", False)
        if len(body) > MAX_BODY_BYTES:
            return receive, _too_large(len(body))
    replayed = False

    async def replay():
        nonlocal replayed
        if replayed:
            return await receive()
        replayed = True
        return {"type": "http.request", "body": bytes(body), "more_body": False}

    return replay, None
