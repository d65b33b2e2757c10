"""The chat page's conversation: its messages drawn from the store, and a reply streamed into a new
bubble and into the store at once (`answer_here`).

A long conversation draws its newest state.RECENT_MESSAGES first, with "show earlier" above them, so a rerun
costs the same however long the conversation is. A message with several versions (regenerated replies,
edited questions) has ‹ n / m › under it to switch between them.

The question is stored before generation starts (ui.actions.ask); the reply is saved while it
streams and finalised however the stream ends (ui.streaming.ReplyRecorder), so nothing the user
typed or saw is lost.
"""

from __future__ import annotations

import streamlit as st

from minicpm_core.errors import MiniCPMError, QueueFull
from minicpm_core.params import GenerationParams
from minicpm_core.prompt import ChatOptions
from minicpm_core.store import Conversation, ConversationStore, Message
from ui import actions, markdown_safe, search, state
from ui.captions import reasoning_label, reply_caption
from ui.history import prompt_messages
from ui.i18n import t
from ui.notices import error_text
from ui.streaming import ReplyRecorder, StreamingReply, ThinkingBlock, queue_notice, reply_meta


def show_conversation(store: ConversationStore, conversation: Conversation, messages: list[Message]) -> None:
    """`messages` (the shown path, or part of it), newest state.RECENT_MESSAGES first: "show earlier" adds
    more."""
    messages = [message for message in messages if message.role != "system"]
    count = state.shown_count(conversation.id)
    hidden = max(0, len(messages) - count)
    if hidden:
        st.button(t("show_earlier", n=hidden), key="show_earlier", icon=":material/expand_less:", type="tertiary",
                  on_click=state.show_at_least, args=(conversation.id, count + state.RECENT_MESSAGES))
    for message in messages[hidden:]:
        show_message(message, store, conversation)


def show_message(message: Message, store: ConversationStore, conversation: Conversation) -> None:
    """One stored message in its bubble: a reply's reasoning (collapsed) above it, its caption below,
    and ‹ n / m › when it has other versions."""
    with st.chat_message(message.role):
        search.mark_target(message.id)  # a search result opened here: scroll to this message (ui/search.py)
        if message.role == "assistant" and message.meta.get("reasoning"):
            with st.status(reasoning_label(message.meta), state="complete", expanded=False):
                st.markdown(markdown_safe.safe_markdown(message.meta["reasoning"]))
            if message.meta.get("ended_in_reasoning"):
                st.warning(t("cut_in_thinking"), icon=":material/content_cut:")
        st.markdown(markdown_safe.safe_markdown(message.content) or " ")
        caption = reply_caption(message.meta) if message.role == "assistant" else ""
        if caption:
            st.caption(caption)
        version_switch(store, conversation, message)


def version_switch(store: ConversationStore, conversation: Conversation, message: Message) -> None:
    """‹ n / m ›: the buttons show the version before or after this one (and the branch below it)."""
    n, of = conversation.version(message.id)
    if of < 2:
        return
    versions = conversation.versions[message.id]
    with st.container(horizontal=True, vertical_alignment="center", gap="small", key=f"versions_{message.id}"):
        _version_button(store, conversation.id, versions, n - 2, "‹", f"older_{message.id}", "version_older")
        st.text(t("version_of", n=n, of=of))  # not a caption: a bubble's caption is its reply's numbers
        _version_button(store, conversation.id, versions, n, "›", f"newer_{message.id}", "version_newer")


def _version_button(store: ConversationStore, conv_id: str, versions: tuple[str, ...], index: int, label: str,
                    key: str, help_key: str) -> None:
    """A button that shows versions[index]; disabled past either end."""
    exists = 0 <= index < len(versions)
    st.button(label, key=key, help=t(help_key), type="tertiary", disabled=not exists, on_click=actions.run_action,
              args=(actions.show_version, store, conv_id, versions[index if exists else 0]))


def answer_here(store: ConversationStore, backend, conv_id: str, params: GenerationParams,
                system_prompt: str = "", enable_thinking: bool | None = None,
                question_id: str | None = None) -> bool:
    """Stream a reply to the question `question_id` (default: the end of the shown path) into an assistant
    bubble on this page. The model reads the shown path up to that question; the reply is stored as a new
    version among that question's replies, so earlier versions stay.

    Returns True when the reply finished (the caller reruns to redraw from the store). Errors are
    shown as st.error; the question stays stored either way.
    """
    conversation = store.get(conv_id)
    try:
        # enable_thinking only where it was asked for: a backend without thinking need not take it
        extra = {} if enable_thinking is None else {"options": ChatOptions(enable_thinking=enable_thinking)}
        generation = backend.submit(prompt_messages(conversation, system_prompt, question_id), params, **extra)
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
        message = store.append(conv_id, "assistant", "", reply_meta(None, params, model=model), after=question_id)
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
