"""What the chat page's buttons do to the stored conversation: ask a question, and on the last turn
regenerate the reply, edit the question, clear. Plain functions over the store; the button
callbacks go through `run_action`, which turns a MiniCPMError (e.g. deleted in another tab) into a
notice."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st

from minicpm_core.errors import MiniCPMError
from minicpm_core.store import ConversationStore

from ui import state
from ui.history import last_question
from ui.i18n import t
from ui.notices import error_text


def ask(store: ConversationStore, conv_id: str | None, question: str) -> str:
    """Store the question (creating the conversation if needed) before anything is generated."""
    if conv_id is None or store.get(conv_id) is None:
        conv_id = store.create().id
    store.append(conv_id, "user", question)
    return conv_id


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
