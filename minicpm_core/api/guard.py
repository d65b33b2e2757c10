"""The API's door: the API key, the body's size, time and memory, checked before the app reads a byte.

`RequestGuard` is pure ASGI, so it never wraps a streamed response (Starlette's BaseHTTPMiddleware
would). The key is checked on the headers alone, so a caller without it never gets a body read.
Every body is then read here, and replayed to the app:
- up to `MAX_BODY_BYTES` (Content-Length or not);
- within `BODY_TIMEOUT_S` from the request's start: a body trickled in (1 byte per 2 s) gets a 408;
- within `BODIES_BUDGET_BYTES` for all bodies not yet complete at once: 60 clients stalling at 7 of
  8 MB would otherwise hold 420 MB; past the budget a body gets a 503 with Retry-After. A body's bytes
  are counted until the app has it, or given back at once if its client hangs up.
`check_api_key` refuses, at startup, a key no HTTP client could send. `JsonErrorHTTP` is the uvicorn
protocol that answers broken framing (uvicorn's own "Invalid HTTP request received.", sent before any
app runs) in OpenAI's JSON error shape instead of plain text.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import threading

from ..errors import InvalidRequest
from .errors import APIError, error_response
from .protocol import MAX_BODY_BYTES

log = logging.getLogger(__name__)

OPEN_PATHS = ("/health", "/docs", "/redoc", "/openapi.json")  # readable without the API key
BODY_TIMEOUT_S = 30.0  # a whole body must arrive within this (8 MB at 2.2 Mbit/s)
BODIES_BUDGET_BYTES = 64 << 20  # the bytes of all unfinished bodies at once
BUSY_RETRY_S = 5


class RequestGuard:
    """Checks the API key and the body size before the app reads anything."""

    def __init__(self, app, api_key: str | None, *, body_timeout_s: float = BODY_TIMEOUT_S,
                 budget: BodyBudget | None = None):
        self.app, self.api_key = app, api_key
        self.body_timeout_s = body_timeout_s
        self.budget = budget or BodyBudget(BODIES_BUDGET_BYTES)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        err = self.refusal(scope)
        if err is None and scope["method"] not in ("GET", "HEAD", "OPTIONS"):
            receive, err = await _buffered_body(receive, self.body_timeout_s, self.budget)
        if err is None:
            return await self.app(scope, receive, send)
        if err.status == 499:  # the client hung up: nobody to answer
            return None
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


def _busy() -> APIError:
    err = APIError(503, f"The server is receiving too many request bodies at once; retry in {BUSY_RETRY_S} s.",
                   code="server_busy", type="server_error")
    err.retry_after = BUSY_RETRY_S
    return err


class BodyBudget:
    """The bytes held by bodies still arriving, across all requests; `take` refuses past the limit."""

    def __init__(self, limit: int):
        self.limit = limit
        self.held = 0
        self._lock = threading.Lock()

    def take(self, size: int) -> bool:
        with self._lock:
            if self.held + size > self.limit:
                return False
            self.held += size
            return True

    def give_back(self, size: int) -> None:
        with self._lock:
            self.held -= size


async def _buffered_body(receive, timeout_s: float, budget: BodyBudget):
    """Read the whole body within the limits; return a receive that replays it, or an error."""
    body = bytearray()  # one block: past 128 KB malloc maps it, so freeing it returns it to the system
    more = True
    deadline = asyncio.get_running_loop().time() + timeout_s
    try:
        while more:
            left = deadline - asyncio.get_running_loop().time()
            try:
                message = await asyncio.wait_for(receive(), max(left, 0.001))
            except asyncio.TimeoutError:
                return receive, APIError(408, f"The request body did not arrive within {timeout_s:g} s; send it "
                                         "at once.", code="request_timeout")
            if message["type"] != "http.request":
                return receive, APIError(499, "The client closed the connection.", code="client_closed")
            chunk = message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) + len(chunk) > MAX_BODY_BYTES:
                return receive, _too_large(len(body) + len(chunk))
            if not budget.take(len(chunk)):
                return receive, _busy()
            body += chunk
    finally:
        budget.give_back(len(body))  # the app has the body now, or nobody will
    replayed = False

    async def replay():
        nonlocal replayed
        if replayed:
            return await receive()
        replayed = True
        return {"type": "http.request", "body": bytes(body), "more_body": False}

    return replay, None


def json_error_http() -> type:
    """uvicorn's HTTP protocol (httptools if installed, else h11) with JSON 400s: `uvicorn.run(http=...)`."""
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    return json_400_protocol(AutoHTTPProtocol)


def json_400_protocol(base: type) -> type:
    """`base` (a uvicorn HTTP protocol class) answering broken framing with OpenAI's JSON error shape."""

    class JsonErrorHTTP(base):
        def send_400_response(self, msg: str) -> None:
            body = json.dumps({"error": {"message": f"{msg} The request's HTTP framing is broken (request line, "
                                                    "headers, Content-Length or chunks).",
                                         "type": "invalid_request_error", "param": None,
                                         "code": "bad_http_framing"}}).encode()
            self.transport.write(b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n"
                                 b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
            self.transport.close()

    JsonErrorHTTP.__name__ = f"JsonError{base.__name__}"
    return JsonErrorHTTP
