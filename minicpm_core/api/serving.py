"""The chat service behind the routes: submit to the engine, follow a reply, stream it as SSE.

The engine's iterators block, so waiting for text happens in threads, never on the event loop: a
streamed reply has one thread of its own for its whole life (`_Relay`; there are at most as many as
the engine queues and runs), a non-streamed one waits in a thread from a limiter of its own
(`MAX_WAITING_REPLIES`), so a long queue of replies cannot starve the thread pool FastAPI uses. A
client that goes away cancels its generation: a streamed reply when Starlette cancels the response,
a non-streamed one through a watcher on the connection. One INFO log line per reply; prompt and reply
text only with `log_prompts=True`.

A thinking model's reply comes from the Generation already split (`parts()`): the reasoning goes out
as `reasoning_content`, the answer as `content`; the request's stop strings apply to the answer only.
Where the request offers tools, the answer then goes through the family's tool-call parser
(minicpm_core.tools): its calls go out as `tool_calls`, the rest stays `content`.

This module knows the engine's consumer interface (submit, a Generation's parts to follow and cancel)
and the wire types, not the routes or the HTTP status codes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections import deque
from collections.abc import AsyncIterator, Mapping

import anyio
import anyio.to_thread
from fastapi import Request
from starlette.concurrency import run_in_threadpool

from ..backend import Backend, template_thinking_default
from ..errors import MiniCPMError
from ..families.base import ModelFamily
from ..params import GenerationParams
from ..prompt import NO_OPTIONS, ChatOptions, find_stop, unsafe_tail
from ..tools import ToolCall, ToolCallParser, parser_for
from .errors import api_error_from, error_body
from .protocol import (
    ChoiceDelta,
    FinishReason,
    Usage,
    delta_chunk,
    now,
    sse_event,
    tool_call_delta,
    usage_chunk,
    usage_of,
)

log = logging.getLogger(__name__)

MAX_WAITING_REPLIES = 256  # threads that may sit waiting on replies at once; more wait for a slot
# nobody reads a cancelled one
OPENAI_FINISH: dict[str, FinishReason] = {"stop": "stop", "length": "length", "cancelled": "stop"}


REASONING, CONTENT, TOOL_CALL = "reasoning", "content", "tool_call"  # the kinds of delta a reply has
Piece = tuple[str, "str | ToolCall"]  # (kind, text), or (TOOL_CALL, the call)


class Reply:
    """A Generation's visible text with the request's stop strings applied. Blocking; runs in threads.

    The answer and the reasoning arrive split (`Generation.parts()`). A stop string is looked for in
    the answer only, with the prompt module's `find_stop`, and answer text that may be the start of
    one (`unsafe_tail`) is held back until the next delta shows whether it is. With a `tools` parser, the
    answer that passed the stop strings goes through the family's tool-call parser (TOOL_CALL deltas
    carry a ToolCall)."""

    def __init__(self, generation, stops: tuple[str, ...] = (), tools: ToolCallParser | None = None):
        self.generation = generation
        self.text = ""  # the answer
        self.reasoning = ""
        self.calls: list[ToolCall] = []
        self._tools = tools
        self.hit_stop = False
        self._stops = stops
        self._deltas = generation.parts()
        self._pending = ""  # held back: it may be the start of a stop string
        self._ready: deque[Piece] = deque()  # (kind, text) decided, not yet taken
        self._done = False

    def next_delta(self) -> Piece | None:
        """The next piece of visible text as (kind, text), kind REASONING or CONTENT, in the order the
        model wrote them; None once the reply is complete (stats are then set)."""
        while not self._ready:
            if self._done:
                return None
            delta = next(self._deltas, None)
            if delta is None:
                self._done = True
                tail, self._pending = self._pending, ""
                self._add(CONTENT, tail)
                self._add_calls_end()
            else:
                reasoning, content = delta
                self._add(REASONING, reasoning)
                if content:
                    self._add(CONTENT, self._cut(self._pending + content))
        kind, text = self._ready.popleft()
        if isinstance(text, ToolCall):
            self.calls.append(text)
        elif kind == CONTENT:
            self.text += text
        else:
            self.reasoning += text
        return kind, text

    def _add(self, kind: str, text: str) -> None:
        if not text:
            return
        if kind == CONTENT and self._tools is not None:
            self._add_events(self._tools.feed(text))
        else:
            self._ready.append((kind, text))

    def _add_calls_end(self) -> None:
        if self._tools is not None:
            self._add_events(self._tools.finish())

    def _add_events(self, events: list[str | ToolCall]) -> None:
        for event in events:
            self._ready.append((CONTENT, event) if isinstance(event, str) else (TOOL_CALL, event))

    def _cut(self, text: str) -> str:
        """The part of `text` that can be shown; at a stop string, end the generation there."""
        hit = find_stop(text, self._stops)
        if hit is not None:
            self.hit_stop = self._done = True
            self._pending = ""
            self.generation.cancel()
            self._deltas.close()
            self.generation.wait()
            self._add(CONTENT, text[:hit])
            self._add_calls_end()
            return ""
        hold = unsafe_tail(text, self._stops)
        self._pending = text[len(text) - hold:] if hold else ""
        return text[:len(text) - hold]

    def read_all(self) -> str:
        """The whole answer (the reasoning is then in `reasoning`)."""
        while self.next_delta() is not None:
            pass
        return self.text

    @property
    def finish_reason(self) -> FinishReason:
        if self.hit_stop:
            return "tool_calls" if self.calls else "stop"
        reason = OPENAI_FINISH[self.generation.stats.finish_reason]
        return "tool_calls" if self.calls and reason == "stop" else reason

    def usage(self) -> Usage:
        stats = self.generation.stats
        return usage_of(stats.prompt_tokens, stats.completion_tokens, stats.reasoning_tokens)


class _Relay:
    """Carries a streamed reply's text from the one thread that reads it to the event loop.

    The thread blocks in the engine's iterator and appends each delta here; it wakes the loop only
    when the loop waits for more, and the loop then takes everything that arrived at once. Per token
    that is one thread wake-up fewer than a thread-pool call per delta (which re-dispatches a thread
    after every delta), and when tokens come faster than the client reads, several go in one event.
    """

    def __init__(self, reply: Reply, loop: asyncio.AbstractEventLoop):
        self._reply, self._loop = reply, loop
        self._lock = threading.Lock()
        self._texts: list[Piece] = []  # (kind, text)
        self._finished = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future | None = None

    def start(self) -> None:
        threading.Thread(target=self._read, name="minicpm-api-reply", daemon=True).start()

    def _read(self) -> None:
        """On the relay's thread: every delta of the reply, then the end (or the error that ended it)."""
        try:
            while (delta := self._reply.next_delta()) is not None:
                self._put(delta)
        except BaseException as exc:  # noqa: BLE001 - handed to the loop, which reports it in-band
            self._error = exc
        finally:
            self._put(None)

    def _put(self, piece: Piece | None) -> None:
        with self._lock:
            if piece is None:
                self._finished = True
            else:
                self._texts.append(piece)
            waiter, self._waiter = self._waiter, None
        if waiter is not None:
            try:
                self._loop.call_soon_threadsafe(_wake, waiter)
            except RuntimeError:  # the loop is closed: the server is gone, nobody reads this reply
                pass

    async def take(self) -> list[Piece] | None:
        """All text that arrived since the last call (waiting for some), as (kind, text) runs in order
        with each run's pieces joined, or None once the reply is over."""
        with self._lock:
            if not self._texts and not self._finished:
                self._waiter = waiter = self._loop.create_future()
            else:
                waiter = None
        if waiter is not None:
            await waiter
        with self._lock:
            texts, self._texts = self._texts, []
        if texts:
            return _runs(texts)
        if self._error is not None:
            raise self._error
        return None


def _runs(pieces: list[Piece]) -> list[Piece]:
    """Adjacent pieces of one kind joined: [(k, a), (k, b), (j, c)] -> [(k, ab), (j, c)]."""
    runs: list[Piece] = []
    for kind, text in pieces:
        last = runs[-1][1] if runs and runs[-1][0] == kind else None
        if isinstance(last, str) and isinstance(text, str):  # text joins text; each call stays its own
            runs[-1] = (kind, last + text)
        else:
            runs.append((kind, text))
    return runs


def _delta(kind: str, text: str) -> ChoiceDelta:
    """A streamed delta: the answer as `content`, the reasoning as vLLM's `reasoning_content`."""
    return ChoiceDelta(content=text) if kind == CONTENT else ChoiceDelta(reasoning_content=text)


def _wake(waiter: asyncio.Future) -> None:
    if not waiter.done():  # it was cancelled if the client left meanwhile
        waiter.set_result(None)


class ChatService:
    def __init__(self, engine: Backend, model_name: str, log_prompts: bool):
        self.engine, self.model_name, self.log_prompts = engine, model_name, log_prompts
        self._waiters = anyio.CapacityLimiter(MAX_WAITING_REPLIES)
        self._thinking_default: tuple[object, bool | None] = (None, None)  # (model, its template's default)

    @property
    def family(self) -> ModelFamily:
        """The served model's family: the API serves a model loaded in this process, whose family is known."""
        family = self.engine.family
        if family is None:
            raise RuntimeError("the API serves a model of its own, whose family is known")
        return family

    @property
    def defaults(self) -> Mapping[str, float]:
        """The loaded model's recommended sampling values for a request that leaves thinking unset."""
        return self.defaults_for(None)

    def defaults_for(self, enable_thinking: bool | None) -> Mapping[str, float]:
        """The recommended sampling values of the loaded checkpoint (known by what --model was) in the
        mode a request asks: `enable_thinking`, or the template's own default where that is None.
        They stand in for the fields the request leaves unset (MiniCPM5-1B: temperature 0.9 thinking,
        0.7 not)."""
        family = self.family
        if enable_thinking is None and family.thinking:
            enable_thinking = self._template_thinking_default()
        return family.defaults_for(self.engine.model_id, enable_thinking)

    def params(self, body, enable_thinking: bool | None) -> GenerationParams:
        """A request's (protocol's SeedRequest or ChatCompletionRequest) GenerationParams: unset fields
        from `defaults_for`, token counts checked against the loaded family's context."""
        return body.to_params(self.defaults_for(enable_thinking), context=self.family.context_length)

    def _template_thinking_default(self) -> bool | None:
        """backend.template_thinking_default of the loaded model, encoded once per model."""
        if self._thinking_default[0] is not self.engine:
            self._thinking_default = (self.engine, template_thinking_default(self.engine))
        return self._thinking_default[1]

    async def submit(self, request: Request, messages: list[dict], params, stops: tuple[str, ...] = (),
                     options: ChatOptions = NO_OPTIONS) -> Reply:
        """Encode and queue, off the event loop; a client that hangs up meanwhile stops the encoding."""
        gone = threading.Event()
        failure: BaseException | None = None
        async with anyio.create_task_group() as group:
            group.start_soon(_on_disconnect, request, gone.set)
            try:
                generation = await run_in_threadpool(self.engine.submit, messages, params, cancelled=gone.is_set,
                                                    options=options)
            except Exception as exc:  # re-raised below: a task group would wrap it in an ExceptionGroup
                failure = exc
            finally:
                group.cancel_scope.cancel()
        if failure is not None:
            raise failure
        return Reply(generation, stops, parser_for(self.family.tool_format, options.offered_tools))

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
        created, model = now(), self.model_name
        relay = _Relay(reply, asyncio.get_running_loop())
        try:
            yield sse_event(delta_chunk(request_id, created, model, ChoiceDelta(role="assistant", content="")))
            relay.start()
            calls = 0
            while (runs := await relay.take()) is not None:
                for kind, text in runs:
                    if isinstance(text, ToolCall):
                        delta, calls = tool_call_delta(text, calls), calls + 1
                    else:
                        delta = _delta(kind, text)
                    yield sse_event(delta_chunk(request_id, created, model, delta))
            yield sse_event(delta_chunk(request_id, created, model, ChoiceDelta(), reply.finish_reason))
            if include_usage:
                yield sse_event(usage_chunk(request_id, created, model, reply.usage()))
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
            if stats.reasoning_tokens:  # a thinking model's; absent on MiniCPM-2B, whose line is as before
                line += f" reasoning_tokens={stats.reasoning_tokens}" + (" (cut inside the reasoning)"
                                                                          if stats.ended_in_reasoning else "")
        if self.log_prompts:
            line += f" prompt={messages[-1]['content']!r} reply={reply.text!r}"
        log.info(line)


async def _on_disconnect(request: Request, action) -> None:
    # The body has been read, so the next message the server sends is the disconnect.
    while (await request.receive())["type"] != "http.disconnect":
        pass
    action()
