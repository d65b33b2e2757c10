"""One BOS, the same prompt as every other engine: for every shipped MiniCPM5 template (the 2B's and the
1B's, and the demo's), our prompt ids are transformers' `apply_chat_template(tokenize=True)` over the same
conversation, on the real layout (a tokenizer that adds a BOS by default and a template that writes one)."""

from __future__ import annotations

import copy
import json

import pytest
from transformers import AutoTokenizer

from minicpm_core.families.minicpm5 import MINICPM5
from minicpm_core.prompt import ChatOptions, build_prompt
from testkit import minicpm5
from testkit.minicpm5 import DEMO_MODEL_DIR, demo_tool

TOOL = demo_tool()["tool"]
CALL = {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "a<b"}'}}
CONVERSATIONS = {
    "one question": [{"role": "user", "content": "你好"}],
    "system and history": [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "q1"},
        {"role": "assistant", "content": "A1", "reasoning_content": "r1"}, {"role": "user", "content": "q2"},
        {"role": "assistant", "content": "<think>\nr2\n</think>\n\nA2"}, {"role": "user", "content": "q3"}],
    "tools": [{"role": "user", "content": "Weather?"}, {"role": "assistant", "content": None, "tool_calls": [CALL],
                                                         "reasoning_content": "call it"},
              {"role": "tool", "tool_call_id": "c1", "content": "sunny"}],
}


@pytest.fixture(scope="module", params=["demo", *minicpm5.CHAT_TEMPLATES])
def tok(request, tmp_path_factory):
    if request.param == "demo":
        return AutoTokenizer.from_pretrained(DEMO_MODEL_DIR, trust_remote_code=False)
    path = tmp_path_factory.mktemp(f"m5_{request.param}")
    minicpm5.write_tokenizer(path, template=request.param)
    return AutoTokenizer.from_pretrained(path, trust_remote_code=False)


def as_transformers_takes_it(messages):
    """The conversation as a client hands it to apply_chat_template: the arguments as an object."""
    out = copy.deepcopy(messages)
    for message in out:
        for call in message.get("tool_calls") or []:
            call["function"]["arguments"] = json.loads(call["function"]["arguments"])
    return out


@pytest.mark.parametrize("mode", [True, False, None], ids=["thinking-on", "thinking-off", "thinking-not-given"])
@pytest.mark.parametrize("name", list(CONVERSATIONS))
def test_prompt_ids_are_apply_chat_templates_with_one_bos(tok, name, mode):
    messages = CONVERSATIONS[name]
    tools = [TOOL] if name == "tools" else None
    options = ChatOptions(enable_thinking=mode, tools=tuple(tools) if tools else None)
    ours = build_prompt(messages, tok, budget=100_000, family=MINICPM5, options=options).ids
    kwargs = {} if mode is None else {"enable_thinking": mode}
    theirs = tok.apply_chat_template(as_transformers_takes_it(messages), tools=tools, tokenize=True,
                                     add_generation_prompt=True, **kwargs)["input_ids"]
    assert ours == list(theirs)
    assert ours[0] == tok.bos_token_id and ours.count(tok.bos_token_id) == 1
    assert tok(tok.decode(ours)).input_ids[:2] == [tok.bos_token_id] * 2  # what the text with specials would give


def test_history_cut_keeps_one_bos_and_the_tools(tok):
    long = [m for _ in range(30) for m in ({"role": "user", "content": "q " * 20}, {"role": "assistant",
                                                                                      "content": "a " * 20})]
    messages = [*long, {"role": "user", "content": "last"}]
    prompt = build_prompt(messages, tok, budget=400, reply_room=100, family=MINICPM5,
                          options=ChatOptions(tools=(TOOL,)))
    assert prompt.turns_dropped > 0 and len(prompt.ids) <= 300
    assert prompt.ids.count(tok.bos_token_id) == 1 and "<tools>" in tok.decode(prompt.ids)
