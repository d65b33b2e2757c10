"""Prompting: messages to token ids, the history budget, and finding stop markers in text.

Pure functions over a tokenizer; no model, no threads. The format is exactly what the model's own
chat code builds: the checkpoint's chat template rendered to text, then tokenized with one BOS (the
tokenizer's on MiniCPM-2B, as its `chat()`; the template's own on MiniCPM5, as `apply_chat_template`).
The model family (minicpm_core.families) supplies what differs: the template to use when a checkpoint
ships none, the stop markers, how the text becomes ids, whether the template takes `enable_thinking`,
and whether it takes tools. What a request asks of the template travels as one `ChatOptions`.
For MiniCPM-2B, the default family, the template tags only user turns; any other role (system,
assistant) is appended raw, stripped and untagged, so a system prompt is plain text placed before the
first user tag.
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import ContextOverflow, InvalidRequest, ModelNotFound
from .families import DEFAULT_FAMILY, ModelFamily
from .tools import call_for_template, check_tools, chosen_tools

ROLES = ("system", "user", "assistant")
TOOL_ROLE = "tool"  # a tool's result; only in a conversation with tools, on a family with a tool format
MAX_MESSAGES = 1000  # messages in one request, and in one stored conversation (store.py)
MIN_REPLY_ROOM = 128  # tokens kept free for the reply when the caller sets no max_new_tokens
_CHECK_CHUNK = 1 << 20  # characters encoded at a time when looking for lone surrogates


@dataclass(frozen=True)
class ChatOptions:
    """What a request asks of the chat template besides the messages: one value, carried unchanged from
    the page or the API to `render`, so nothing in between needs to know its fields.

    `enable_thinking`: the switch of a family that thinks; None leaves it to the template. `tools` and
    `tool_choice`: OpenAI's, checked on construction (minicpm_core.tools); `offered_tools` is what the
    template shows the model.
    """

    enable_thinking: bool | None = None
    tools: tuple[Any, ...] | None = None
    tool_choice: Any = None

    def __post_init__(self) -> None:
        if self.tools is not None:
            object.__setattr__(self, "tools", tuple(check_tools(list(self.tools))))
        chosen_tools(list(self.tools) if self.tools else None, self.tool_choice)  # refuse a bad choice now

    @property
    def offered_tools(self) -> list[dict[str, Any]] | None:
        return chosen_tools(list(self.tools) if self.tools else None, self.tool_choice)

    @property
    def uses_tools(self) -> bool:
        """Whether the request brings tools at all (a family without a tool format refuses it)."""
        return bool(self.tools) or self.tool_choice not in (None, "none", "auto")

    def template_kwargs(self, family: ModelFamily) -> dict[str, Any]:
        """The template's variables for these options on `family`: only those the request set."""
        kwargs: dict[str, Any] = {}
        if self.enable_thinking is not None and family.thinking:
            kwargs["enable_thinking"] = bool(self.enable_thinking)
        if self.offered_tools:
            kwargs["tools"] = self.offered_tools
        return kwargs


NO_OPTIONS = ChatOptions()


@dataclass(frozen=True)
class Prompt:
    ids: list[int]
    turns_dropped: int


def check_text(text: str, where: str) -> str:
    """Refuse a str that is not valid Unicode text: one holding a lone surrogate (JSON's "\\ud800")."""
    position = _surrogate_at(text)
    if position is not None:
        raise InvalidRequest(
            f"{where} is not valid Unicode text: it holds a lone surrogate ({ascii(text[position])}) at character "
            f"{position}. Send UTF-8 text; a character escaped in JSON as \\uD8xx needs its second half.",
            where, code="invalid_text", field=where, position=position)
    return text


def _surrogate_at(text: str) -> int | None:
    if text.isascii():  # the common case, checked at memory speed
        return None
    for start in range(0, len(text), _CHECK_CHUNK):  # encoding finds one fastest; chunks bound the copy
        try:
            text[start:start + _CHECK_CHUNK].encode("utf-8")
        except UnicodeEncodeError as exc:
            return start + exc.start
    return None


def validate_messages(messages: Any, tools: bool = False) -> list[dict[str, Any]]:
    """Check the OpenAI-shaped message list; return clean {"role", "content"} dicts.

    With `tools` (the request offers some), an assistant message may carry `tool_calls` (its content
    may then be empty), `tool` messages carry results, and the conversation may end on one. An
    assistant's `reasoning_content`, when sent, is kept for the template (MiniCPM5-2B's renders it).
    """
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("messages must be a non-empty list of {\"role\", \"content\"} objects.", "messages")
    if len(messages) > MAX_MESSAGES:
        raise InvalidRequest(f"messages has {len(messages)} entries; at most {MAX_MESSAGES} are accepted.", "messages")
    roles = ROLES + ((TOOL_ROLE,) if tools else ())
    clean = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise InvalidRequest(f"messages[{i}] must be an object with role and content.", f"messages[{i}]")
        role, content = message.get("role"), message.get("content")
        if role not in roles:
            hint = " (tool results need the tools in the request)" if role == TOOL_ROLE else ""
            raise InvalidRequest(f"messages[{i}].role is {role!r}; it must be one of {', '.join(roles)}{hint}.",
                                 f"messages[{i}].role")
        calls = message.get("tool_calls") if role == "assistant" else None
        if calls and not tools:
            raise InvalidRequest(f"messages[{i}].tool_calls needs the tools in the request.",
                                 f"messages[{i}].tool_calls")
        if content is None and calls:
            content = ""
        if not isinstance(content, str):
            raise InvalidRequest(f"messages[{i}].content must be a string.", f"messages[{i}].content")
        check_text(content, f"messages[{i}].content")
        item: dict[str, Any] = {"role": role, "content": content}
        if calls:
            if not isinstance(calls, list):
                raise InvalidRequest(f"messages[{i}].tool_calls must be a list.", f"messages[{i}].tool_calls")
            item["tool_calls"] = [call_for_template(c, f"messages[{i}].tool_calls[{j}]") for j, c in enumerate(calls)]
        reasoning = message.get("reasoning_content") if role == "assistant" else None
        if isinstance(reasoning, str) and reasoning:
            item["reasoning_content"] = check_text(reasoning, f"messages[{i}].reasoning_content")
        clean.append(item)
    last = clean[-1]["role"]
    if last != "user" and not (tools and last == TOOL_ROLE):
        raise InvalidRequest("The last message must be the user's question (role 'user')"
                             + (" or a tool's result (role 'tool')." if tools else "."), "messages")
    if last == "user" and not clean[-1]["content"].strip():
        raise InvalidRequest("The question is empty: type something to ask.", "messages")
    return clean


def render(messages: Sequence[dict[str, Any]], tokenizer, family: ModelFamily = DEFAULT_FAMILY,
           options: ChatOptions = NO_OPTIONS) -> str:
    """The conversation as text, by the checkpoint's own chat template, else the family's.

    The text ends with the template's generation prompt (ChatML's `<|im_start|>assistant\n`; MiniCPM-2B's
    template has none and ignores the flag). The `options` reach the template as its variables
    (`ChatOptions.template_kwargs`): enable_thinking only on a family that thinks and only when
    given (None leaves the choice to the template's own default), the tools when offered.
    """
    template = None  # None: apply_chat_template uses the tokenizer's own
    if not getattr(tokenizer, "chat_template", None):
        template = family.fallback_chat_template
        if template is None:
            raise ModelNotFound(f"The checkpoint ships no chat template, and {family.label} has no standard "
                                "one: its tokenizer_config.json lacks `chat_template` (download it again).")
    if options.uses_tools and family.tool_format is None:
        raise InvalidRequest(f"{family.label} was not trained for tool calls: send the request without tools.",
                             "tools", code="tools_not_supported")
    return tokenizer.apply_chat_template(list(messages), tokenize=False, chat_template=template,
                                         add_generation_prompt=True, **options.template_kwargs(family))


def encode(messages: Sequence[dict[str, Any]], tokenizer, family: ModelFamily = DEFAULT_FAMILY,
           options: ChatOptions = NO_OPTIONS) -> list[int]:
    """Token ids exactly as the model's own chat code feeds them: the rendered text with one BOS, the
    template's or the tokenizer's, as the family says (`ModelFamily.encode_rendered`)."""
    text = render(messages, tokenizer, family, options)
    return family.encode_rendered(text, tokenizer)


def build_prompt(messages: Sequence[dict[str, str]], tokenizer, budget: int,
                 reply_room: int = MIN_REPLY_ROOM, cancelled: Callable[[], bool] | None = None,
                 family: ModelFamily = DEFAULT_FAMILY, options: ChatOptions = NO_OPTIONS) -> Prompt:
    """Encode the conversation, dropping the oldest whole turns until `reply_room` tokens are free.

    A turn is a user message and the replies after it. System messages are always kept (in front),
    and so is the newest question; if that alone leaves no room for a single reply token,
    ContextOverflow. `cancelled` is polled between tokenizer calls: once it returns True the work
    stops with InvalidRequest (code "cancelled"), as nobody waits for the answer. `family` is the
    loaded model's (`LoadedModel.family`): its template is used when the tokenizer has none.
    `options` go to the template (see `render`).

    The work is bounded by the budget, not by the history: each turn is tokenized once, newest
    first, until the budget is spent (`_Cut.estimate`); text that cannot fit by its length alone
    is never tokenized (`_Cut.lower_bound`). The ids are always `encode()` of the kept messages,
    as the model's chat() builds them; `_Cut.settle` checks the estimated cut with that encoding.
    """
    messages = validate_messages(list(messages), tools=options.uses_tools)
    if options.uses_tools and family.tool_format is None:
        render(messages[-1:], tokenizer, family, options)  # refused there, with the reason
    system = [m for m in messages if m["role"] == "system"]
    turns = split_turns([m for m in messages if m["role"] != "system"])
    reply_room = min(reply_room, budget // 2)
    cut = _Cut(tokenizer, system, turns, budget - reply_room, cancelled, family, options)
    newest = len(turns) - 1
    at_least = cut.lower_bound(newest)
    if at_least >= budget:  # refused by its length, before a 7 MB question reaches the tokenizer
        raise _overflow(at_least, budget, exact=False)
    prompt = cut.settle(cut.estimate())
    if prompt is not None:
        return prompt
    ids = cut.exact(newest)
    if len(ids) < budget:
        return Prompt(ids, newest)  # only the newest question is left: give it what remains
    raise _overflow(len(ids), budget, exact=True)


def _overflow(tokens: int, budget: int, exact: bool) -> ContextOverflow:
    size = f"{tokens}" if exact else f"at least {tokens}"
    return ContextOverflow(
        f"The question is {size} tokens long but the limit is {budget} tokens (max_length / the "
        "model's context) for question and reply together. Shorten it, or split it into parts.",
        "messages", code="context_overflow" if exact else "context_overflow_at_least",
        tokens=tokens, limit=budget)


class _Cut:
    """Where to cut a conversation: `kept(d)` is the system messages plus the turns from `d` on."""

    def __init__(self, tokenizer, system, turns, limit: int, cancelled: Callable[[], bool] | None,
                 family: ModelFamily = DEFAULT_FAMILY, options: ChatOptions = NO_OPTIONS):
        self.tokenizer, self.system, self.turns, self.limit = tokenizer, system, turns, limit
        self.family, self.options = family, options
        self.cancelled = cancelled or (lambda: False)
        self.chars_per_token = max_chars_per_token(tokenizer)

    def kept(self, dropped: int) -> list[dict[str, str]]:
        return self.system + [m for turn in self.turns[dropped:] for m in turn]

    def render(self, messages: list[dict[str, str]]) -> str:
        return render(messages, self.tokenizer, self.family, self.options)

    def lower_bound(self, dropped: int) -> int:
        """Fewest tokens `encode(kept(dropped))` can have, from its length alone (0: no bound known)."""
        if self.chars_per_token is None:
            return 0
        bos = 0 if self.family.template_writes_bos else 1  # a BOS the tokenizer adds is not in the text
        return bos + -(-len(self.render(self.kept(dropped))) // self.chars_per_token)  # ceil

    def count(self, messages: list[dict[str, str]]) -> int:
        """Tokens of one piece of the prompt tokenized alone (an estimate of its share of the whole)."""
        self.check()
        text = self.render(messages)
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def exact(self, dropped: int) -> list[int]:
        self.check()
        return encode(self.kept(dropped), self.tokenizer, self.family, self.options)

    def fits(self, dropped: int) -> list[int] | None:
        """The exact ids of kept(dropped) if they leave the reply its room, else None."""
        if self.lower_bound(dropped) > self.limit:
            return None  # provably too long: not worth tokenizing
        ids = self.exact(dropped)
        return ids if len(ids) <= self.limit else None

    def estimate(self) -> int:
        """The fewest turns to drop by per-turn counts: each turn tokenized once, newest first."""
        used = 1 + (self.count(self.system) if self.system else 0)  # BOS and the system text
        for dropped in range(len(self.turns) - 1, -1, -1):
            if self.chars_per_token is not None and used + len(
                    self.render(self.turns[dropped])) // self.chars_per_token > self.limit:
                return dropped + 1  # this turn cannot fit by its length: no need to tokenize it
            used += self.count(self.turns[dropped])
            if used > self.limit:
                return dropped + 1
        return 0

    def settle(self, dropped: int) -> Prompt | None:
        """The exact cut next to the estimate: the fewest dropped turns whose encoding fits.

        Pieces tokenized alone can differ from the whole by a token at each join (BPE may merge
        across it), so the estimate is checked with exact encodings and moved until it holds.
        Fitting is monotone in `dropped` (dropping a turn removes its tags, 6 pieces), so a cut
        that fits while one turn fewer does not is the same cut the scan from 0 finds.
        """
        newest = len(self.turns) - 1
        dropped = min(dropped, newest)
        ids = self.fits(dropped)
        while ids is None and dropped < newest:
            dropped += 1
            ids = self.fits(dropped)
        if ids is None:
            return None
        while dropped > 0 and (more := self.fits(dropped - 1)) is not None:
            dropped, ids = dropped - 1, more
        return Prompt(ids, dropped)

    def check(self) -> None:
        if self.cancelled():
            raise InvalidRequest("The request was cancelled while its prompt was being prepared.",
                                 code="cancelled")


_CHARS_PER_TOKEN: weakref.WeakKeyDictionary[Any, int | None] = weakref.WeakKeyDictionary()
# Normalizers and pre-tokenizers that never make text shorter: under them a token covers at most
# as many characters as its vocabulary piece is long. MiniCPM's (sentencepiece BPE) uses these.
_KEEPS_LENGTH = {"Prepend", "Replace", "Metaspace", "ByteLevel", "NFD", "NFKD", "Lowercase", "Sequence"}


def max_chars_per_token(tokenizer) -> int | None:
    """Most characters of text one token can stand for (the longest vocabulary piece), or None.

    So a text of n characters is at least ceil(n / this) tokens. Computed once per tokenizer.
    None where the tokenizer could shorten the text first (a stripping or composing normalizer)
    or fuse a run of unknown characters into one token: no bound is derived then.
    """
    try:
        return _CHARS_PER_TOKEN[tokenizer]
    except (KeyError, TypeError):
        pass
    bound = _derive_chars_per_token(tokenizer)
    try:
        _CHARS_PER_TOKEN[tokenizer] = bound
    except TypeError:  # not weak-referenceable: recomputed next time
        pass
    return bound


def _derive_chars_per_token(tokenizer) -> int | None:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    spec = json.loads(backend.to_str())
    model = spec.get("model") or {}
    if model.get("fuse_unk") and not model.get("byte_fallback"):
        return None
    for part in ("normalizer", "pre_tokenizer"):
        if not _keeps_length(spec.get(part)):
            return None
    return max(len(piece) for piece in tokenizer.get_vocab())


def _keeps_length(component: dict | None) -> bool:
    if component is None:
        return True
    kind = component.get("type")
    if kind == "Sequence":
        return all(_keeps_length(c) for c in component.get("normalizers", component.get("pretokenizers", [])))
    if kind == "Replace":  # one character replaced by at least one keeps the length
        pattern = component.get("pattern", {})
        return len(pattern.get("String", "xx")) == 1 and len(component.get("content", "")) >= 1
    return kind in _KEEPS_LENGTH


def split_turns(messages: Sequence[dict[str, str]]) -> list[list[dict[str, str]]]:
    turns: list[list[dict[str, str]]] = []
    for message in messages:
        if message["role"] == "user" or not turns:
            turns.append([])
        turns[-1].append(message)
    return turns


def find_stop(text: str, markers: Sequence[str]) -> int | None:
    """Index where the first of the stop `markers` (the family's `stop_markers`) starts, or None."""
    hits = [i for i in (text.find(m) for m in markers) if i >= 0]
    return min(hits) if hits else None


def unsafe_tail(text: str, markers: Sequence[str]) -> int:
    """Length of the longest suffix of `text` that could be the start of one of the stop `markers`.

    Streaming must hold that much back: the first half of a marker may become all of it with the
    next token.
    """
    longest = 0
    for marker in markers:
        for size in range(1, len(marker)):
            if size > longest and text.endswith(marker[:size]):
                longest = size
    return longest
