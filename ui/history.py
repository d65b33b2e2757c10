"""A conversation as the model reads it: the shown messages, with the sidebar's system prompt first."""

from __future__ import annotations

from minicpm_core.prompt import MAX_MESSAGES
from minicpm_core.store import Conversation, Message


def prompt_messages(conversation: Conversation | None, system_prompt: str = "",
                    up_to: str | None = None) -> list[dict[str, str]]:
    """The model's input: the sidebar's system prompt, then the shown messages that have text (up to the
    message `up_to`, when given: the question a new version of the reply answers). A reply's reasoning
    (in its meta) is never sent back: the history holds only the answers, as the thinking templates
    themselves do for earlier turns. At most MAX_MESSAGES: the oldest would not fit the context anyway."""
    messages = [{"role": "system", "content": system_prompt}] if system_prompt.strip() else []
    shown = [] if conversation is None else conversation.up_to(up_to) if up_to else conversation.messages
    history = [message for message in shown if message.content.strip()]  # an empty stopped reply is not
    room = MAX_MESSAGES - len(messages)  # the backend cuts old turns to fit max_length in any case
    return messages + [{"role": message.role, "content": message.content} for message in history[-room:]]


def last_question(conversation: Conversation | None) -> Message | None:
    for message in reversed(conversation.messages if conversation else ()):
        if message.role == "user":
            return message
    return None
