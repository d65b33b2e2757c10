"""The contract both front ends code against: a `Backend` produces replies, a `ReplyStream` is one reply.

Implemented directly by `engine.Engine` (the model in this process) and `remote.RemoteBackend` (any
OpenAI-compatible server); the app's PendingBackend stands in for an Engine while it loads. The
Streamlit app drives whichever it has through these members alone, and so does the HTTP API.

What the members promise:
- `submit` validates and encodes at once, so bad input raises there (InvalidRequest, ContextOverflow,
  QueueFull), before anything is queued; `cancelled()`, when given, is polled while encoding.
- `enable_thinking` (submit, prepare) is the chat template's thinking switch on a family that thinks
  (MiniCPM5); None leaves the template's own default, and a family without thinking ignores it.
- A reply of a thinking model is split once, by its producer: iterating a `ReplyStream` gives the
  answer's deltas only, `parts()` `(reasoning_delta, answer_delta)` pairs in order (use one or the
  other, once); `text` is the answer, `reasoning` the reasoning, never with the `<think>` tags. A
  reply that stopped inside the reasoning has `stats.ended_in_reasoning`. Without thinking,
  `reasoning` stays "" and `parts()` gives `("", delta)`.
- `prepare` checks messages and parameters without generating: the prompt's token ids (`Prompt`),
  or None where no tokenizer is at hand (a remote server, a model still loading).
- `recent` is the live record of the last replies, appended from worker threads: copy it
  (`list(backend.recent)`) before iterating.
- `info()` never raises; it is what the Model page shows (a flat dict, backend-specific keys).
- What is loaded, for the pages: `family` (None where unknown: a remote server, a model still
  loading unless it is a demo), `model_id` (the published id the checkpoint is known by, else None),
  `loaded_path` (the local checkpoint's folder, else None), `base_url` (the remote server's, else None)
  and `kv_budget()` (the default max_length a long context's KV cache fits in memory; None where no
  model is in this process).
- `wait()` is the loaded backend: itself, except the app's PendingBackend, which waits for its model.
- `retire(successor, drain_s)` is how a model switch (slot.py) ends a backend: new requests are refused,
  the replies under way get `drain_s` seconds, the rest are cancelled with `stopped_for` naming the
  successor, and the model's memory is freed. A remote backend holds no model: nothing to free.
- A `ReplyStream`'s `stats` is None until the reply is done; then every `ReplyStats` field is set.

Beside the declarations, two helpers every front end shares (`answer_deltas`, `template_thinking_default`);
it imports neither torch nor Streamlit nor FastAPI.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from .families.base import ModelFamily
from .params import GenerationParams
from .stats import ReplyStats


@dataclass(frozen=True)
class KvBudget:
    """The default max_length of a loaded model, and what it was chosen from (the sidebar says so)."""

    max_length: int        # the default: the context, or less where the KV cache would not fit
    context_length: int
    bytes_per_token: int   # the KV cache of one token: 2 (K and V) x layers x kv_heads x head_dim x dtype bytes
    free_bytes: int        # the device's free memory when asked

    @property
    def limited_by_memory(self) -> bool:
        return self.max_length < self.context_length


@runtime_checkable
class ReplyStream(Protocol):
    """One reply (engine.Generation, remote.RemoteGeneration): iterate it once for text deltas."""

    text: str  # the answer's deltas so far, concatenated
    reasoning: str  # the reasoning's deltas so far, concatenated ("" unless the model thinks)
    stats: ReplyStats | None  # set once the reply is done
    stopped_for: str | None  # the model a switch cancelled this reply for (Backend.retire), else None

    # Both are generators: closing one early cancels the reply.
    def __iter__(self) -> Generator[str, None, None]: ...  # the answer's deltas
    def parts(self) -> Generator[tuple[str, str], None, None]: ...  # (reasoning, answer) deltas, not with __iter__
    def cancel(self) -> None: ...  # stops generating within a step; abandoning the iterator does too
    def result(self) -> str: ...  # block until done; the whole text
    def wait(self, timeout: float | None = None) -> bool: ...  # True once done
    @property
    def done(self) -> bool: ...
    @property
    def cancelled(self) -> bool: ...
    @property
    def position(self) -> int | None: ...  # places ahead + 1 while queued, 0 while generating, None when done


@runtime_checkable
class Backend(Protocol):
    """What produces replies, as the app and the API see it."""

    @property
    def ready(self) -> bool: ...  # False only while the model is still loading (the app's PendingBackend)
    @property
    def demo(self) -> bool: ...  # the tiny demo model that ships with the app
    @property
    def gpu_problem(self) -> str | None: ...  # an NVIDIA GPU here that PyTorch cannot use (loader.gpu_problem)

    def submit(self, messages: list[dict], params: GenerationParams | dict | None = None, *,
               cancelled: Callable[[], bool] | None = None, enable_thinking: bool | None = None) -> ReplyStream: ...
    def prepare(self, messages: list[dict], params: GenerationParams | None = None, cancelled=None, *,
                enable_thinking: bool | None = None) -> Any | None: ...
    def budget(self, params: GenerationParams) -> int: ...  # prompt + reply tokens these params allow
    @property
    def context_length(self) -> int | None: ...
    @property
    def model_name(self) -> str: ...  # what captions, notices and clients call the model (paths.model_name)
    @property
    def queue_depth(self) -> int: ...  # requests waiting for a slot
    @property
    def running(self) -> int: ...  # replies being generated now
    @property
    def recent(self) -> Sequence[ReplyStats]: ...
    @property
    def ignored_controls(self) -> tuple[str, ...]: ...  # GenerationParams fields the model never gets
    def info(self) -> dict[str, Any]: ...
    @property
    def family(self) -> ModelFamily | None: ...  # the loaded model's family; None where unknown
    @property
    def model_id(self) -> str | None: ...  # the published id of the loaded checkpoint (by --model), else None
    @property
    def loaded_path(self) -> Path | None: ...  # the local checkpoint's folder; None for a remote server
    @property
    def base_url(self) -> str | None: ...  # the remote server's URL; None for a model in this process
    def kv_budget(self) -> KvBudget | None: ...  # the default max_length memory allows; None without a local model
    def wait(self) -> Backend: ...  # the loaded backend: itself once loaded
    def retire(self, successor: str, drain_s: float) -> None: ...  # end it for a model switch (see above)


def answer_deltas(parts: Generator[tuple[str, str], None, None]) -> Generator[str, None, None]:
    """The answer deltas of a (reasoning, answer) stream, as a ReplyStream's iteration yields them.

    Closing this iterator closes `parts` at once, not when it is collected: that is what cancels the
    reply (the engine's generation, the remote server's HTTP stream)."""
    try:
        for _, content in parts:
            if content:
                yield content
    finally:
        parts.close()


def template_thinking_default(backend: Backend) -> bool | None:
    """What the chat template does when enable_thinking is not passed: True or False if its prompt
    for one question is the one it builds with that value, None if neither (the model decides, as in
    MiniCPM5's template) or where no prompt can be built (a remote server). Encodes three prompts:
    callers keep the answer per model."""
    question = [{"role": "user", "content": "?"}]

    def prompt_ids(enable_thinking: bool | None) -> list[int] | None:
        prompt = backend.prepare(question, enable_thinking=enable_thinking)
        return None if prompt is None else prompt.ids

    unset = prompt_ids(None)
    if unset is None:
        return None
    found = [value for value in (True, False) if prompt_ids(value) == unset]
    return found[0] if found else None
