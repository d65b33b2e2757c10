"""The chat engine: one loaded model shared by every browser session and API request.

`Engine.submit(messages, params)` validates and encodes at once (bad input raises there, before
anything is queued) and returns a `Generation`: iterate it for text deltas, `cancel()` it, or read
`position` while it waits. Both the Streamlit app and the HTTP API drive this and nothing else:
it implements the `backend.Backend` contract itself (no adapter in between).

Invariants:
- Only the engine's worker threads touch the model; there are `max_concurrent` of them (default
  1), started once and reused. Requests are served first come, first served.
- A generation stops within one decoding step of `cancel()`; abandoning or closing the iterator
  cancels. A request's tokens go only to its own `Generation`.
- Errors in a worker (CUDA out of memory included) reach that request's consumer as
  GenerationFailed; the worker lives on for the next request.
- The prefix cache (prefix_cache.py) belongs to the engine. A request takes the entry that shares
  the longest token prefix with its prompt, owns it while generating, and puts the extended
  cache back when it ends, so a follow-up turn only pre-fills its new tokens.
- The text a consumer sees never contains a stop marker or a partial one, nor half a character;
  the deltas concatenate to exactly the final reply. The worker ends a reply at the very token that
  completes a marker (`StopMarkerWatch`, a set lookup per token, not a decode), or at one of the
  family's stop tokens (`LoadedModel.eos_token_ids`, ended by `generate` itself). Special tokens never
  reach the text, except think tags, which the reasoning splitter needs.
- On a family that thinks (MiniCPM5) `submit(..., enable_thinking=...)` sets the template's switch and
  the reply is split once, in the Generation, by a `ReasoningSplitter`: iterating gives only the
  answer's deltas, `parts()` (reasoning, answer) pairs; `.text` is the answer, `.reasoning` the
  reasoning; the tags never appear in either. On MiniCPM-2B the reasoning is always "".
- Sampling draws from the request's own `torch.Generator` (seeded from its `seed`, else at random),
  never from torch's global RNG: a seeded reply is the same whatever else runs at the same time.
- At most `max_queue` requests wait for a slot; one more raises QueueFull (HTTP 429) with a hint
  of when to retry, instead of queueing without bound.
- `retire(successor, drain_s)` ends an engine for a model switch (slot.py): new requests are refused
  with ModelSwitching, the replies under way get `drain_s` to finish, the rest are cancelled with
  `stopped_for` naming the successor, and the weights' memory is freed even while pages still hold
  the engine.
"""

from __future__ import annotations

import functools
import gc
import itertools
import logging
import math
import statistics
import threading
import time
from collections import deque
from collections.abc import Generator
from pathlib import Path
from typing import Any

import torch
from transformers import (
    LogitsProcessor,
    LogitsProcessorList,
    MinPLogitsWarper,
    StoppingCriteria,
    StoppingCriteriaList,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)
from transformers.generation.streamers import BaseStreamer
from transformers.generation.utils import GenerateDecoderOnlyOutput

from . import demo, paths
from .backend import Backend, KvBudget, answer_deltas
from .detok import IncrementalDecoder, StopMarkerWatch
from .errors import RETRY_AFTER_DEFAULT_S, GenerationFailed, InvalidRequest, ModelSwitching, QueueFull
from .families.base import ModelFamily
from .loader import LoadedModel, load_model, return_free_heap
from .params import MODEL_CONTEXT, GenerationParams
from .prefix_cache import PrefixCache
from .prompt import MIN_REPLY_ROOM, Prompt, build_prompt, find_stop, unsafe_tail
from .reasoning import TAGS as THINK_TAGS, ReasoningSplitter, opens_reasoning, split_reasoning
from .settings import DEFAULT_MAX_QUEUE, ModelSettings
from .stats import RECENT_STATS, ReplyStats

log = logging.getLogger(__name__)

# The KV cache's name, as generate()'s argument and on its output: "cache" from transformers 5.21,
# "past_key_values" before (5.20 is the newest for Python 3.10, AutoDL's Python).
CACHE_ARG = "cache" if "cache" in GenerateDecoderOnlyOutput.__dataclass_fields__ else "past_key_values"

RETRY_AFTER_MIN_S, RETRY_AFTER_MAX_S = 1, 120
RETRY_AFTER_SAMPLE = 10  # recent replies whose generation time sets the hint
PROMPT_TAIL_TOKENS = 8  # decoded to tell whether a prompt ends in an open <think> block (a few tokens)


class Generation:
    """One request: a worker produces token ids, the consumer iterates text deltas.

    `__iter__` yields the answer's deltas only, `parts()` yields `(reasoning_delta, answer_delta)`;
    both drive the same split, so use one of them per generation. `text` is the answer so far,
    `reasoning` the reasoning so far (always "" on a family that does not think).
    """

    _ids = itertools.count(1)

    def __init__(self, engine: Engine, prompt: Prompt, params: GenerationParams, max_new_tokens: int):
        self.id = next(self._ids)
        self.prompt = prompt
        self.params = params
        self.max_new_tokens = max_new_tokens
        self.text = ""  # the answer the consumer has been shown so far
        self.reasoning = ""  # the reasoning the consumer has been shown so far (thinking families)
        self.stats: ReplyStats | None = None
        self.stopped_for: str | None = None  # the model a switch cancelled this reply for
        self._engine = engine
        self._cancel = threading.Event()
        self._cond = threading.Condition()
        self._token_ids: list[int] = []
        self._hit_marker = False  # set by the worker at the token that completed a stop marker
        self._finished = False
        self._error: GenerationFailed | None = None
        self._submitted = time.perf_counter()
        self._started: float | None = None
        self._first_token: float | None = None
        self._last_token: float | None = None

    # --- consumer side ----------------------------------------------------------------------

    def cancel(self) -> None:
        self._cancel.set()
        self._engine._drop_waiting(self)

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    @property
    def done(self) -> bool:
        return self._finished

    @property
    def position(self) -> int | None:
        """Requests ahead of this one plus one while waiting, 0 while generating, None when done."""
        if self._finished:
            return None
        return self._engine._position(self)

    def __iter__(self) -> Generator[str, None, None]:
        return answer_deltas(self._parts())

    def parts(self) -> Generator[tuple[str, str], None, None]:
        """`(reasoning_delta, answer_delta)` pairs in order, at least one of them non-empty in each."""
        return self._parts()

    def _parts(self) -> Generator[tuple[str, str], None, None]:
        """Split the reply's text deltas into reasoning and answer (a thinking family), else all answer."""
        splitter = self._engine._splitter(self.prompt)
        deltas = self._deltas()
        try:
            for delta, last in deltas:
                reasoning, content = ("", delta) if splitter is None else splitter.feed(delta)
                if last and splitter is not None:
                    more_reasoning, more_content = splitter.finish()
                    reasoning, content = reasoning + more_reasoning, content + more_content
                self.reasoning += reasoning
                self.text += content
                if reasoning or content:
                    yield reasoning, content
        finally:
            deltas.close()

    def _arrived_beyond(self, read: int) -> bool:
        """Whether ids beyond the first `read` have arrived, or the reply is over (call with `_cond` held)."""
        return len(self._token_ids) > read or self._finished

    def _deltas(self) -> Generator[tuple[str, bool], None, None]:
        """The reply's text deltas (stop markers cut off), each with whether it is the last one."""
        decoder = self._engine._decoder()
        decoded, read, searched, stop, shown = "", 0, 0, None, 0
        markers = self._engine.stop_markers
        longest = max((len(marker) for marker in markers), default=1)
        try:
            while True:
                # 1. take every id that arrived since the last wake-up (one or many)
                with self._cond:
                    self._cond.wait_for(functools.partial(self._arrived_beyond, read))
                    new_ids = self._token_ids[read:]
                    finished = self._finished
                read += len(new_ids)
                # 2. decode only those (plus a short window), never the whole reply again
                decoded += decoder.push(new_ids)
                if finished:
                    decoded += decoder.flush()
                # 3. look for a stop marker only where a new one can be: the new text and a marker's width before it
                if stop is None:
                    start = max(0, searched - longest + 1)
                    hit = find_stop(decoded[start:], markers)
                    stop, searched = (None if hit is None else start + hit), len(decoded)
                # 4. show what can no longer turn into a marker
                if stop is not None:
                    end = stop
                elif finished:
                    end = len(decoded)
                else:
                    end = len(decoded) - unsafe_tail(decoded[-longest:], markers)
                if end > shown or finished:
                    delta, shown = decoded[shown:max(end, shown)], max(end, shown)
                    yield delta, finished
                if finished:
                    break
            if self._error is not None:
                raise self._error
        finally:
            if not self._finished:
                self.cancel()  # the consumer went away (Streamlit rerun, HTTP disconnect)

    def result(self) -> str:
        """Block until the reply is complete; return its text."""
        for _ in self:
            pass
        return self.text

    def wait(self, timeout: float | None = None) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._finished, timeout)

    # --- worker side ------------------------------------------------------------------------

    def _add_tokens(self, ids: list[int]) -> None:
        now = time.perf_counter()
        with self._cond:
            if self._first_token is None:
                self._first_token = now
            self._last_token = now
            self._token_ids.extend(ids)
            self._cond.notify_all()

    def _finish(self, finish_reason: str, cached_tokens: int = 0,
                error: GenerationFailed | None = None) -> None:
        now = time.perf_counter()
        ended_in_reasoning, reasoning_tokens = self._engine._reasoning_summary(self.prompt, self._token_ids)
        n = len(self._token_ids)
        decode_time = (self._last_token or now) - (self._first_token or now)
        self.stats = ReplyStats(
            prompt_tokens=len(self.prompt.ids), completion_tokens=n, cached_tokens=cached_tokens,
            turns_dropped=self.prompt.turns_dropped,
            queue_seconds=(self._started or now) - self._submitted,
            ttft_seconds=None if self._first_token is None else self._first_token - self._submitted,
            tokens_per_second=(n - 1) / decode_time if n > 1 and decode_time > 0 else None,
            total_seconds=now - self._submitted, finish_reason=finish_reason,
            ended_in_reasoning=ended_in_reasoning, reasoning_tokens=reasoning_tokens)
        with self._cond:
            self._error = error
            self._finished = True
            self._cond.notify_all()


class _TokenSink(BaseStreamer):
    """Receives ids from `generate`; the first call carries the prompt, which is not ours to stream."""

    def __init__(self, generation: Generation):
        self._generation = generation
        self._prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        self._generation._add_tokens(value.reshape(-1).tolist())

    def end(self) -> None:
        pass


class _StopSignals(StoppingCriteria):
    """Ends `generate` at the token that completes a stop marker, or at the first step after cancel().

    Cheap on every step: a flag, then a set lookup on the newest token; only a token that can end a
    marker costs decoding the last few tokens. It replaces transformers' StopStringCriteria, which
    costs about 5% per token (it matches vocabulary pieces against the markers on each step).
    """

    def __init__(self, generation: Generation, watch: StopMarkerWatch, device: torch.device):
        self._generation = generation
        self._watch = watch
        self._prompt_len = len(generation.prompt.ids)
        self._stop = torch.ones(1, dtype=torch.bool, device=device)  # batch 1; generate never writes into these
        self._go_on = torch.zeros(1, dtype=torch.bool, device=device)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs) -> torch.Tensor:
        generation = self._generation
        if generation._cancel.is_set():
            return self._stop
        if int(input_ids[0, -1]) in self._watch.closers:
            start = max(self._prompt_len, input_ids.shape[1] - self._watch.window)
            if self._watch.has_marker(input_ids[0, start:].tolist()):
                generation._hit_marker = True
                return self._stop
        return self._go_on


class _SampleWithGenerator(LogitsProcessor):
    """Sampling from the request's own `torch.Generator`, inside a greedy `generate`.

    transformers' sampling draws from torch's global RNG, which every request shares. So the engine
    runs `generate` greedy with this processor last: it applies the warpers transformers' sampling
    would (temperature, top_k, top_p, min_p; repetition penalty is applied before it by `generate`), draws
    one token with `generator`, and returns scores whose argmax is exactly that token.
    """

    def __init__(self, params: GenerationParams, generator: torch.Generator):
        warpers: list[LogitsProcessor] = []
        if params.temperature != 1.0:
            warpers.append(TemperatureLogitsWarper(float(params.temperature)))
        if params.top_k:
            warpers.append(TopKLogitsWarper(int(params.top_k)))
        if params.top_p < 1.0:
            warpers.append(TopPLogitsWarper(float(params.top_p)))
        if params.min_p > 0.0:
            warpers.append(MinPLogitsWarper(float(params.min_p)))
        self._warpers = LogitsProcessorList(warpers)
        self._generator = generator

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        probs = torch.softmax(self._warpers(input_ids, scores), dim=-1)
        token = torch.multinomial(probs, num_samples=1, generator=self._generator)
        return torch.full_like(scores, -math.inf).scatter_(1, token, 0.0)


def request_generator(params: GenerationParams, device: torch.device) -> torch.Generator:
    """The request's own RNG: seeded from `params.seed`, or from fresh entropy when it has none."""
    generator = torch.Generator(device=device)
    if params.seed is None:
        generator.seed()
    else:
        generator.manual_seed(params.seed)
    return generator


class Engine:
    """The model in this process as a `backend.Backend`: every session and request shares it."""

    ready = True  # loaded: an Engine exists only once its model does
    ignored_controls: tuple[str, ...] = ()  # every GenerationParams field reaches the model
    base_url: str | None = None  # not a remote server

    def __init__(self, lm: LoadedModel, max_concurrent: int = 1, prefix_cache: PrefixCache | None = None,
                 max_queue: int = DEFAULT_MAX_QUEUE):
        if max_concurrent < 1:
            raise InvalidRequest("max_concurrent must be at least 1.", "max_concurrent")
        if max_queue < 0:
            raise InvalidRequest("max_queue must be 0 or more.", "max_queue")
        self.lm = lm
        self.model = lm.model
        self.tokenizer = lm.tokenizer
        self.stop_markers = lm.family.stop_markers  # text that ends a reply (the family's)
        # ids that end a reply; generate() stops on them through the model's generation_config (loader)
        self.stop_token_ids = frozenset(lm.eos_token_ids or (self.tokenizer.eos_token_id,))
        self._hidden_ids = hidden_token_ids(self.tokenizer, self.stop_token_ids) if lm.family.thinking else None
        self.max_concurrent = max_concurrent
        self.max_queue = max_queue
        self.prefix_cache = prefix_cache if prefix_cache is not None else PrefixCache()
        # Built once: it decodes the whole vocabulary (122k pieces upstream) and keeps no per-request
        # state, so every generation shares it.
        self._marker_watch = StopMarkerWatch(self.tokenizer, self.stop_markers)
        self.recent: deque[ReplyStats] = deque(maxlen=RECENT_STATS)
        self._waiting: deque[Generation] = deque()
        self._running: list[Generation] = []
        self._cond = threading.Condition()
        self._closed = False
        self._successor: str | None = None  # set by retire(): requests are refused from then on
        self._workers = [threading.Thread(target=self._work_loop, name=f"minicpm-engine-{i}", daemon=True)
                         for i in range(max_concurrent)]
        for worker in self._workers:
            worker.start()

    # --- public interface (backend.Backend) ----------------------------------------------------

    @property
    def demo(self) -> bool:
        return bool(self.lm.demo)

    @property
    def gpu_problem(self) -> str | None:
        return self.lm.gpu_problem

    @property
    def context_length(self) -> int:
        return self.lm.context_length

    @property
    def model_name(self) -> str:
        """What clients and reply captions call the model: the --model id, a local folder by its name only
        (clients never learn paths), a demo by its family."""
        return paths.model_name(self.lm.source, self.lm.family.name if self.lm.demo else None)

    @property
    def family(self) -> ModelFamily:
        return self.lm.family

    @property
    def model_id(self) -> str | None:
        """The published id of the loaded checkpoint, known by what --model was; None for a local folder."""
        known = self.lm.family.known_model(self.lm.source)
        return known.id if known is not None else None

    @property
    def loaded_path(self) -> Path:
        return self.lm.path

    def kv_budget(self) -> KvBudget:
        """The default max_length the loaded model's KV cache fits in the free memory (see `kv_budget`)."""
        return kv_budget(self.lm)

    def wait(self) -> Backend:
        return self  # loaded already

    def info(self) -> dict[str, Any]:
        """What the Model page shows about the loaded model."""
        lm = self.lm
        return {
            "backend": "local", "source": lm.source, "path": str(lm.path), "device": str(lm.device),
            "dtype": lm.dtype_name, "attention": lm.attn_implementation, "parameters": lm.num_parameters,
            "memory_bytes": lm.memory_bytes, "load_seconds": lm.load_seconds,
            "context_length": lm.context_length, "max_concurrent": self.max_concurrent,
        }

    def budget(self, params: GenerationParams) -> int:
        return min(params.max_length, self.context_length)

    def prepare(self, messages: list[dict], params: GenerationParams | None = None, cancelled=None, *,
                enable_thinking: bool | None = None) -> Prompt:
        """Validate and encode without generating: prompt ids and how many old turns were dropped.

        `cancelled()` (optional) is polled while encoding: True stops the work (the caller left).
        `enable_thinking` goes to the chat template of a family that thinks; None: its own default."""
        params = params or GenerationParams()
        room = params.max_new_tokens or MIN_REPLY_ROOM
        prompt = build_prompt(messages, self.tokenizer, self.budget(params), room, cancelled, self.lm.family,
                              enable_thinking)
        routed = demo.route(messages, self.lm.family.name) if self.lm.demo else messages
        if routed is not messages:  # checked as sent, then asked as the shipped demo knows it (minicpm_core/demo.py)
            prompt = build_prompt(routed, self.tokenizer, self.budget(params), room, cancelled, self.lm.family,
                                  enable_thinking)
        return prompt

    def submit(self, messages: list[dict], params: GenerationParams | dict | None = None, *,
               cancelled=None, enable_thinking: bool | None = None) -> Generation:
        context = self.lm.family.context_length  # what a request may ask for; budget() caps at the model's
        if isinstance(params, GenerationParams):
            params = params.fit(context)
        else:
            params = GenerationParams.parse(params, context=context)
        prompt = self.prepare(messages, params, cancelled, enable_thinking=enable_thinking)
        max_new = self.budget(params) - len(prompt.ids)
        if params.max_new_tokens:
            max_new = min(max_new, params.max_new_tokens)
        generation = Generation(self, prompt, params, max_new)
        with self._cond:
            if self._successor is not None:
                raise self._switching()
            if self._closed:
                raise GenerationFailed("The engine has been shut down.")
            if not self._queue_has_room():
                raise self._queue_full()
            self._waiting.append(generation)
            self._cond.notify()
        return generation

    def chat(self, messages: list[dict], params: GenerationParams | dict | None = None) -> tuple[str, ReplyStats]:
        """The whole reply and its stats (tests, benchmarks); the app and the API stream."""
        generation = self.submit(messages, params)
        text = generation.result()
        assert generation.stats is not None  # set before result() returns
        return text, generation.stats

    @property
    def queue_depth(self) -> int:
        with self._cond:
            return len(self._waiting)

    @property
    def running(self) -> int:
        with self._cond:
            return len(self._running)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            pending = list(self._waiting) + list(self._running)
            self._cond.notify_all()
        for generation in pending:
            generation.cancel()
        for worker in self._workers:
            worker.join(timeout=30)

    def retire(self, successor: str, drain_s: float) -> None:
        """Make way for the model `successor`: refuse new requests, give the replies queued or under way
        `drain_s` seconds to finish, cancel the rest (their `stopped_for` names the successor), stop
        the workers and free the weights' and the prefix cache's memory."""
        with self._cond:
            self._successor = successor
            self._cond.wait_for(lambda: not self._waiting and not self._running, timeout=drain_s)
            for generation in list(self._waiting) + self._running:
                generation.stopped_for = successor
        self.close()
        self.free_memory()

    def free_memory(self) -> None:
        """Give back the weights' and the prefix cache's memory. The parameters move to the meta device, so
        their storage goes even where a page's run still holds this engine; it cannot generate again."""
        self.prefix_cache.clear()
        self.model.to("meta")
        gc.collect()
        self._release_device_memory()
        return_free_heap()

    # --- scheduling ---------------------------------------------------------------------------

    def _queue_has_room(self) -> bool:
        """Whether one more request would wait among at most `max_queue` (call with `_cond` held).

        Waiting requests that an idle worker is about to take do not count: they will not wait.
        """
        idle = self.max_concurrent - len(self._running)
        return len(self._waiting) + 1 - idle <= self.max_queue

    def _switching(self) -> ModelSwitching:
        return ModelSwitching(f"The server is switching to {self._successor}. Ask again in a moment, once it has "
                              "loaded.", code="model_switching", model=self._successor)

    def _queue_full(self) -> QueueFull:
        retry_after = self.retry_after()
        return QueueFull(
            f"The server is busy: every reply slot is generating and the queue is full ({self.max_queue} "
            f"waiting at most). Try again in about {retry_after} seconds.",
            retry_after=retry_after, limit=self.max_queue)

    def retry_after(self) -> int:
        """Seconds until a place in the queue is likely to free: a typical reply's time over the slots."""
        durations = [s.total_seconds - s.queue_seconds for s in list(self.recent)[-RETRY_AFTER_SAMPLE:]]
        typical = statistics.median(durations) if durations else RETRY_AFTER_DEFAULT_S
        return max(RETRY_AFTER_MIN_S, min(RETRY_AFTER_MAX_S, math.ceil(typical / self.max_concurrent)))

    def _position(self, generation: Generation) -> int:
        with self._cond:
            if generation in self._running:
                return 0
            try:
                return self._waiting.index(generation) + 1
            except ValueError:
                return 0  # between queue and start

    def _drop_waiting(self, generation: Generation) -> None:
        with self._cond:
            if generation in self._waiting:
                self._waiting.remove(generation)
                self._cond.notify_all()  # retire() waits for the queue to empty
            else:
                return
        generation._finish("cancelled")

    def _work_loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._waiting or self._closed)
                if self._closed and not self._waiting:
                    return
                generation = self._waiting.popleft()
                self._running.append(generation)
            outcome = self._run(generation)
            with self._cond:
                self._running.remove(generation)
                self._cond.notify_all()  # retire() waits for the running list to empty
            generation._finish(*outcome)  # after leaving `running`, so a finished reply is never counted
            if generation.stats is not None:  # always, once finished
                self.recent.append(generation.stats)

    # --- generation ---------------------------------------------------------------------------

    def _run(self, generation: Generation) -> tuple:
        """Generate one reply; return the arguments for `Generation._finish`. Never raises."""
        generation._started = time.perf_counter()
        if generation.cancelled:
            return ("cancelled",)
        ids = generation.prompt.ids
        cache, cached = self.prefix_cache.take(ids)
        try:
            output = self.model.generate(**self._generate_kwargs(generation, cache))
            generated = output.sequences[0, len(ids):].tolist()
            self.prefix_cache.put(ids + generated, getattr(output, CACHE_ARG))
            return self._finish_reason(generation, generated), cached
        except Exception as exc:  # noqa: BLE001 - every failure must reach the consumer, not kill the worker
            log.exception("generation %s failed", generation.id)
            self._release_device_memory()
            return "error", cached, failure(exc)

    def _generate_kwargs(self, generation: Generation, cache) -> dict:
        params = generation.params
        device = self.model.device
        input_ids = torch.tensor([generation.prompt.ids], device=device)
        kwargs = dict(
            input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
            max_new_tokens=generation.max_new_tokens,
            repetition_penalty=float(params.repetition_penalty),
            stopping_criteria=StoppingCriteriaList([_StopSignals(generation, self._marker_watch, device)]),
            streamer=_TokenSink(generation), return_dict_in_generate=True,
            # always greedy: sampling happens in _SampleWithGenerator, on the request's own RNG
            do_sample=False, temperature=None, top_p=None, top_k=None,
        )
        if not params.greedy:
            kwargs["logits_processor"] = LogitsProcessorList(
                [_SampleWithGenerator(params, request_generator(params, device))])
        if cache is not None:
            kwargs[CACHE_ARG] = cache
        return kwargs

    def _finish_reason(self, generation: Generation, generated: list[int]) -> str:
        if generation._hit_marker:
            return "stop"
        if generation.cancelled:
            return "cancelled"
        if generated and generated[-1] in self.stop_token_ids:
            return "stop"
        return "length"

    # --- decoding and the reasoning split -----------------------------------------------------

    def _decoder(self) -> IncrementalDecoder:
        return IncrementalDecoder(self.tokenizer, hidden_ids=self._hidden_ids)

    def _splitter(self, prompt: Prompt) -> ReasoningSplitter | None:
        """A fresh splitter for one reply on a family that thinks (None otherwise)."""
        if not self.lm.family.thinking:
            return None
        return ReasoningSplitter(opened=self._opens_reasoning(prompt))

    def _opens_reasoning(self, prompt: Prompt) -> bool:
        """Whether the prompt ends inside an open `<think>` block (the template's enable_thinking=True)."""
        tail = self.tokenizer.decode(prompt.ids[-PROMPT_TAIL_TOKENS:], skip_special_tokens=False)
        return opens_reasoning(tail)

    def _reasoning_summary(self, prompt: Prompt, token_ids: list[int]) -> tuple[bool, int]:
        """(whether the reply stops before its reasoning is closed, how many of its tokens are reasoning),
        from all its ids, split as the consumer splits them."""
        if not self.lm.family.thinking or not token_ids:
            return False, 0
        opened = self._opens_reasoning(prompt)
        decoder = self._decoder()
        text = decoder.push(list(token_ids)) + decoder.flush()
        split = split_reasoning(text[:find_stop(text, self.stop_markers)], opened=opened)
        if not split.reasoning:
            return split.ended_in_reasoning, 0
        # the tokens between the open tag (or the prompt's) and the close tag (or the reply's end)
        open_id, close_id = (self.tokenizer.convert_tokens_to_ids(tag) for tag in THINK_TAGS)
        end = token_ids.index(close_id) if close_id in token_ids else len(token_ids)
        start = 0 if opened or open_id not in token_ids[:end] else token_ids.index(open_id) + 1
        return split.ended_in_reasoning, end - start

    @staticmethod
    def _release_device_memory() -> None:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def load_engine(settings: ModelSettings) -> Engine:
    """Load the model the settings name (or the demo model) and start an engine on it."""
    if settings.demo:
        lm = load_model(paths.demo_model_dir(settings.demo_family), device=settings.device, dtype=settings.dtype,
                        demo=True)
    else:
        lm = load_model(settings.model, device=settings.device, dtype=settings.dtype,
                        cache_dir=settings.cache_dir, trust_remote_code=settings.trust_remote_code)
    return Engine(lm, max_concurrent=settings.max_concurrent, max_queue=settings.max_queue)


KV_MEMORY_SHARE = 0.8  # of the device's free memory, what the default max_length's KV cache may take


def kv_bytes_per_token(config, dtype: torch.dtype) -> int:
    """Bytes one token's keys and values take in the cache, from the model's config."""
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return 2 * config.num_hidden_layers * kv_heads * head_dim * torch.empty((), dtype=dtype).element_size()


def free_memory_bytes(device: torch.device) -> int:
    """Free memory where the KV cache will live: the GPU's (torch.cuda.mem_get_info), else the RAM
    available to this process (psutil)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    import psutil

    return psutil.virtual_memory().available


def kv_budget(lm: LoadedModel, step: int = 16) -> KvBudget:
    """The default max_length for `lm`: its whole context if that is no longer than the default
    family's (MiniCPM-2B keeps all of its own), else the longest whose KV cache fits KV_MEMORY_SHARE of the free
    memory (a multiple of `step`), so a 131k context is never the silent default on a 24 GB card."""
    per_token = kv_bytes_per_token(lm.model.config, lm.model.dtype)
    free = free_memory_bytes(torch.device(lm.device))
    context = lm.context_length
    if context <= MODEL_CONTEXT:
        return KvBudget(context, context, per_token, free)
    fits = int(free * KV_MEMORY_SHARE) // per_token // step * step
    return KvBudget(max(step, min(context, fits)), context, per_token, free)


def failure(exc: Exception) -> GenerationFailed:
    """What the consumer of a generation that raised `exc` is told."""
    if isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower():
        return GenerationFailed("The GPU ran out of memory while generating. Lower max_length, clear or "
                                "shorten the conversation, or close other programs using the GPU, then try "
                                "again.", code="out_of_memory")
    return GenerationFailed(f"Generation failed: {type(exc).__name__}: {exc}")


def hidden_token_ids(tokenizer, stop_token_ids: frozenset[int]) -> frozenset[int] | None:
    """The ids to leave out of the text of a thinking family's reply, or None where skipping the
    special tokens is already right.

    Decoding with `skip_special_tokens=True` hides the chat tags but would also drop the think tags
    if the tokenizer marks them special (Qwen3's and our test tokenizer do not; a checkpoint may), and
    would show a stop token that is not marked special. So then: every special token and stop token
    is hidden except the think tags, which the reasoning splitter needs to see.
    """
    special = {i for i, token in tokenizer.added_tokens_decoder.items() if token.special}
    special |= set(tokenizer.all_special_ids)
    think_ids = {tokenizer.convert_tokens_to_ids(tag) for tag in THINK_TAGS} - {None, tokenizer.unk_token_id}
    if not (think_ids & special) and stop_token_ids <= special:
        return None
    return frozenset((special | stop_token_ids) - think_ids)
