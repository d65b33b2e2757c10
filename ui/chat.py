"""The chat page's conversation: its messages drawn from the store, and a reply streamed into a new
bubble and into the store at once (`answer_here`).

The question is stored before generation starts (ui.actions.ask); the reply is saved while it
streams and finalised however the stream ends (ui.streaming.ReplyRecorder), so nothing the user
typed or saw is lost.
"""

from __future__ import annotations

import streamlit as st

from minicpm_core.errors import MiniCPMError, QueueFull
from minicpm_core.params import GenerationParams
from minicpm_core.store import ConversationStore, Message

from ui import markdown_safe, state
from ui.captions import reasoning_label, reply_caption
from ui.history import prompt_messages
from ui.i18n import t
from ui.notices import error_text
from ui.streaming import ReplyRecorder, StreamingReply, ThinkingBlock, queue_notice, reply_meta


def show_message(message: Message) -> None:
    """One stored message in its bubble: a reply's reasoning (collapsed) above it, its caption below."""
    with st.chat_message(message.role):
        if message.role == "assistant" and message.meta.get("reasoning"):
            with st.status(reasoning_label(message.meta), state="complete", expanded=False):
                st.markdown(markdown_safe.safe_markdown(message.meta["reasoning"]))
            if message.meta.get("ended_in_reasoning"):
                st.warning(t("cut_in_thinking"), icon=":material/content_cut:")
        st.markdown(markdown_safe.safe_markdown(message.content) or " ")
        caption = reply_caption(message.meta) if message.role == "assistant" else ""
        if caption:
            st.caption(caption)


def answer_here(store: ConversationStore, backend, conv_id: str, params: GenerationParams,
                system_prompt: str = "", enable_thinking: bool | None = None) -> bool:
    """Stream a reply to the conversation's last question into an assistant bubble on this page.

    Returns True when the reply finished (the caller reruns to redraw from the store). Errors are
    shown as st.error; the question stays stored either way.
    """
    conversation = store.get(conv_id)
    try:
        # enable_thinking only where it was asked for: a backend without thinking need not take it
        extra = {} if enable_thinking is None else {"enable_thinking": enable_thinking}
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
