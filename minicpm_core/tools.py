"""Tool calls in MiniCPM5's format: the request's tools checked, the model's calls found and parsed.

The model calls a tool by writing, after any text of its own,

    <function name="get_weather"><param name="city">Paris</param></function>

one such block per call. A value holding `<`, `&` or a newline is wrapped in `<![CDATA[...]]>`.
vLLM and SGLang parse this format under the name `minicpm5`; the checkpoint's own chat template
writes the tools (JSON inside `<tools></tools>`) and renders earlier calls and `tool` results.
This module is the one definition of the format: `format_call` writes a call (the test kit trains
the demo model on it), `ToolCallParser` reads calls back from a reply as it streams.

`ToolCallParser` takes the answer's text deltas in any chunking (down to single characters, a tag
split across deltas) and returns events: text that is the answer's `content`, or a complete
`ToolCall`. The tags never appear in the content, not even partly: text that may still become
`<function` is held back until it is decided. A call that is not well formed (bad markup, an
unknown function, a parameter given twice) is given back as content, exactly as the model wrote
it, never dropped and never an error. The events concatenate to the same result whatever the
chunking, and `parse_tool_calls` of the whole text is that same parser fed once.

It knows nothing of reasoning (the `<think>` block is split off before, by minicpm_core.reasoning),
of stop strings or of HTTP.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import InvalidRequest

FORMAT = "minicpm5"  # the name vLLM and SGLang give this format (`--tool-call-parser minicpm5`)
CALL_OPEN = "<function"
CALL_CLOSE = "</function>"
CALL_TAGS = ("<function", "</function>", "<param", "</param>")  # what the model writes; never shown
CDATA_OPEN, CDATA_CLOSE = "<![CDATA[", "]]>"
NEEDS_CDATA = ("<", "&", "\n")  # a value holding one of these is wrapped in CDATA
TOOL_CHOICES = ("auto", "none")  # besides a named function: {"type": "function", "function": {"name": ...}}
MAX_TOOLS = 128  # OpenAI's limit

_CALL = re.compile(r'<function name="([^"<>]+)">(.*)</function>\Z', re.S)
_PARAM = re.compile(r'\s*<param name="([^"<>]+)">(<!\[CDATA\[.*?\]\]>|[^<]*)</param>', re.S)


@dataclass(frozen=True)
class ToolCall:
    """One call the model made: the function's name and its arguments as a JSON object."""

    name: str
    arguments: dict[str, Any]
    id: str = field(default_factory=lambda: f"call_{uuid.uuid4().hex[:24]}")

    @property
    def arguments_json(self) -> str:
        return json.dumps(self.arguments, ensure_ascii=False)


# --- the request's side -------------------------------------------------------------------------

def check_tools(tools: Any) -> list[dict[str, Any]]:
    """OpenAI's `tools` list, checked: each `{"type": "function", "function": {"name", ...}}`."""
    if not isinstance(tools, list) or not tools:
        raise InvalidRequest("tools must be a non-empty list of {\"type\": \"function\", \"function\": {...}}.",
                             "tools")
    if len(tools) > MAX_TOOLS:
        raise InvalidRequest(f"tools has {len(tools)} entries; at most {MAX_TOOLS} are accepted.", "tools")
    names = set()
    for i, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(function, dict):
            raise InvalidRequest(f"tools[{i}] must be {{\"type\": \"function\", \"function\": {{\"name\": ...}}}}.",
                                 f"tools[{i}]")
        name = function.get("name")
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name):
            raise InvalidRequest(f"tools[{i}].function.name must be 1 to 64 letters, digits, _, . or -.",
                                 f"tools[{i}].function.name")
        if name in names:
            raise InvalidRequest(f"tools[{i}].function.name {name!r} is given twice.", f"tools[{i}].function.name")
        names.add(name)
        if not isinstance(function.get("parameters", {}), dict):
            raise InvalidRequest(f"tools[{i}].function.parameters must be a JSON Schema object.",
                                 f"tools[{i}].function.parameters")
    return tools


def chosen_tools(tools: list[dict[str, Any]] | None, tool_choice: Any) -> list[dict[str, Any]] | None:
    """The tools the template shows the model, by OpenAI's `tool_choice`: all of them ("auto", or
    unset), none ("none": the reply is plain text), or only the named one. The model is not forced
    to call it (there is no constrained decoding here); calls to any other function stay text."""
    if tool_choice is None or tool_choice == "auto":
        return tools
    if tool_choice == "none":
        return None
    function = tool_choice.get("function") if isinstance(tool_choice, dict) else None
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(tool_choice, dict) or tool_choice.get("type") != "function" or not isinstance(name, str):
        raise InvalidRequest(f"tool_choice must be \"auto\", \"none\" or {{\"type\": \"function\", \"function\": "
                             f"{{\"name\": ...}}}}; got {json.dumps(tool_choice)[:60]}. (\"required\" is not "
                             "supported: this server cannot force a call.)", "tool_choice")
    if not tools:
        raise InvalidRequest(f"tool_choice names {name!r} but the request has no tools.", "tool_choice")
    named = [t for t in tools if t["function"]["name"] == name]
    if not named:
        raise InvalidRequest(f"tool_choice names {name!r}, which is not one of the request's tools.", "tool_choice")
    return named


def call_for_template(call: Any, where: str) -> dict[str, Any]:
    """An assistant message's OpenAI `tool_calls` entry as the template reads it: the arguments, a
    JSON string on the wire, parsed into an object (as vLLM hands them to a template)."""
    function = call.get("function") if isinstance(call, dict) else None
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(function, dict) or not isinstance(name, str) or not name:
        raise InvalidRequest(f"{where} must be {{\"type\": \"function\", \"function\": {{\"name\", \"arguments\"}}}}.",
                             where)
    arguments = function.get("arguments", "{}")
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments or "{}")
        except ValueError:
            raise InvalidRequest(f"{where}.function.arguments is not valid JSON.",
                                 f"{where}.function.arguments") from None
    if not isinstance(arguments, dict):
        raise InvalidRequest(f"{where}.function.arguments must be a JSON object.", f"{where}.function.arguments")
    return {"type": "function", "id": call.get("id"), "function": {"name": name, "arguments": arguments}}


# --- the model's side ---------------------------------------------------------------------------

def format_value(value: Any) -> str:
    """A parameter's value as the model writes it: a string as it is (in CDATA where it must be),
    anything else as JSON."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return f"{CDATA_OPEN}{text}{CDATA_CLOSE}" if any(c in text for c in NEEDS_CDATA) else text


def format_call(name: str, arguments: Mapping[str, Any]) -> str:
    """One call in the model's own words."""
    params = "".join(f'<param name="{key}">{format_value(value)}</param>' for key, value in arguments.items())
    return f'<function name="{name}">{params}</function>'


def _schema_types(tools: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """{function name: {parameter name: its JSON Schema type}}."""
    out = {}
    for tool in tools:
        function = tool["function"]
        properties = (function.get("parameters") or {}).get("properties") or {}
        out[function["name"]] = {k: (v.get("type") if isinstance(v, dict) else None) for k, v in properties.items()}
    return out


def _value(raw: str, schema_type: Any) -> Any:
    """A parameter's text as JSON: a string where the schema says so (or says nothing and it is not
    JSON), else the JSON value it spells."""
    if raw.startswith(CDATA_OPEN):
        raw = raw[len(CDATA_OPEN):-len(CDATA_CLOSE)]
    if schema_type == "string":
        return raw
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def parse_call(block: str, tools: Sequence[dict[str, Any]]) -> ToolCall | None:
    """The call one complete `<function ...>...</function>` block makes, or None where it is not well
    formed or names a function the request did not offer."""
    match = _CALL.match(block)
    types = _schema_types(tools)
    if match is None or match.group(1) not in types:
        return None
    name, body = match.groups()
    arguments: dict[str, Any] = {}
    position = 0
    for param in _PARAM.finditer(body):
        if param.start() != position or param.group(1) in arguments:
            return None
        arguments[param.group(1)] = _value(param.group(2), types[name].get(param.group(1)))
        position = param.end()
    if body[position:].strip():
        return None
    return ToolCall(name, arguments)


def _call_end(text: str) -> int:
    """Where the `</function>` that closes the call in `text` starts, skipping CDATA sections (a value may
    hold the tag itself); -1 while it has not arrived."""
    position = 0
    while True:
        close, cdata = text.find(CALL_CLOSE, position), text.find(CDATA_OPEN, position)
        if cdata < 0 or close < cdata:
            return close
        position = text.find(CDATA_CLOSE, cdata + len(CDATA_OPEN))
        if position < 0:
            return -1
        position += len(CDATA_CLOSE)


def tag_prefix_len(text: str) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of `<function` (so may become one)."""
    for size in range(min(len(CALL_OPEN) - 1, len(text)), 0, -1):
        if text.endswith(CALL_OPEN[:size]):
            return size
    return 0


class ToolCallParser:
    """Incremental tool-call parser; see the module docstring. `content` and `calls` accumulate what
    has been returned. Whitespace between calls, and right before the first one, is layout, not
    content: it is held back and dropped when a call follows."""

    def __init__(self, tools: Sequence[dict[str, Any]]):
        self._tools = list(tools)
        self._pending = ""  # text not yet returned: a possible call, or whitespace that may precede one
        self._finished = False
        self._after_call = False  # whitespace right after a call is layout too
        self.content = ""
        self.calls: list[ToolCall] = []

    def feed(self, delta: str) -> list[str | ToolCall]:
        """Add answer text; return the content (str) and calls (ToolCall) now decided, in order."""
        if self._finished:
            raise RuntimeError("ToolCallParser.feed() after finish()")
        self._pending += delta
        return self._drain(final=False)

    def finish(self) -> list[str | ToolCall]:
        """The reply ended: what was held back is decided (an unclosed call is text after all)."""
        if self._finished:
            return []
        self._finished = True
        return self._drain(final=True)

    def _drain(self, final: bool) -> list[str | ToolCall]:
        events: list[str | ToolCall] = []
        while True:
            if self._after_call:
                self._pending = self._pending.lstrip()
            if not self._pending:
                break
            start = self._pending.find(CALL_OPEN)
            if start < 0:
                # 1. no call begins here: release all but a possible `<function` prefix and trailing whitespace
                keep = 0 if final else tag_prefix_len(self._pending)
                text = self._pending[:len(self._pending) - keep]
                if not final:
                    text = text.rstrip()
                self._emit_text(events, text)
                self._pending = self._pending[len(text):] if not final else ""
                break
            # 2. text before a call is content; the whitespace next to a call is layout (dropped if it is one)
            before = self._pending[:start].rstrip()
            self._emit_text(events, before)
            self._pending = self._pending[len(before):]
            end = _call_end(self._pending)
            if end < 0:
                if final:
                    self._emit_text(events, self._pending)  # a call never closed: the model's text
                    self._pending = ""
                break  # wait for `</function>`
            block = self._pending[:end + len(CALL_CLOSE)]
            self._pending = self._pending[len(block):]
            call = parse_call(block.lstrip(), self._tools)
            if call is None:
                self._emit_text(events, block)  # malformed or unknown: given back as it was written
            else:
                self.calls.append(call)
                self._after_call = True
                events.append(call)
        return events

    def _emit_text(self, events: list[str | ToolCall], text: str) -> None:
        if text:
            self.content += text
            self._after_call = False
            events.append(text)


# The tool-call parsers by format name, as vLLM registers them (`--tool-call-parser minicpm5`); a family
# names its format (`ModelFamily.tool_format`). A new format is a new parser here.
PARSERS: Mapping[str, type[ToolCallParser]] = {FORMAT: ToolCallParser}


def parser_for(format_name: str | None, tools: Sequence[dict[str, Any]] | None) -> ToolCallParser | None:
    """A fresh parser for one reply in `format_name`, offering `tools`; None where no tools are offered."""
    if not tools:
        return None
    if format_name is None or format_name not in PARSERS:
        raise InvalidRequest(f"This model has no tool-call format ({format_name!r}): send the request without tools.",
                             "tools", code="tools_not_supported")
    return PARSERS[format_name](tools)


def parse_tool_calls(text: str, tools: Sequence[dict[str, Any]]) -> tuple[str, list[ToolCall]]:
    """A whole answer at once: (content, calls), by exactly the streaming parser's rules."""
    parser = ToolCallParser(tools)
    parser.feed(text)
    parser.finish()
    return parser.content, parser.calls
