"""MiniCPM-2B prompting: messages to token ids, the history budget, and the stop markers.

Pure functions over a tokenizer; no model, no threads. The format is exactly what the model's own
`chat()` builds: the checkpoint's chat template rendered to text, then tokenized with BOS once:

    [system text]<用户>{question}<AI>{answer}<用户>{question}<AI>

The template tags only user turns; any other role (system, assistant) is appended raw, stripped and
untagged. So a system prompt is plain text placed before the first `<用户>`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .errors import ContextOverflow, InvalidRequest

ROLES = ("system", "user", "assistant")
# The upstream template, used when a tokenizer_config.json lost its chat_template.
MINICPM_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'user' %}"
    "{{'<用户>' + message['content'].strip() + '<AI>'}}{% else %}{{message['content'].strip()}}"
    "{% endif %}{% endfor %}"
)
# Not special tokens: each is several pieces, so stopping happens on text.
STOP_MARKERS = ("<用户>", "<AI>")
MAX_MESSAGES = 1000
MIN_REPLY_ROOM = 128  # tokens kept free for the reply when the caller sets no max_new_tokens


@dataclass(frozen=True)
class Prompt:
    ids: list[int]
    turns_dropped: int


def validate_messages(messages: Any) -> list[dict[str, str]]:
    """Check the OpenAI-shaped message list; return clean {"role", "content"} dicts."""
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("messages must be a non-empty list of {\"role\", \"content\"} objects.", "messages")
    if len(messages) > MAX_MESSAGES:
        raise InvalidRequest(f"messages has {len(messages)} entries; at most {MAX_MESSAGES} are accepted.", "messages")
    clean = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise InvalidRequest(f"messages[{i}] must be an object with role and content.", f"messages[{i}]")
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise InvalidRequest(f"messages[{i}].role is {role!r}; it must be one of {', '.join(ROLES)}.",
                                 f"messages[{i}].role")
        if not isinstance(content, str):
            raise InvalidRequest(f"messages[{i}].content must be a string.", f"messages[{i}].content")
        clean.append({"role": role, "content": content})
    if clean[-1]["role"] != "user":
        raise InvalidRequest("The last message must be the user's question (role 'user').", "messages")
    if not clean[-1]["content"].strip():
        raise InvalidRequest("The question is empty: type something to ask.", "messages")
    return clean


def render(messages: Sequence[dict[str, str]], tokenizer) -> str:
    template = None if getattr(tokenizer, "chat_template", None) else MINICPM_CHAT_TEMPLATE
    return tokenizer.apply_chat_template(list(messages), tokenize=False, chat_template=template)


def encode(messages: Sequence[dict[str, str]], tokenizer) -> list[int]:
    """Token ids exactly as the model's chat() feeds them: the rendered text, BOS added once."""
    return list(tokenizer(render(messages, tokenizer), add_special_tokens=True)["input_ids"])


def build_prompt(messages: Sequence[dict[str, str]], tokenizer, budget: int,
                 reply_room: int = MIN_REPLY_ROOM) -> Prompt:
    """Encode the conversation, dropping the oldest whole turns until `reply_room` tokens are free.

    A turn is a user message and the replies after it. System messages are always kept, and so is
    the newest question; if that alone leaves no room for a single reply token, ContextOverflow.
    """
    messages = validate_messages(list(messages))
    system = [m for m in messages if m["role"] == "system"]
    turns = split_turns([m for m in messages if m["role"] != "system"])
    reply_room = min(reply_room, budget // 2)
    for dropped in range(len(turns)):
        kept = system + [m for turn in turns[dropped:] for m in turn]
        ids = encode(kept, tokenizer)
        if len(ids) + reply_room <= budget:
            return Prompt(ids, dropped)
    if len(ids) < budget:
        return Prompt(ids, len(turns) - 1)  # only the newest question is left: give it what remains
    raise ContextOverflow(
        f"The question is {len(ids)} tokens long but the limit is {budget} tokens (max_length / the "
        "model's context) for question and reply together. Shorten it, or split it into parts.",
        "messages", code="context_overflow", tokens=len(ids), limit=budget)


def split_turns(messages: Sequence[dict[str, str]]) -> list[list[dict[str, str]]]:
    turns: list[list[dict[str, str]]] = []
    for message in messages:
        if message["role"] == "user" or not turns:
            turns.append([])
        turns[-1].append(message)
    return turns


def find_stop(text: str) -> int | None:
    """Index where the first stop marker starts, or None."""
    hits = [i for i in (text.find(m) for m in STOP_MARKERS) if i >= 0]
    return min(hits) if hits else None


def unsafe_tail(text: str) -> int:
    """Length of the longest suffix of `text` that could be the start of a stop marker.

    Streaming must hold that much back: `<用` may become `<用户>` with the next token.
    """
    longest = 0
    for marker in STOP_MARKERS:
        for size in range(1, len(marker)):
            if size > longest and text.endswith(marker[:size]):
                longest = size
    return longest
