"""The HTTP API around one `Engine`: the seed's `POST /`, OpenAI's `/v1`, and `/health`.

`create_app(engine)` builds the FastAPI app; nothing happens at import. The app never touches the
model: it submits to the engine and waits for text deltas in worker threads (the engine's
iterators block), so the event loop stays free for other requests. Waiting threads come from a
limiter of their own, so a long queue of replies cannot starve the thread pool that FastAPI uses.

Invariants:
- Every failure leaves as OpenAI's `{"error": {...}}` with a 4xx status, or a 500 only for
  `GenerationFailed` (the model broke). The error classes are mapped to statuses once, below.
- A client that goes away cancels its generation: streamed replies when Starlette cancels the
  response, non-streamed ones through a watcher on the connection.
- One INFO log line per reply; prompt and reply text only with `log_prompts=True`.

It does not implement tool calls, log probabilities or n > 1; those are refused with a 400.
"""

from __future__ import annotations

import datetime
import hmac
import json
import logging
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import ContextOverflow, GenerationFailed, InvalidRequest, MiniCPMError, ModelNotFound, QueueFull
from .protocol import (
    MAX_BODY_BYTES, AssistantMessage, ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, Choice,
    ChunkChoice, Delta, ErrorDetail, ErrorResponse, Health, ModelCard, ModelList, SeedRequest, SeedResponse,
    Usage, completion_id, describe_validation_error, now, parse_json_body,
)

log = logging.getLogger(__name__)

MAX_WAITING_REPLIES = 256  # threads that may sit waiting on replies at once; more wait for a slot
OPEN_PATHS = ("/health", "/docs", "/redoc", "/openapi.json")  # readable without the API key
OPENAI_FINISH = {"stop": "stop", "length": "length", "cancelled": "stop"}  # nobody reads a cancelled one
KNOWN_FIELDS = sorted(set(ChatCompletionRequest.model_fields) | set(SeedRequest.model_fields))


# --- errors: the core's classes mapped to HTTP once ---------------------------------------------

class APIError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 type: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.type = status, message, param, code, type


def api_error_from(exc: Exception) -> APIError:
    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, ContextOverflow):
        return APIError(400, str(exc), exc.param, "context_length_exceeded")
    if isinstance(exc, InvalidRequest):
        return APIError(400, str(exc), exc.param)
    if isinstance(exc, QueueFull):  # OpenAI's clients retry a 429 after Retry-After by themselves
        err = APIError(429, str(exc), type="rate_limit_error", code="queue_full")
        err.retry_after = exc.retry_after
        return err
    if isinstance(exc, ModelNotFound):
        return APIError(503, str(exc), type="model_not_loaded", code="model_not_found")
    if isinstance(exc, GenerationFailed):
        return APIError(500, str(exc), type="server_error", code="generation_failed")
    if isinstance(exc, MiniCPMError):
        return APIError(500, str(exc), type="server_error")
    return APIError(500, "Internal server error; the server log has the details.", type="server_error")


def error_body(err: APIError, path: str) -> dict:
    body: dict[str, Any] = {"error": ErrorDetail(message=err.message, type=err.type, param=err.param,
                                                 code=err.code).model_dump()}
    if path.rstrip("/") == "":
        body["status"] = err.status  # the seed's clients read `status` from the body
    return body


def error_response(err: APIError, path: str) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if err.status == 401 else None
    if getattr(err, "retry_after", None) is not None:
        headers = {"Retry-After": str(err.retry_after)}
    return JSONResponse(error_body(err, path), status_code=err.status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    async def on_error(request: Request, exc: Exception) -> JSONResponse:
        err = api_error_from(exc)
        if err.status >= 500 and not isinstance(exc, MiniCPMError):
            log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        log.info("%s %s -> %d %s", request.method, request.url.path, err.status, err.message)
        return error_response(err, request.url.path)

    async def on_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = describe_validation_error(list(exc.errors()), KNOWN_FIELDS)
        return await on_error(request, APIError(400, message, param))

    async def on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        messages = {404: f"No such endpoint: {request.method} {request.url.path}. Try POST / or POST "
                         "/v1/chat/completions.",
                    405: f"{request.method} is not allowed on {request.url.path}."}
        message = messages.get(exc.status_code, str(exc.detail))
        return await on_error(request, APIError(exc.status_code, message, code=str(exc.status_code)))

    app.add_exception_handler(APIError, on_error)
    app.add_exception_handler(MiniCPMError, on_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_error)


class RequestGuard:
    """Checks the API key and the body size before the app reads anything.

    Pure ASGI, so it never wraps a streamed response (BaseHTTPMiddleware would). A body sent
    without Content-Length (chunked) is read here up to the limit and replayed to the app.
    """

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


# --- one reply, as the API sees it ---------------------------------------------------------------

class StopScanner:
    """Cuts streamed text at the first of the caller's stop strings, holding back a possible start."""

    def __init__(self, stops: tuple[str, ...]):
        self.stops, self.pending = stops, ""

    def push(self, delta: str) -> tuple[str, bool]:
        """(text safe to show, whether a stop string was reached)."""
        text = self.pending + delta
        hits = [i for i in (text.find(s) for s in self.stops) if i >= 0]
        if hits:
            self.pending = ""
            return text[:min(hits)], True
        hold = max((n for s in self.stops for n in range(1, len(s)) if text.endswith(s[:n])), default=0)
        self.pending = text[len(text) - hold:] if hold else ""
        return text[:len(text) - hold], False

    def flush(self) -> str:
        text, self.pending = self.pending, ""
        return text


class Reply:
    """A Generation's visible text with the request's stop strings applied. Blocking; runs in threads."""

    def __init__(self, generation, stops: tuple[str, ...] = ()):
        self.generation = generation
        self.text = ""
        self.hit_stop = False
        self._deltas = iter(generation)
        self._scanner = StopScanner(stops)
        self._done = False

    def next_delta(self) -> str | None:
        """The next piece of visible text, or None once the reply is complete (stats are then set)."""
        while not self._done:
            delta = next(self._deltas, None)
            if delta is None:
                self._done, visible = True, self._scanner.flush()
            else:
                visible, self.hit_stop = self._scanner.push(delta)
                if self.hit_stop:
                    self._done = True
                    self.generation.cancel()
                    self._deltas.close()
                    self.generation.wait()
            if visible:
                self.text += visible
                return visible
        return None

    def read_all(self) -> str:
        while self.next_delta() is not None:
            pass
        return self.text

    @property
    def finish_reason(self) -> str:
        if self.hit_stop:
            return "stop"
        return OPENAI_FINISH[self.generation.stats.finish_reason]

    def usage(self) -> Usage:
        stats = self.generation.stats
        return Usage(prompt_tokens=stats.prompt_tokens, completion_tokens=stats.completion_tokens,
                     total_tokens=stats.prompt_tokens + stats.completion_tokens)


# --- the service behind the routes ---------------------------------------------------------------

class ChatService:
    def __init__(self, engine, model_name: str, log_prompts: bool):
        self.engine, self.model_name, self.log_prompts = engine, model_name, log_prompts
        self._waiters = anyio.CapacityLimiter(MAX_WAITING_REPLIES)

    async def submit(self, request: Request, messages: list[dict], params, stops: tuple[str, ...] = ()) -> Reply:
        """Encode and queue, off the event loop; a client that hangs up meanwhile stops the encoding."""
        gone = threading.Event()
        failure: BaseException | None = None
        async with anyio.create_task_group() as group:
            group.start_soon(_on_disconnect, request, gone.set)
            try:
                generation = await run_in_threadpool(self.engine.submit, messages, params, cancelled=gone.is_set)
            except Exception as exc:  # re-raised below: a task group would wrap it in an ExceptionGroup
                failure = exc
            finally:
                group.cancel_scope.cancel()
        if failure is not None:
            raise failure
        return Reply(generation, stops)

    async def wait_for(self, func, *args):
        # abandon_on_cancel: a disconnect must not wait for the next token to arrive; the caller
        # cancels the generation, which wakes the abandoned thread.
        return await anyio.to_thread.run_sync(func, *args, abandon_on_cancel=True, limiter=self._waiters)

    async def complete(self, request: Request, reply: Reply) -> str:
        """Run a reply to its end; cancel it if the client hangs up meanwhile."""
        failure: BaseException | None = None
        async with anyio.create_task_group() as group:
            group.start_soon(_on_disconnect, request, reply.generation.cancel)
            try:
                await self.wait_for(reply.read_all)
            except Exception as exc:  # re-raised below: a task group would wrap it in an ExceptionGroup
                failure = exc
            finally:
                group.cancel_scope.cancel()
                if not reply.generation.done:  # we were cancelled (server shutting down)
                    reply.generation.cancel()
        if failure is not None:
            raise failure
        return reply.text

    async def stream(self, reply: Reply, request_id: str, include_usage: bool, path: str,
                     messages: list[dict]) -> AsyncIterator[str]:
        created = now()

        def event(choices: list[ChunkChoice], usage: Usage | None = None) -> str:
            chunk = ChatCompletionChunk(id=request_id, created=created, model=self.model_name, choices=choices,
                                        usage=usage)
            return f"data: {chunk.model_dump_json()}\n\n"

        try:
            yield event([ChunkChoice(delta=Delta(role="assistant", content=""))])
            while (delta := await self.wait_for(reply.next_delta)) is not None:
                yield event([ChunkChoice(delta=Delta(content=delta))])
            yield event([ChunkChoice(delta=Delta(), finish_reason=reply.finish_reason)])
            if include_usage:
                yield event([], reply.usage())
        except MiniCPMError as exc:  # the status line is gone: report in-band, as vLLM and OpenAI do
            err = api_error_from(exc)
            yield f"data: {json.dumps(error_body(err, path))}\n\n"
        finally:
            if not reply.generation.done:  # the client left (Starlette cancelled us) or the stream broke
                reply.generation.cancel()
            self.log_reply("POST", path, reply, messages)
        yield "data: [DONE]\n\n"

    def log_reply(self, method: str, path: str, reply: Reply, messages: list[dict]) -> None:
        generation, stats = reply.generation, reply.generation.stats
        if stats is None:  # the client hung up mid-reply; the worker is still winding down
            line = (f"{method} {path} prompt_tokens={len(generation.prompt.ids)} completion_tokens=? "
                    f"finish=cancelled (client disconnected)")
        else:
            ttft = "-" if stats.ttft_seconds is None else f"{stats.ttft_seconds:.3f}s"
            speed = "-" if stats.tokens_per_second is None else f"{stats.tokens_per_second:.1f}"
            finish = "stop (stop string)" if reply.hit_stop else stats.finish_reason
            line = (f"{method} {path} prompt_tokens={stats.prompt_tokens} completion_tokens="
                    f"{stats.completion_tokens} ttft={ttft} tokens/s={speed} finish={finish} "
                    f"total={stats.total_seconds:.2f}s")
        if self.log_prompts:
            line += f" prompt={messages[-1]['content']!r} reply={reply.text!r}"
        log.info(line)


async def _on_disconnect(request: Request, action) -> None:
    # The body has been read, so the next message the server sends is the disconnect.
    while (await request.receive())["type"] != "http.disconnect":
        pass
    action()


def default_model_name(engine) -> str:
    """The --model value, but a local path only by its directory's name: clients never learn paths."""
    lm = engine.lm
    if getattr(lm, "demo", False):
        return "minicpm-2b-demo"
    source = Path(str(lm.source)).expanduser()
    return source.name if source.is_absolute() or source.exists() else str(lm.source)


class _StrictJSONRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = parse_json_body(await self.body())
        return self._json


class StrictJSONRoute(APIRoute):
    """Routes whose JSON body is parsed strictly (protocol.parse_json_body): no NaN, no duplicate key."""

    def get_route_handler(self):
        handler = super().get_route_handler()

        async def strict(request: Request):
            return await handler(_StrictJSONRequest(request.scope, request.receive))

        return strict


# --- the app -------------------------------------------------------------------------------------

def create_app(engine, *, api_key: str | None = None, log_prompts: bool = False,
               model_name: str | None = None) -> FastAPI:
    """The API for one loaded engine. `api_key` set: every endpoint but /health and the docs needs it."""
    api_key = check_api_key(api_key)
    model_name = model_name or default_model_name(engine)
    service = ChatService(engine, model_name, log_prompts)
    app = FastAPI(title="MiniCPM-2B Chat API",
                  description="The seed tutorial's `POST /`, plus OpenAI-compatible `/v1/chat/completions`.")
    app.router.route_class = StrictJSONRoute
    app.state.service = service
    install_error_handlers(app)
    app.add_middleware(RequestGuard, api_key=api_key)

    @app.post("/", response_model=SeedResponse, responses={400: {"model": ErrorResponse}})
    async def seed_chat(body: SeedRequest, request: Request) -> SeedResponse:
        """The seed tutorial's endpoint: `{"prompt": ...}` in, `{"response", "status", "time"}` out."""
        messages, params = body.to_messages(), body.to_params()
        reply = await service.submit(request, messages, params)
        try:
            text = await service.complete(request, reply)
        finally:
            service.log_reply("POST", "/", reply, messages)
        history = messages + [{"role": "assistant", "content": text}]
        stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
        return SeedResponse(response=text, time=stamp, history=history)

    @app.post("/v1/chat/completions", response_model=ChatCompletion, responses={400: {"model": ErrorResponse}})
    async def chat_completions(body: ChatCompletionRequest, request: Request):
        messages, params, stops = body.to_messages(), body.to_params(), body.stop_strings()
        reply = await service.submit(request, messages, params, stops)
        request_id = completion_id()
        if body.stream:
            events = service.stream(reply, request_id, body.include_usage, request.url.path, messages)
            return StreamingResponse(events, media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        try:
            text = await service.complete(request, reply)
        finally:
            service.log_reply("POST", request.url.path, reply, messages)
        return ChatCompletion(id=request_id, created=now(), model=model_name, usage=reply.usage(), choices=[
            Choice(message=AssistantMessage(content=text), finish_reason=reply.finish_reason)])

    created = now()

    def card() -> ModelCard:
        return ModelCard(id=model_name, created=created, max_model_len=engine.context_length)

    @app.get("/v1/models", response_model=ModelList)
    async def list_models() -> ModelList:
        return ModelList(data=[card()])

    @app.get("/v1/models/{model_id:path}", response_model=ModelCard)
    async def get_model(model_id: str) -> ModelCard:
        if model_id != model_name:
            raise APIError(404, f"No model {model_id!r} here; this server serves {model_name!r}.", "model",
                           "model_not_found")
        return card()

    @app.get("/health", response_model=Health)
    async def health() -> Health:
        return Health(model_loaded=True, model=model_name, queue_depth=engine.queue_depth,
                      running=engine.running)

    return app
