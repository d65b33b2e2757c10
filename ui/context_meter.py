"""The context meter above a conversation: how many tokens it takes of the model's budget.

Measuring a conversation without a reply's numbers (an imported one) tokenizes all of it, so the
result is kept (for every session) until the conversation, the settings or the model change: a rerun
that changes none of them (a sidebar click) costs nothing here, however long the conversation.
"""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from minicpm_core.errors import MiniCPMError
from minicpm_core.params import GenerationParams
from minicpm_core.store import Conversation
from ui.history import prompt_messages

MEASURED_KEPT = 256  # conversations whose last measurement is remembered


@dataclass(frozen=True)
class ContextUsage:
    tokens: int
    budget: int
    turns_dropped: int

    @property
    def fraction(self) -> float:
        return min(1.0, self.tokens / self.budget) if self.budget else 0.0


def remembered_context_usage(backend, conversation: Conversation | None, params: GenerationParams,
                             system_prompt: str = "") -> ContextUsage | None:
    """`context_usage`, measured again only when something it depends on changed (any session's
    measurement serves: the key holds everything the result depends on)."""
    if conversation is None or not backend.ready:
        return None
    last = conversation.messages[-1] if conversation.messages else None
    return _measured(backend, conversation, conversation.id, conversation.updated_at, last.id if last else None,
                     len(conversation.messages), backend.model_name, backend.budget(params), params.model_dump_json(),
                     system_prompt)


@st.cache_data(max_entries=MEASURED_KEPT, show_spinner=False)
def _measured(_backend, _conversation: Conversation, conv_id: str, updated_at: str, last_id: str | None,
              shown: int, model: str | None, budget: int, params_json: str, system_prompt: str) -> ContextUsage | None:
    return context_usage(_backend, _conversation, GenerationParams.model_validate_json(params_json), system_prompt)


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
