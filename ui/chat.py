"""The chat page's logic: history to prompt, streaming a reply into the store, and the actions on
the last turn (regenerate, edit the question, clear).

The invariant: nothing the user typed or saw is lost.
- The question is stored before generation starts.
- The reply is created in the store when generation starts, saved at least every SAVE_EVERY_S
  while it streams, and finalised in a `finally`. Stop, a click elsewhere (a rerun abandons
  `st.write_stream` and does not return the partial text) or a closed tab therefore leaves the
  partial reply in the store, marked finish_reason "cancelled". The run that click starts draws
  the conversation only once that is done (`settle_abandoned_reply`).
- Leaving the stream early always cancels the generation, so no abandoned reply keeps the model
  busy (engine.running drops back to 0).

Drawing happens in `app_pages/chat.py` and `answer_here`; the rest is plain functions over the store.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import streamlit as st

from minicpm_core import paths
from minicpm_core.errors import MiniCPMError, QueueFull
from minicpm_core.params import GenerationParams
from minicpm_core.prompt import ChatOptions
from minicpm_core.stats import FINISH_REASONS
from minicpm_core.store import Conversation, ConversationStore, Message, NotFound

from ui import markdown_safe, state
from ui.i18n import current_language, t
from ui.markdown_safe import plain_text
from ui.notices import error_text

SAVE_EVERY_S = 0.5  # how much of a streamed reply a crash or a killed session can lose at most
QUEUE_POLL_S = 0.25  # how often the queue position is refreshed while waiting
STATS_WAIT_S = 2.0  # after a stop, how long to wait for the engine's final numbers
SETTLE_WAIT_S = 5.0  # how long a run waits for the run it replaced to save the reply it was streaming


# --- an empty conversation ------------------------------------------------------------------------

# The demo model knows only its training questions (demo_data/qa.jsonl): these show streaming, code,
# LaTeX and lists. A real model gets the examples of ui.i18n.
DEMO_EXAMPLES = {
    "en": ("Tell me a story.", "Write a Python function that adds two numbers.",
           "What is the Pythagorean theorem?", "What is the capital of France?"),
    "zh": ("讲一个故事", "用 Python 打印你好", "前 n 个正整数的和是多少？", "列出三种水果"),
}
EXAMPLES_KEY = "examples"  # the container of the example buttons
CHOSEN_EXAMPLE = "_chosen_example"  # the clicked example, asked on this run


EXAMPLES_SHOWN = 4


def example_questions(demo: bool, demo_family: str | None = None) -> list[str]:
    if demo and demo_family not in (None, paths.DEFAULT_DEMO_FAMILY):
        return demo_questions(demo_family, current_language())
    if demo:
        return list(DEMO_EXAMPLES[current_language()])
    return [t(f"example_{i}") for i in range(1, EXAMPLES_SHOWN + 1)]


def demo_questions(family: str, language: str) -> list[str]:
    """The questions `family`'s demo was trained on (its qa.jsonl), those in `language` first."""
    lines = paths.demo_questions_file(family).read_text(encoding="utf-8").splitlines()
    questions = [json.loads(line)["q"] for line in lines if line.strip()]
    chinese = [q for q in questions if any("\u4e00" <= ch <= "\u9fff" for ch in q)]
    mine = chinese if language == "zh" else [q for q in questions if q not in chinese]
    return (mine + [q for q in questions if q not in mine])[:EXAMPLES_SHOWN]


def welcome(demo: bool, demo_family: str | None = None) -> None:
    """What an empty chat shows: one line on what to do, and example questions to click.

    Buttons, not st.pills: a click is an event, and a button's click reaches the server once. A pills
    selection is a value the browser keeps and sends again with every later interaction until a
    redrawn pills widget clears it; the run that asks the example also removes the welcome, so the
    clearing never reached the browser, and Stop during the reply chose (and asked) it again.
    """
    st.markdown(t("chat_welcome"))
    st.caption(t("examples"))
    with st.container(horizontal=True, key=EXAMPLES_KEY):
        for i, question in enumerate(example_questions(demo, demo_family)):
            st.button(question, key=f"example_{i}", on_click=_choose_example, args=(question,))


def _choose_example(question: str) -> None:
    st.session_state[CHOSEN_EXAMPLE] = question


def take_chosen_example() -> str | None:
    """The example clicked for this run, once: the next run (e.g. Stop's) finds nothing."""
    return st.session_state.pop(CHOSEN_EXAMPLE, None)


# --- history ---------------------------------------------------------------------------------------

def prompt_messages(conversation: Conversation | None, system_prompt: str = "") -> list[dict[str, str]]:
    """The model's input: the sidebar's system prompt, then the stored messages that have text.
    A reply's reasoning (in its meta) is never sent back: the history holds only the answers, as the
    thinking templates themselves do for earlier turns."""
    messages = [{"role": "system", "content": system_prompt}] if system_prompt.strip() else []
    for message in conversation.messages if conversation else ():
        if message.content.strip():  # an interrupted reply that produced nothing is not history
            messages.append({"role": message.role, "content": message.content})
    return messages


def last_question(conversation: Conversation | None) -> Message | None:
    for message in reversed(conversation.messages if conversation else ()):
        if message.role == "user":
            return message
    return None


def reply_meta(stats: Any, params: GenerationParams, finish_reason: str | None = None,
               thinking: "Thinking | None" = None, model: str | None = None) -> dict[str, Any]:
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
            meta.update(reasoning_tokens=getattr(stats, "reasoning_tokens", None),
                        ended_in_reasoning=bool(getattr(stats, "ended_in_reasoning", False)))
    if finish_reason is not None:
        meta["finish_reason"] = finish_reason
    return meta


def reply_caption(meta: dict[str, Any]) -> str:
    """'OpenBMB/MiniCPM5-1B · 42 tokens · 12.3 tokens/s · finished' under a reply; '' for a message
    without numbers. (Markdown: the model's name, which an import file may carry, is escaped.)"""
    parts = [plain_text(meta["model"])] if meta.get("model") else []
    if meta.get("completion_tokens") is not None:
        parts.append(t("stat_tokens", n=meta["completion_tokens"]))
    if meta.get("tokens_per_second"):
        parts.append(t("stat_speed", speed=meta["tokens_per_second"]))
    reason = meta.get("finish_reason")
    if reason == "cancelled" and meta.get("stopped_for"):
        parts.append(t("finish_switched", model=plain_text(meta["stopped_for"])))
    elif reason in FINISH_REASONS:
        parts.append(t(f"finish_{reason}"))
    elif "params" in meta and reason is None:
        parts.append(t("finish_unfinished"))  # still streaming in another run, or the process died
    return " · ".join(parts)


# --- the context meter -----------------------------------------------------------------------------

@dataclass(frozen=True)
class ContextUsage:
    tokens: int
    budget: int
    turns_dropped: int

    @property
    def fraction(self) -> float:
        return min(1.0, self.tokens / self.budget) if self.budget else 0.0


def context_usage(backend, conversation: Conversation | None, params: GenerationParams,
                  system_prompt: str = "") -> ContextUsage | None:
    """Tokens the conversation takes in the model's context, against the budget (max_length).

    After a reply: its real prompt + reply tokens and how many old turns it had to leave out.
    Otherwise (no reply yet, an imported conversation): what the backend would encode now.
    None when unknown (a remote backend before its first reply, the model still loading).
    """
    if not backend.ready:
        return None
    budget = backend.budget(params)
    messages = prompt_messages(conversation, system_prompt)
    last = conversation.messages[-1] if conversation and conversation.messages else None
    if last is not None and last.role == "assistant" and last.meta.get("prompt_tokens") is not None:
        tokens = last.meta["prompt_tokens"] + (last.meta.get("completion_tokens") or 0)
        return ContextUsage(tokens, budget, last.meta.get("turns_dropped") or 0)
    if not any(m["role"] != "system" for m in messages):
        return ContextUsage(0, budget, 0)
    if messages[-1]["role"] != "user":  # measure what the next question would start from
        messages = [*messages, {"role": "user", "content": "?"}]
    try:
        prompt = backend.prepare(messages, params)
    except MiniCPMError:
        return None
    if prompt is None:
        return None
    return ContextUsage(len(prompt.ids), budget, prompt.turns_dropped)


# --- streaming ----------------------------------------------------------------------------------------

def wait_in_queue(generation, on_queue: Callable[[int | None], None]) -> None:
    """Report the place in the queue until generation starts (a no-op if it already has).

    Call it from inside the generator that `st.write_stream` iterates: drawing there lets a rerun
    or Stop interrupt the wait, and the generator's cleanup then cancels the queued request.
    """
    position = getattr(generation, "position", None)
    if not position:
        return
    wait = getattr(generation, "wait", None)
    while position:
        on_queue(position)
        if wait is not None:
            wait(QUEUE_POLL_S)  # returns early if the request finishes (e.g. cancelled elsewhere)
        else:
            time.sleep(QUEUE_POLL_S)
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


def follow(generation, on_queue: Callable[[int | None], None]) -> Iterator[str]:
    """Text deltas of a generation, queue position reported first; leaving early cancels it."""
    finished = False
    try:
        wait_in_queue(generation, on_queue)
        yield from generation
        finished = True
    finally:
        if not finished:
            generation.cancel()


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


def reasoning_label(meta: dict[str, Any]) -> str:
    """The collapsed block's label under a stored reply: its time and, once known, its token count."""
    seconds = meta.get("reasoning_seconds") or 0.0
    if meta.get("reasoning_tokens"):
        return t("thought_tokens", seconds=seconds, n=meta["reasoning_tokens"])
    return t("thought", seconds=seconds)


class ThinkingBlock:
    """The collapsible block above a streaming answer: open while the model thinks, collapsed once
    the answer begins. Drawn into `slot` (an st.empty above the answer) on the first reasoning."""

    def __init__(self, slot) -> None:
        self.slot = slot
        self.status = None
        self.body = None
        self.collapsed = False

    def show(self, thinking: Thinking) -> None:
        if self.status is None:
            with self.slot.container():
                self.status = st.status(t("thinking", seconds=thinking.seconds()), expanded=True, state="running")
                with self.status:
                    self.body = st.empty()
        self.body.markdown(markdown_safe.safe_markdown(thinking.text))
        # expanded again: an update without it clears the field, which the browser draws collapsed
        self.status.update(label=t("thinking", seconds=thinking.seconds()), expanded=True)

    def collapse(self, thinking: Thinking) -> None:
        if self.status is not None and not self.collapsed:
            self.collapsed = True
            self.status.update(label=t("thought", seconds=thinking.seconds()), state="complete", expanded=False)


def reasoning_and_answers(generation) -> Iterator[tuple[str, str]]:
    """(reasoning_delta, answer_delta) pairs: the generation's parts(), or its answer deltas where the
    backend has no parts() (a remote server that does not split)."""
    parts = getattr(generation, "parts", None)
    if parts is not None:
        return parts()
    return (("", delta) for delta in generation)


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

    def stream(self) -> Iterator[str]:
        """Answer deltas (the reasoning goes to `block`). Closing this iterator early cancels the
        generation and keeps the partial text."""
        inner = reasoning_and_answers(self.generation)
        outcome: str | None = "cancelled"  # None: finished normally, the engine's reason stands
        try:
            wait_in_queue(self.generation, self.on_queue)
            last_save = time.monotonic()
            for reasoning, delta in inner:
                if reasoning:
                    self.thinking.add(reasoning)
                    if self.block is not None:
                        self.block.show(self.thinking)
                if delta:
                    self.thinking.end()
                    if self.block is not None:
                        self.block.collapse(self.thinking)
                    self.text += delta
                    yield delta
                if time.monotonic() - last_save >= SAVE_EVERY_S:
                    self._save(reply_meta(None, self.params, thinking=self.thinking, model=self.model)
                               if self.thinking.text else None)
                    last_save = time.monotonic()
            outcome = None
        except MiniCPMError:
            outcome = "error"
            raise
        finally:
            if outcome == "cancelled":
                close = getattr(inner, "close", None)
                if close:
                    close()
                self.generation.cancel()  # also when iteration never started (still queued)
            self.finish(outcome)

    def _save(self, meta: dict[str, Any] | None = None) -> None:
        try:
            self.store.update_message(self.conv_id, self.message_id, content=self.text, meta=meta)
        except NotFound:
            pass  # the conversation was deleted in another tab while this reply streamed

    def finish(self, outcome: str | None) -> None:
        """Save the final text and meta; `outcome` overrides the engine's finish reason."""
        self.finished = True
        stats = getattr(self.generation, "stats", None)
        wait = getattr(self.generation, "wait", None)
        if stats is None and wait is not None:
            wait(STATS_WAIT_S)  # a cancelled request stops within one decoding step
            stats = self.generation.stats
        self.thinking.end()
        self.meta = reply_meta(stats, self.params, outcome, self.thinking, self.model)
        self.meta.setdefault("finish_reason", "stop")
        if getattr(self.generation, "stopped_for", None):  # a model switch cancelled it
            self.meta["stopped_for"] = self.generation.stopped_for
        self._save(self.meta)


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


def ask(store: ConversationStore, conv_id: str | None, question: str) -> str:
    """Store the question (creating the conversation if needed) before anything is generated."""
    if conv_id is None or store.get(conv_id) is None:
        conv_id = store.create().id
    store.append(conv_id, "user", question)
    return conv_id


def answer_here(store: ConversationStore, backend, conv_id: str, params: GenerationParams,
                system_prompt: str = "", enable_thinking: bool | None = None) -> bool:
    """Stream a reply to the conversation's last question into an assistant bubble on this page.

    Returns True when the reply finished (the caller reruns to redraw from the store). Errors are
    shown as st.error; the question stays stored either way.
    """
    conversation = store.get(conv_id)
    try:
        # enable_thinking only where it was asked for: a backend without thinking need not take it
        extra = {} if enable_thinking is None else {"options": ChatOptions(enable_thinking=enable_thinking)}
        generation = backend.submit(prompt_messages(conversation, system_prompt), params, **extra)
    except QueueFull as exc:  # the question is kept: redraw, so its Regenerate button is there to retry
        state.flash("warning", error_text(exc))
        return True
    except MiniCPMError as exc:
        st.error(error_text(exc))
        return False
    streaming = st.session_state[state.STREAMING_REPLY] = StreamingReply(generation)
    recorder = None
    try:
        model = backend.model_name
        message = store.append(conv_id, "assistant", "", reply_meta(None, params, model=model))
        recorder = ReplyRecorder(store, conv_id, message.id, generation, params, model=model)
        with st.chat_message("assistant"):
            recorder.on_queue = queue_notice(st.empty())
            # A click reruns the script, which closes the stream below: the partial reply is saved
            # as "cancelled" and the next run draws it with its caption and the turn's actions.
            # (chat_input's own Stop ends the run instead, and nothing could be drawn after it.)
            st.button(t("stop_reply"), key="stop_reply", icon=":material/stop_circle:", type="tertiary")
            recorder.block = ThinkingBlock(st.empty())  # above the answer; drawn on the first reasoning
            stream = recorder.stream()
            try:
                markdown_safe.write_stream(stream)
            except MiniCPMError as exc:  # GenerationFailed: the partial reply is already saved as "error"
                state.flash("error", error_text(exc))
            finally:
                stream.close()  # a rerun abandons write_stream: close now, not whenever GC runs
    finally:
        # Interrupted before streaming began (a rerun can strike at any st call): cancel anyway.
        if recorder is None or not recorder.finished:
            generation.cancel()
            if recorder is not None:
                recorder.finish("cancelled")
        streaming.settled.set()
    return True


# --- actions on the last turn (button callbacks) ---------------------------------------------------

def regenerate(store: ConversationStore, conv_id: str) -> None:
    """Drop every reply after the last question and ask for a new one."""
    conversation = store.get(conv_id)
    question = last_question(conversation)
    if question is None:
        return
    after = conversation.messages[conversation.messages.index(question) + 1:]
    if after:
        store.delete_messages_from(conv_id, after[0].id)
    st.session_state[state.PENDING_REPLY] = conv_id


def edit_question(store: ConversationStore, conv_id: str, text_key: str) -> None:
    """Replace the last question with the edited text (from widget `text_key`) and answer it anew."""
    text = st.session_state.get(text_key, "")
    if not text.strip():
        state.flash("warning", t("edit_empty"))
        return
    question = last_question(store.get(conv_id))
    if question is None:
        return
    store.delete_messages_from(conv_id, question.id)
    store.append(conv_id, "user", text)
    st.session_state[state.PENDING_REPLY] = conv_id


def clear(store: ConversationStore, conv_id: str) -> None:
    """Remove every message; the conversation stays (it takes its next question's title)."""
    conversation = store.get(conv_id)
    if conversation and conversation.messages:
        store.delete_messages_from(conv_id, conversation.messages[0].id)
    store.rename(conv_id, "")
    st.session_state.pop(state.PENDING_REPLY, None)


def run_action(action: Callable[..., None], *args: Any) -> None:
    """Button callback wrapper: a MiniCPMError (e.g. deleted in another tab) becomes a notice."""
    try:
        action(*args)
    except MiniCPMError as exc:
        state.flash("error", error_text(exc))
