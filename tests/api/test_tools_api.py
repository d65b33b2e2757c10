"""Tool calls over /v1 on MiniCPM5, as vLLM and SGLang serve them, proven with the official `openai`
client against the thinking demo, which is trained on one tool (testkit.minicpm5.demo_tool): question →
call → our result → answer, streamed and not. Also: the README's tool example runs as written, the
prompt with tools is transformers' own, MiniCPM-2B refuses tools, and POST / takes chat_template_kwargs."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import openai
import pytest
from bare_reference import bare_greedy, load_bare, reference_ids

from minicpm_core.prompt import ChatOptions
from minicpm_core.tools import CALL_TAGS, format_call
from testkit.minicpm5 import DEMO_MODEL_DIR, demo_tool

from .support import ask

README = Path(__file__).resolve().parents[2] / "README.md"
DEMO = demo_tool()
TOOLS = [DEMO["tool"]]
NAME = DEMO["tool"]["function"]["name"]
TIMEOUT_S = 60


@pytest.fixture(scope="module")
def client(m5_demo_server):
    client = openai.OpenAI(base_url=f"{m5_demo_server.url}/v1", api_key="x", timeout=TIMEOUT_S, max_retries=0)
    yield client
    client.close()


def run_tool(call) -> str:
    assert call.function.name == NAME and json.loads(call.function.arguments) == DEMO["arguments"]
    return DEMO["result"]


def no_tags(*texts: str | None) -> None:
    for text in texts:
        assert not any(tag in (text or "") for tag in (*CALL_TAGS, "<think>", "</think>", "<|im")), text


def streamed(client, messages, check_tags: bool = True, **body):
    """(content, reasoning, tool calls as dicts, finish_reason) of a streamed reply, from its deltas; no
    tag in any delta (`check_tags`)."""
    content, reasoning, calls, finish = [], [], {}, None
    for chunk in client.chat.completions.create(model="demo", messages=messages, stream=True, temperature=0, **body):
        delta = chunk.choices[0].delta
        content.append(delta.content or "")
        reasoning.append(getattr(delta, "reasoning_content", None) or "")
        if check_tags:
            no_tags(delta.content, getattr(delta, "reasoning_content", None))
        for call in delta.tool_calls or []:
            entry = calls.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
            entry["id"] += call.id or ""
            entry["name"] += call.function.name or ""
            entry["arguments"] += call.function.arguments or ""
        finish = chunk.choices[0].finish_reason or finish
    return "".join(content), "".join(reasoning), [calls[i] for i in sorted(calls)], finish


def test_the_agent_loop_with_the_openai_client(client):
    messages = ask(DEMO["question"])
    first = client.chat.completions.create(model="demo", messages=messages, tools=TOOLS, temperature=0).choices[0]
    assert first.finish_reason == "tool_calls" and first.message.content is None
    assert first.message.reasoning_content == DEMO["call_reasoning"]
    (call,) = first.message.tool_calls
    messages += [first.message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": run_tool(call)}]
    final = client.chat.completions.create(model="demo", messages=messages, tools=TOOLS, temperature=0).choices[0]
    assert (final.finish_reason, final.message.content, final.message.tool_calls) == ("stop", DEMO["answer"], None)
    assert final.message.reasoning_content == DEMO["answer_reasoning"]
    no_tags(first.message.reasoning_content, final.message.content, final.message.reasoning_content)


def test_the_agent_loop_streamed(client):
    messages = ask(DEMO["question"])
    content, reasoning, calls, finish = streamed(client, messages, tools=TOOLS)
    assert (content, reasoning, finish) == ("", DEMO["call_reasoning"], "tool_calls")
    (call,) = calls
    assert call["name"] == NAME and json.loads(call["arguments"]) == DEMO["arguments"] and call["id"]
    sent_call = {"id": call["id"], "type": "function", "function": {"name": NAME, "arguments": call["arguments"]}}
    messages += [{"role": "assistant", "content": None, "tool_calls": [sent_call]},
                 {"role": "tool", "tool_call_id": call["id"], "content": DEMO["result"]}]
    content, reasoning, calls, finish = streamed(client, messages, tools=TOOLS)  # no reasoning sent back this time
    assert (content, reasoning, calls, finish) == (DEMO["answer"], DEMO["answer_reasoning"], [], "stop")


def test_the_prompt_with_tools_is_transformers_own_and_the_reply_bare_generates(m5_demo_engine):
    model, tok = load_bare(DEMO_MODEL_DIR)
    messages = ask(DEMO["question"])
    prompt = m5_demo_engine.prepare(messages, options=ChatOptions(tools=tuple(TOOLS)))
    assert prompt.ids == reference_ids(tok, messages, None, tools=TOOLS)
    _, expected = bare_greedy(model, tok, messages, None, 80, tools=TOOLS)
    generation = m5_demo_engine.submit(messages, {"temperature": 0}, options=ChatOptions(tools=tuple(TOOLS)))
    generation.result()
    assert generation._token_ids == expected


def test_tool_choice_none_offers_no_tools_and_parses_no_calls(m5_demo_engine, client):
    assert "<tools>" not in m5_demo_engine.tokenizer.decode(
        m5_demo_engine.prepare(ask(DEMO["question"]), options=ChatOptions(tools=tuple(TOOLS), tool_choice="none")).ids)
    reply = client.chat.completions.create(model="demo", messages=ask(DEMO["question"]), tools=TOOLS,
                                           tool_choice="none", temperature=0, max_tokens=40).choices[0]
    assert reply.message.tool_calls is None and reply.finish_reason != "tool_calls"


def test_a_named_tool_choice_is_a_call_to_it(client):
    reply = client.chat.completions.create(model="demo", messages=ask(DEMO["question"]), tools=TOOLS, temperature=0,
                                           tool_choice={"type": "function", "function": {"name": NAME}}).choices[0]
    assert [c.function.name for c in reply.message.tool_calls] == [NAME]


@pytest.mark.parametrize("body, fragment", [
    ({"tools": TOOLS, "tool_choice": "required"}, "cannot force a call"),
    ({"tools": TOOLS, "tool_choice": {"type": "function", "function": "x"}}, "tool_choice must be"),
    ({"tools": [{"type": "function", "function": {"name": "a b"}}]}, "tools[0].function.name"),
    ({"tool_choice": {"type": "function", "function": {"name": NAME}}}, "the request has no tools"),
])
def test_bad_tool_requests_are_400s_that_say_why(client, body, fragment):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="demo", messages=ask("hi"), **body)
    assert fragment in caught.value.body["message"]


def test_a_tool_result_without_tools_is_a_400(client):
    messages = [*ask("hi"), {"role": "tool", "tool_call_id": "c", "content": "x"}]
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="demo", messages=messages)
    assert "tool results need the tools" in caught.value.body["message"]


def test_minicpm_2b_refuses_tools_with_a_clear_400(tiny_server):
    with openai.OpenAI(base_url=f"{tiny_server.url}/v1", api_key="x", timeout=TIMEOUT_S, max_retries=0) as client:
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(model="x", messages=ask("hi"), tools=TOOLS)
    assert caught.value.body["message"] == ("MiniCPM-2B was not trained for tool calls: send the request "
                                            "without tools.")


def test_the_seed_endpoint_takes_chat_template_kwargs(m5_demo_server):
    import httpx

    question = "What is 2 + 3?"
    with httpx.Client(base_url=m5_demo_server.url, timeout=TIMEOUT_S) as http:
        off = http.post("/", json={"prompt": question, "temperature": 0,
                                   "chat_template_kwargs": {"enable_thinking": False}}).json()
        on = http.post("/", json={"prompt": question, "temperature": 0, "enable_thinking": True,
                                  "chat_template_kwargs": {"enable_thinking": True}}).json()
        odds = http.post("/", json={"prompt": question, "enable_thinking": True,
                                    "chat_template_kwargs": {"enable_thinking": False}})
    assert off["response"] == on["response"] == "2 + 3 = 5." and "reasoning" not in off and on["reasoning"]
    assert odds.status_code == 400 and "disagree" in odds.json()["error"]["message"]


def readme_python_block(marker: str) -> str:
    (block,) = [b for b in re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S) if marker in b]
    return block


def test_the_readme_tool_example_runs_as_written(m5_demo_server):
    block = readme_python_block("tools=tools")
    shown = [line[2:] for line in block.splitlines() if line.startswith("# ")]
    script = block.replace("127.0.0.1:6007", m5_demo_server.url.removeprefix("http://"))
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=TIMEOUT_S)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == shown == ['called get_weather {"city": "Paris"}', DEMO["answer"]]


def test_the_readme_thinking_example_prints_the_reasoning_and_the_answer(m5_demo_server):
    block = readme_python_block('"enable_thinking": True')
    script = block.replace("127.0.0.1:6007", m5_demo_server.url.removeprefix("http://"))
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=TIMEOUT_S)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["Start at 2 and count three more: 3, 4, 5. So 2 + 3 is 5.", "2 + 3 = 5."]


WEATHER_Q = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.mark.parametrize("body", [
    {"tools": "x"}, {"tools": [1]}, {"tools": [{"type": "function", "function": {"name": "f", "parameters": []}}]},
    {"tools": TOOLS, "tool_choice": 5}, {"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": 5}}},
    {"tools": TOOLS, "messages": [*WEATHER_Q, {"role": "assistant", "content": None, "tool_calls": "x"}, *WEATHER_Q]},
    {"tools": TOOLS, "messages": [*WEATHER_Q, {"role": "assistant", "content": None, "tool_calls": [1]}, *WEATHER_Q]},
    {"tools": TOOLS, "messages": [*WEATHER_Q, {"role": "assistant", "tool_calls": [
        {"function": {"name": "f", "arguments": "[1]"}}]}, *WEATHER_Q]},
    {"tools": TOOLS, "messages": [*WEATHER_Q, {"role": "tool", "content": None}]},
    {"tools": TOOLS, "messages": [*WEATHER_Q, {"role": "assistant", "content": None}, *WEATHER_Q]},
    {"tools": TOOLS, "messages": [*WEATHER_Q, {"role": "tool", "content": "\\ud800"}]},  # raw JSON escape below
    {"tools": [TOOLS[0]] * 129},
], ids=lambda body: json.dumps(body)[:60])
def test_hostile_tool_requests_are_4xx_never_500(m5_demo_server, body):
    import httpx

    raw = json.dumps({"messages": WEATHER_Q, "max_tokens": 4, **body}).replace("\\\\ud800", "\\ud800")
    with httpx.Client(base_url=m5_demo_server.url, timeout=TIMEOUT_S) as http:
        response = http.post("/v1/chat/completions", content=raw, headers={"Content-Type": "application/json"})
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["error"]["message"]


def test_a_call_to_a_function_not_offered_comes_back_as_plain_content(client):
    """The demo calls get_weather whatever it is offered: offered only `get_weathers`, its call is the
    model's text, given back as content, streamed and not, with no tool_calls and no error."""
    other = json.loads(json.dumps(TOOLS[0]))
    other["function"]["name"] = "get_weathers"
    written = format_call(NAME, DEMO["arguments"])
    reply = client.chat.completions.create(model="demo", messages=ask(DEMO["question"]), tools=[other],
                                           temperature=0).choices[0]
    assert (reply.message.content, reply.message.tool_calls, reply.finish_reason) == (written, None, "stop")
    content, reasoning, calls, finish = streamed(client, ask(DEMO["question"]), tools=[other], check_tags=False)
    assert (content, reasoning, calls, finish) == (written, DEMO["call_reasoning"], [], "stop")
