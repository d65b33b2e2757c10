"""What the chat page's buttons do to the stored conversation: ask a question, and on the last turn
regenerate the reply or edit the question (each adds a version: nothing is replaced), switch between
versions, clear. Plain functions over the store; the button
callbacks go through `run_action`, which turns a MiniCPMError (e.g. deleted in another tab) into a
notice."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st

from minicpm_core.errors import MiniCPMError
from minicpm_core.store import ConversationStore, check_message
from ui import state
from ui.history import last_question
from ui.i18n import t
from ui.notices import error_text


def ask(store: ConversationStore, conv_id: str | None, question: str) -> tuple[str, str]:
    """Store the question (creating the conversation if needed) before anything is generated.
    Returns the conversation's id and the question's. A question the store refuses creates nothing."""
    check_message(question)
    if conv_id is None or not store.exists(conv_id):
        conv_id = store.create().id
    return conv_id, store.append(conv_id, "user", question).id


def await_reply(conv_id: str, question_id: str) -> None:
    """Have this run (or the next) answer that question with a new reply."""
    st.session_state[state.PENDING_REPLY] = (conv_id, question_id)


def awaited_question(conv_id: str | None) -> str | None:
    """The id of the question in `conv_id` that awaits a reply on this run, if any (kept until taken)."""
    pending = st.session_state.get(state.PENDING_REPLY)
    return pending[1] if pending and pending[0] == conv_id else None


def take_awaited_question(conv_id: str | None) -> str | None:
    """`awaited_question`, once: the run that answers it takes it."""
    question_id = awaited_question(conv_id)
    if question_id is not None:
        st.session_state.pop(state.PENDING_REPLY, None)
    return question_id


def regenerate(store: ConversationStore, conv_id: str) -> None:
    """Ask for a new version of the last reply; the old versions stay, one ‹ › away."""
    question = last_question(store.get(conv_id))
    if question is not None:
        await_reply(conv_id, question.id)


def edit_question(store: ConversationStore, conv_id: str, text_key: str) -> None:
    """The edited text (from widget `text_key`) becomes a new version of the last question, and is answered:
    a new branch. The old question and its replies stay, one ‹ › away."""
    text = st.session_state.get(text_key, "")
    if not text.strip():
        state.flash("warning", t("edit_empty"))
        return
    question = last_question(store.get(conv_id))
    if question is None:
        return
    await_reply(conv_id, store.add_version(conv_id, question.id, text).id)


def show_version(store: ConversationStore, conv_id: str, message_id: str) -> None:
    """‹ or ›: show that version of a message, and the branch below it as last shown."""
    store.select(conv_id, message_id)


def clear(store: ConversationStore, conv_id: str) -> None:
    """Remove every message of every branch; the conversation stays (it takes its next question's title)."""
    store.clear_messages(conv_id)
    store.rename(conv_id, "")
    st.session_state.pop(state.PENDING_REPLY, None)


def run_action(action: Callable[..., None], *args: Any) -> None:
    """Button callback wrapper: a MiniCPMError (e.g. deleted in another tab) becomes a notice."""
    try:
        action(*args)
    except MiniCPMError as exc:
        state.flash("error", error_text(exc))
