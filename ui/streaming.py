"""A reply as it streams, shared by Chat and Compare: the wait in the queue, the reasoning block
above the answer, and (Chat) the recorder that saves the reply into the store while it grows.

The invariant: nothing the user typed or saw is lost.
- The reply is created in the store when generation starts, saved at least every SAVE_EVERY_S
  while it streams, and finalised in a `finally`. Stop, a click elsewhere (a rerun abandons
  `st.write_stream` and does not return the partial text) or a closed tab therefore leaves the
  partial reply in the store, marked finish_reason "cancelled". The run that click starts draws
  the conversation only once that is done (`settle_abandoned_reply`).
- Leaving the stream early always cancels the generation, so no abandoned reply keeps the model
  busy (engine.running drops back to 0).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator
from contextlib import closing
from typing import TYPE_CHECKING, Any

import streamlit as st

from minicpm_core.errors import MiniCPMError
from minicpm_core.params import GenerationParams
from minicpm_core.store import ConversationStore, NotFound
from ui import markdown_safe, state
from ui.i18n import t

if TYPE_CHECKING:
    from streamlit.delta_generator import DeltaGenerator
    from streamlit.elements.lib.mutable_status_container import StatusContainer

SAVE_EVERY_S = 0.5  # how much of a streamed reply a crash or a killed session can lose at most
QUEUE_POLL_S = 0.25  # how often the queue position is refreshed while waiting
STATS_WAIT_S = 2.0  # after a stop, how long to wait for the engine's final numbers
SETTLE_WAIT_S = 5.0  # how long a run waits for the run it replaced to save the reply it was streaming


# --- the wait in the queue ----------------------------------------------------------------------

def wait_in_queue(generation, on_queue: Callable[[int | None], None]) -> None:
    """Report the place in the queue until generation starts (a no-op if it already has).

    Call it from inside the generator that `st.write_stream` iterates: drawing there lets a rerun
    or Stop interrupt the wait, and the generator's cleanup then cancels the queued request.
    """
    position = generation.position
    if not position:
        return
    while position:
        on_queue(position)
        generation.wait(QUEUE_POLL_S)  # returns early if the request finishes (e.g. cancelled elsewhere)
        position = generation.position
    on_queue(None)


def queue_notice(placeholder) -> Callable[[int | None], None]:
    """An `on_queue` that writes "waiting: n in front" into a placeholder and clears it at the start."""
    def show(position: int | None) -> None:
        if position:
            placeholder.caption(t("queue_position", n=position))
        else:
            placeholder.empty()
    return show


# --- reasoning, then the answer -----------------------------------------------------------------

class Thinking:
    """A reply's reasoning as it streams: its text, when it began and ended (the answer's start)."""

    def __init__(self) -> None:
        self.text = ""
        self.started: float | None = None
        self.ended: float | None = None

    def add(self, delta: str) -> None:
        if self.started is None:
            self.started = time.monotonic()
        self.text += delta

    def end(self) -> None:
        if self.started is not None and self.ended is None:
            self.ended = time.monotonic()

    def seconds(self) -> float:
        if self.started is None:
            return 0.0
        return (self.ended or time.monotonic()) - self.started


class ThinkingBlock:
    """The collapsible block above a streaming answer: open while the model thinks, collapsed once
    the answer begins. Drawn into `slot` (an st.empty above the answer) on the first reasoning."""

    def __init__(self, slot) -> None:
        self.slot = slot
        self.status: StatusContainer | None = None
        self.body: DeltaGenerator | None = None
        self.collapsed = False

    def show(self, thinking: Thinking) -> None:
        status, body = self.status, self.body
        if status is None or body is None:  # both are drawn together, on the first reasoning
            with self.slot.container():
                status = st.status(t("thinking", seconds=thinking.seconds()), expanded=True, state="running")
                with status:
                    body = st.empty()
            self.status, self.body = status, body
        body.markdown(markdown_safe.safe_markdown(thinking.text))
        # expanded again: an update without it clears the field, which the browser draws collapsed
        status.update(label=t("thinking", seconds=thinking.seconds()), expanded=True)

    def collapse(self, thinking: Thinking) -> None:
        if self.status is not None and not self.collapsed:
            self.collapsed = True
            self.status.update(label=t("thought", seconds=thinking.seconds()), state="complete", expanded=False)


def follow_with_reasoning(generation, on_queue: Callable[[int | None], None], thinking: Thinking,
                          block: ThinkingBlock | None = None,
                          on_progress: Callable[[], None] | None = None) -> Generator[str, None, None]:
    """The answer's deltas, queue position reported first; the reasoning goes into `thinking` and is
    drawn in `block`, which collapses at the answer's first delta. `on_progress` is called after every
    step (the recorder saves there). Leaving early cancels the generation."""
    parts = generation.parts()
    finished = False
    try:
        wait_in_queue(generation, on_queue)
        for reasoning, answer in parts:
            if reasoning:
                thinking.add(reasoning)
                if block is not None:
                    block.show(thinking)
            if answer:
                thinking.end()
                if block is not None:
                    block.collapse(thinking)
                yield answer
            if on_progress is not None:
                on_progress()
        finished = True
    finally:
        thinking.end()
        if not finished:
            parts.close()
            generation.cancel()  # also when iteration never started (still queued)


# --- what the store keeps about a reply ---------------------------------------------------------

def reply_meta(stats: Any, params: GenerationParams, finish_reason: str | None = None,
               thinking: Thinking | None = None, model: str | None = None) -> dict[str, Any]:
    """What the store keeps about a reply: the model that wrote it, the engine's numbers and the settings
    that produced it, and a thinking reply's reasoning."""
    meta: dict[str, Any] = {"params": params.model_dump(exclude_none=True)}
    if model:
        meta["model"] = model
    if thinking is not None and thinking.text:
        meta.update(reasoning=thinking.text, reasoning_seconds=round(thinking.seconds(), 2))
    if stats is not None:
        meta.update(prompt_tokens=stats.prompt_tokens, completion_tokens=stats.completion_tokens,
                    tokens_per_second=stats.tokens_per_second, turns_dropped=stats.turns_dropped,
                    finish_reason=stats.finish_reason)
        if thinking is not None and thinking.text:
            meta.update(reasoning_tokens=stats.reasoning_tokens,
                        ended_in_reasoning=stats.ended_in_reasoning)
    if finish_reason is not None:
        meta["finish_reason"] = finish_reason
    return meta


def final_stats(generation) -> Any:
    """The generation's numbers; after a stop, waits briefly for them (a cancelled request stops
    within one decoding step). None if they do not come."""
    stats = generation.stats
    if stats is None:
        generation.wait(STATS_WAIT_S)
        stats = generation.stats
    return stats


class ReplyRecorder:
    """Iterates a generation for `st.write_stream` while saving the text to the store as it grows."""

    def __init__(self, store: ConversationStore, conv_id: str, message_id: str, generation,
                 params: GenerationParams, on_queue: Callable[[int | None], None] | None = None,
                 model: str | None = None):
        self.store = store
        self.model = model  # the name of the model that writes the reply
        self.conv_id = conv_id
        self.message_id = message_id
        self.generation = generation
        self.params = params
        self.on_queue = on_queue or (lambda position: None)
        self.text = ""
        self.thinking = Thinking()
        self.block: ThinkingBlock | None = None  # where reasoning is drawn while it streams
        self.meta: dict[str, Any] = {}
        self.finished = False
        self._last_save = time.monotonic()

    def stream(self) -> Generator[str, None, None]:
        """Answer deltas (the reasoning goes to `block`). Closing this iterator early cancels the
        generation and keeps the partial text."""
        outcome: str | None = "cancelled"  # None: finished normally, the engine's reason stands
        try:
            self._last_save = time.monotonic()
            # closing(): an early exit cancels the generation before `finish` reads its numbers
            with closing(follow_with_reasoning(self.generation, self.on_queue, self.thinking, self.block,
                                               self._save_now_and_then)) as answers:
                for delta in answers:
                    self.text += delta
                    yield delta
            outcome = None
        except MiniCPMError:
            outcome = "error"
            raise
        finally:
            self.finish(outcome)

    def _save_now_and_then(self) -> None:
        if time.monotonic() - self._last_save >= SAVE_EVERY_S:
            self._save(reply_meta(None, self.params, thinking=self.thinking, model=self.model)
                       if self.thinking.text else None)
            self._last_save = time.monotonic()

    def _save(self, meta: dict[str, Any] | None = None) -> None:
        try:
            self.store.update_message(self.conv_id, self.message_id, content=self.text, meta=meta)
        except NotFound:
            pass  # the conversation was deleted in another tab while this reply streamed

    def finish(self, outcome: str | None) -> None:
        """Save the final text and meta; `outcome` overrides the engine's finish reason."""
        self.finished = True
        stats = final_stats(self.generation)
        self.thinking.end()
        self.meta = reply_meta(stats, self.params, outcome, self.thinking, self.model)
        self.meta.setdefault("finish_reason", "stop")
        if self.generation.stopped_for:  # a model switch cancelled it
            self.meta["stopped_for"] = self.generation.stopped_for
        self._save(self.meta)


# --- the reply a rerun left behind ----------------------------------------------------------------

class StreamingReply:
    """The reply a run of this session is streaming, as the session's next run sees it.

    Streamlit's fastReruns (the default) start the run a click asks for at once, in a new thread,
    while the run it replaces is still streaming: that one stops only at its next Streamlit call and
    saves the reply in its `finally`. The new run must not draw the reply before then, or it shows
    the last periodic save (nothing at all within SAVE_EVERY_S of the first token) and no "stopped".
    """

    def __init__(self, generation) -> None:
        self.generation = generation
        self.settled = threading.Event()  # set once the reply is in the store for good


def settle_abandoned_reply() -> None:
    """Before drawing the conversation: wait until a reply an earlier run left mid-stream is saved.

    A run that starts while an earlier run of this session streams was asked for by a click (Stop,
    or any widget), and the earlier run abandons its stream: cancelling here only saves it the wait
    for its next token.
    """
    streaming = st.session_state.pop(state.STREAMING_REPLY, None)
    if streaming is None or streaming.settled.is_set():
        return
    streaming.generation.cancel()
    streaming.settled.wait(SETTLE_WAIT_S)
