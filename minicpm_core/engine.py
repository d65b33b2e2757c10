"""The chat engine: one loaded model shared by every browser session and API request.

`Engine.submit(messages, params)` validates and encodes at once (bad input raises there, before
anything is queued) and returns a `Generation`: iterate it for text deltas, `cancel()` it, or read
`position` while it waits. Both the Streamlit app and the HTTP API drive this and nothing else.

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
  the deltas concatenate to exactly the final reply.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Iterator

import torch
from transformers import StopStringCriteria, StoppingCriteria, StoppingCriteriaList
from transformers.generation.utils import GenerateDecoderOnlyOutput
from transformers.generation.streamers import BaseStreamer

from .detok import IncrementalDecoder
from .errors import GenerationFailed, InvalidRequest
from .loader import LoadedModel
from .params import GenerationParams
from .prefix_cache import PrefixCache
from .prompt import MIN_REPLY_ROOM, STOP_MARKERS, Prompt, build_prompt, find_stop, unsafe_tail
from .stats import RECENT_STATS, ReplyStats

log = logging.getLogger(__name__)

# The KV cache's name, as generate()'s argument and on its output: "cache" from transformers 5.21,
# "past_key_values" before (5.20 is the newest for Python 3.10, AutoDL's Python).
CACHE_ARG = "cache" if "cache" in GenerateDecoderOnlyOutput.__dataclass_fields__ else "past_key_values"

class Generation:
    """One request: a worker produces token ids, the consumer iterates text deltas."""

    _ids = itertools.count(1)

    def __init__(self, engine: Engine, prompt: Prompt, params: GenerationParams, max_new_tokens: int):
        self.id = next(self._ids)
        self.prompt = prompt
        self.params = params
        self.max_new_tokens = max_new_tokens
        self.text = ""  # what the consumer has been shown so far
        self.stats: ReplyStats | None = None
        self._engine = engine
        self._cancel = threading.Event()
        self._cond = threading.Condition()
        self._token_ids: list[int] = []
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

    def __iter__(self) -> Iterator[str]:
        return self._deltas()

    def _deltas(self) -> Iterator[str]:
        decoder = IncrementalDecoder(self._engine.tokenizer)
        decoded, read = "", 0
        try:
            while True:
                with self._cond:
                    self._cond.wait_for(lambda: len(self._token_ids) > read or self._finished)
                    new_ids = self._token_ids[read:]
                    finished = self._finished
                read += len(new_ids)
                decoded += decoder.push(new_ids)
                if finished:
                    decoded += decoder.flush()
                stop = find_stop(decoded)
                if stop is not None:
                    visible = decoded[:stop]
                elif finished:
                    visible = decoded
                else:
                    visible = decoded[:len(decoded) - unsafe_tail(decoded)]
                if len(visible) > len(self.text):
                    delta, self.text = visible[len(self.text):], visible
                    yield delta
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
        n = len(self._token_ids)
        decode_time = (self._last_token or now) - (self._first_token or now)
        self.stats = ReplyStats(
            prompt_tokens=len(self.prompt.ids), completion_tokens=n, cached_tokens=cached_tokens,
            turns_dropped=self.prompt.turns_dropped,
            queue_seconds=(self._started or now) - self._submitted,
            ttft_seconds=None if self._first_token is None else self._first_token - self._submitted,
            tokens_per_second=(n - 1) / decode_time if n > 1 and decode_time > 0 else None,
            total_seconds=now - self._submitted, finish_reason=finish_reason)
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


class _StopWhenCancelled(StoppingCriteria):
    def __init__(self, event: threading.Event):
        self._event = event

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs) -> torch.Tensor:
        return torch.full((input_ids.shape[0],), self._event.is_set(), dtype=torch.bool, device=input_ids.device)


class Engine:
    def __init__(self, lm: LoadedModel, max_concurrent: int = 1, prefix_cache: PrefixCache | None = None):
        if max_concurrent < 1:
            raise InvalidRequest("max_concurrent must be at least 1.", "max_concurrent")
        self.lm = lm
        self.model = lm.model
        self.tokenizer = lm.tokenizer
        self.max_concurrent = max_concurrent
        self.prefix_cache = prefix_cache if prefix_cache is not None else PrefixCache()
        # Built once: it preprocesses the whole vocabulary (122k pieces upstream), and it keeps no
        # per-request state, so every generation can share it.
        self._stop_on_markers = StopStringCriteria(self.tokenizer, list(STOP_MARKERS))
        self.recent: deque[ReplyStats] = deque(maxlen=RECENT_STATS)
        self._waiting: deque[Generation] = deque()
        self._running: list[Generation] = []
        self._cond = threading.Condition()
        self._closed = False
        self._workers = [threading.Thread(target=self._work_loop, name=f"minicpm-engine-{i}", daemon=True)
                         for i in range(max_concurrent)]
        for worker in self._workers:
            worker.start()

    # --- public interface ---------------------------------------------------------------------

    @property
    def context_length(self) -> int:
        return self.lm.context_length

    def budget(self, params: GenerationParams) -> int:
        return min(params.max_length, self.context_length)

    def prepare(self, messages: list[dict], params: GenerationParams | None = None, cancelled=None) -> Prompt:
        """Validate and encode without generating: prompt ids and how many old turns were dropped.

        `cancelled()` (optional) is polled while encoding: True stops the work (the caller left)."""
        params = params or GenerationParams()
        room = params.max_new_tokens or MIN_REPLY_ROOM
        return build_prompt(messages, self.tokenizer, self.budget(params), room, cancelled)

    def submit(self, messages: list[dict], params: GenerationParams | dict | None = None, *,
               cancelled=None) -> Generation:
        if not isinstance(params, GenerationParams):
            params = GenerationParams.parse(params)
        prompt = self.prepare(messages, params, cancelled)
        max_new = self.budget(params) - len(prompt.ids)
        if params.max_new_tokens:
            max_new = min(max_new, params.max_new_tokens)
        generation = Generation(self, prompt, params, max_new)
        with self._cond:
            if self._closed:
                raise GenerationFailed("The engine has been shut down.")
            self._waiting.append(generation)
            self._cond.notify()
        return generation

    def stream(self, messages: list[dict], params: GenerationParams | dict | None = None) -> Iterator[str]:
        """Text deltas of one reply; closing the iterator cancels the generation."""
        yield from self.submit(messages, params)

    def chat(self, messages: list[dict], params: GenerationParams | dict | None = None) -> tuple[str, ReplyStats]:
        generation = self.submit(messages, params)
        return generation.result(), generation.stats

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

    # --- scheduling ---------------------------------------------------------------------------

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
            generation._finish(*outcome)  # after leaving `running`, so a finished reply is never counted
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
        if params.seed is not None:
            torch.manual_seed(params.seed)  # reproducible with max_concurrent=1, as the RNG is global
        device = self.model.device
        input_ids = torch.tensor([generation.prompt.ids], device=device)
        kwargs = dict(
            input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
            max_new_tokens=generation.max_new_tokens,
            repetition_penalty=float(params.repetition_penalty),
            stopping_criteria=StoppingCriteriaList([_StopWhenCancelled(generation._cancel), self._stop_on_markers]),
            streamer=_TokenSink(generation), return_dict_in_generate=True,
        )
        if params.greedy:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            kwargs.update(do_sample=True, temperature=float(params.temperature), top_p=float(params.top_p),
                          top_k=int(params.top_k))
        if cache is not None:
            kwargs[CACHE_ARG] = cache
        return kwargs

    def _finish_reason(self, generation: Generation, generated: list[int]) -> str:
        if generation.cancelled:
            return "cancelled"
        if generated and generated[-1] == self.tokenizer.eos_token_id:
            return "stop"
        tail = self.tokenizer.decode(generated[-16:], skip_special_tokens=True)
        if find_stop(tail) is not None:
            return "stop"
        return "length"

    @staticmethod
    def _release_device_memory() -> None:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def failure(exc: Exception) -> GenerationFailed:
    """What the consumer of a generation that raised `exc` is told."""
    if isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower():
        return GenerationFailed("The GPU ran out of memory while generating. Lower max_length, clear or "
                                "shorten the conversation, or close other programs using the GPU, then try "
                                "again.", code="out_of_memory")
    return GenerationFailed(f"Generation failed: {type(exc).__name__}: {exc}")
