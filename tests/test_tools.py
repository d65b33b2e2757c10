"""MiniCPM5's tool-call format (minicpm_core.tools): calls written and read back, the streaming parser
at every chunk boundary, malformed calls given back as text, and the request's tools checked."""

from __future__ import annotations

import json

import pytest

from minicpm_core.errors import InvalidRequest
from minicpm_core.prompt import ChatOptions, validate_messages
from minicpm_core.tools import (
    CALL_TAGS,
    ToolCall,
    ToolCallParser,
    call_for_template,
    check_tools,
    chosen_tools,
    format_call,
    parse_tool_calls,
)

WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"},
                                     "units": {"type": "object"}}}}}
NOTE = {"type": "function", "function": {"name": "write_note", "parameters": {
    "type": "object", "properties": {"text": {"type": "string"}}}}}
TOOLS = [WEATHER, NOTE]
CALL = format_call("get_weather", {"city": "Paris", "days": 3})
CDATA_CALL = format_call("write_note", {"text": "a < b & c\nline two"})
REPLIES = {  # whole answer text -> (content, [(name, arguments)])
    "plain": ("It is sunny.", ("It is sunny.", [])),
    "call only": (CALL, ("", [("get_weather", {"city": "Paris", "days": 3})])),
    "text then call": (f"Let me look.\n{CALL}", ("Let me look.", [("get_weather", {"city": "Paris", "days": 3})])),
    "two calls": (f"{CALL}\n{CDATA_CALL}\n", ("", [("get_weather", {"city": "Paris", "days": 3}),
                                                 ("write_note", {"text": "a < b & c\nline two"})])),
    "unknown function": ('<function name="rm"><param name="path">/</param></function>',
                         ('<function name="rm"><param name="path">/</param></function>', [])),
    "bad markup": ('<function name="get_weather"><param city>Paris</param></function>',
                   ('<function name="get_weather"><param city>Paris</param></function>', [])),
    "never closed": (f'Hm {CALL[:-5]}', (f'Hm {CALL[:-5]}', [])),
    "lookalike text": ("use <functional> style, x < y", ("use <functional> style, x < y", [])),
    "text after a call": (f"{CALL} Done.", ("Done.", [("get_weather", {"city": "Paris", "days": 3})])),
    "tags inside cdata": (format_call("write_note", {"text": "<param>x</param></function>"}),
                          ("", [("write_note", {"text": "<param>x</param></function>"})])),
}


def summary(content: str, calls: list[ToolCall]):
    return content, [(c.name, c.arguments) for c in calls]


def test_a_value_with_markup_or_newlines_is_wrapped_in_cdata():
    assert CDATA_CALL == ('<function name="write_note"><param name="text"><![CDATA[a < b & c\nline two]]></param>'
                          '</function>')
    assert format_call("f", {"n": 2, "o": {"a": [1]}}) == '<function name="f"><param name="n">2</param>' \
                                                         '<param name="o">{"a": [1]}</param></function>'


@pytest.mark.parametrize("name", list(REPLIES))
def test_whole_replies_parse_into_content_and_calls(name):
    text, expected = REPLIES[name]
    assert summary(*parse_tool_calls(text, TOOLS)) == expected


@pytest.mark.parametrize("name", list(REPLIES))
def test_every_chunk_boundary_gives_the_whole_replys_result_and_no_tag_leaks(name):
    text, expected = REPLIES[name]
    well_formed = not any(tag in expected[0] for tag in CALL_TAGS)
    for cut in range(len(text) + 1):
        for chunks in ([text[:cut], text[cut:]], [text[:cut], *text[cut:]]):  # one cut, then down to characters
            parser = ToolCallParser(TOOLS)
            events = [e for chunk in chunks for e in parser.feed(chunk)] + parser.finish()
            texts = [e for e in events if isinstance(e, str)]
            calls = [e for e in events if isinstance(e, ToolCall)]
            assert summary("".join(texts), calls) == expected, (cut, chunks)
            if well_formed:
                for piece in texts:
                    assert not any(tag in piece for tag in CALL_TAGS) and not piece.endswith("<"), (cut, piece)


def test_arguments_follow_the_schema_types():
    text = format_call("get_weather", {"city": "42", "days": "7", "units": {"t": "C"}})
    (call,) = parse_tool_calls(text, TOOLS)[1]
    assert call.arguments == {"city": "42", "days": 7, "units": {"t": "C"}}  # "42" stays a string: the schema says so
    assert json.loads(call.arguments_json) == call.arguments and call.id.startswith("call_")


def test_a_parameter_given_twice_is_not_a_call():
    text = '<function name="get_weather"><param name="city">A</param><param name="city">B</param></function>'
    assert parse_tool_calls(text, TOOLS) == (text, [])


def test_feed_after_finish_is_a_programming_error():
    parser = ToolCallParser(TOOLS)
    parser.finish()
    with pytest.raises(RuntimeError):
        parser.feed("x")


# --- the request's side --------------------------------------------------------------------------------------

@pytest.mark.parametrize("tools, fragment", [
    ([], "non-empty list"),
    ([{"type": "function"}], "tools[0] must be"),
    ([{"type": "function", "function": {"name": "has space"}}], "tools[0].function.name"),
    ([WEATHER, WEATHER], "given twice"),
    ([{"type": "function", "function": {"name": "f", "parameters": "x"}}], "JSON Schema object"),
])
def test_bad_tools_are_clear_errors(tools, fragment):
    with pytest.raises(InvalidRequest, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        check_tools(tools)


def test_tool_choice_decides_what_the_template_offers():
    assert chosen_tools(TOOLS, None) == chosen_tools(TOOLS, "auto") == TOOLS
    assert chosen_tools(TOOLS, "none") is None
    assert chosen_tools(TOOLS, {"type": "function", "function": {"name": "write_note"}}) == [NOTE]
    for bad, fragment in (("required", "cannot force"), ({"type": "function", "function": {"name": "x"}}, "not one of"),
                          ({"function": "x"}, "tool_choice must be")):
        with pytest.raises(InvalidRequest, match=fragment):
            ChatOptions(tools=tuple(TOOLS), tool_choice=bad)


def test_options_give_the_template_only_what_was_set():
    from minicpm_core.families import FAMILIES

    two_b, five = FAMILIES
    assert ChatOptions().template_kwargs(five) == {}
    assert ChatOptions(enable_thinking=False, tools=(WEATHER,)).template_kwargs(five) == {
        "enable_thinking": False, "tools": [WEATHER]}
    assert ChatOptions(enable_thinking=True).template_kwargs(two_b) == {}  # MiniCPM-2B has no switch


def test_history_with_calls_and_results_is_accepted_only_with_tools():
    call = {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    history = [{"role": "user", "content": "Weather?"}, {"role": "assistant", "content": None, "tool_calls": [call]},
               {"role": "tool", "tool_call_id": "c1", "content": "sunny"}]
    clean = validate_messages(history, tools=True)
    assert clean[1] == {"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "id": "c1", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]}
    assert clean[2] == {"role": "tool", "content": "sunny"}
    with pytest.raises(InvalidRequest, match="needs the tools"):
        validate_messages(history)
    with pytest.raises(InvalidRequest, match="not valid JSON"):
        call_for_template({"function": {"name": "f", "arguments": "{"}}, "messages[1].tool_calls[0]")


def test_the_parser_is_found_by_the_familys_format_name():
    from minicpm_core.families.minicpm2b import MINICPM_2B
    from minicpm_core.families.minicpm5 import MINICPM5
    from minicpm_core.tools import parser_for

    assert isinstance(parser_for(MINICPM5.tool_format, TOOLS), ToolCallParser)
    assert parser_for(MINICPM5.tool_format, None) is None  # no tools offered (tool_choice "none"): plain text
    with pytest.raises(InvalidRequest, match="no tool-call format"):
        parser_for(MINICPM_2B.tool_format, TOOLS)
