"""A conversation as the model reads it: the shown messages, with the sidebar's system prompt first."""

from __future__ import annotations

from minicpm_core.store import Conversation, Message


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
