"""Thinking through the HTTP API (MiniCPM5), vLLM's and SGLang's convention: `chat_template_kwargs.
enable_thinking` in, `reasoning_content` out (message and streamed deltas), `content` only the answer;
the seed's `POST /` takes `enable_thinking` and returns `reasoning`. On the tiny random MiniCPM5
checkpoint the greedy reply equals a bare `LlamaForCausalLM.generate` over the checkpoint's own
template; on the thinking demo the reasoning and the answer come apart exactly. MiniCPM-2B's
responses carry none of the new fields."""

from __future__ import annotations

import json
import logging

import openai
import pytest
from bare_reference import bare_greedy, load_bare, reference_ids

from minicpm_core.api.protocol import ChatCompletionRequest, SeedRequest
from minicpm_core.families.minicpm2b import MINICPM_2B
from minicpm_core.families.minicpm5 import MINICPM5
from minicpm_core.params import GenerationParams
from minicpm_core.prompt import ChatOptions
from minicpm_core.reasoning import opens_reasoning, split_reasoning, tag_prefix_len
from minicpm_core.remote import RemoteBackend
from testkit.minicpm5 import DEMO_MODEL_DIR, demo_qa

from .support import ask, served

MODES = (True, False, None)
MODE_IDS = ("thinking-on", "thinking-off", "thinking-not-given")
REPLY_TOKENS = 24  # random weights never stop early: every reply runs this long
CUT_TOKENS = 4  # far inside every demo reasoning


def thinking(mode: bool | None) -> dict:
    """The /v1 request field for a mode (nothing for None: the template's default)."""
    return {} if mode is None else {"chat_template_kwargs": {"enable_thinking": mode}}


def seed_thinking(mode: bool | None) -> dict:
    return {} if mode is None else {"enable_thinking": mode}


@pytest.fixture(scope="module")
def m5_client(m5_ckpt):
    engine, client = served(m5_ckpt, "m5-tiny")
    yield client
    client.__exit__(None, None, None)
    engine.close()


def complete(client, messages, **body):
    response = client.post("/v1/chat/completions", json={"messages": messages, "temperature": 0, **body})
    assert response.status_code == 200, response.text
    return response.json()


def stream(client, messages, **body) -> list[dict]:
    """Every chunk of a streamed reply, parsed."""
    with client.stream("POST", "/v1/chat/completions",
                       json={"messages": messages, "temperature": 0, "stream": True, **body}) as response:
        assert response.status_code == 200
        events = [line[len("data: "):] for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    return [json.loads(event) for event in events[:-1]]


def joined(chunks: list[dict], key: str) -> str:
    return "".join(c["choices"][0]["delta"].get(key) or "" for c in chunks if c["choices"])


def assert_no_tag_in(content_pieces) -> None:
    for piece in content_pieces:
        assert "<think" not in piece and "</think" not in piece and "<|im" not in piece
        assert tag_prefix_len(piece) == 0, f"{piece!r} ends in the start of a think tag"


# --- fidelity: /v1 and POST / equal bare generate -------------------------------------------------------

@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_greedy_reply_through_both_endpoints_equals_bare_generate(m5_client, m5_ckpt, mode):
    model, tok = load_bare(m5_ckpt)
    messages = [{"role": "system", "content": "Be brief."}, *ask("你好，介绍一下你自己")]
    prompt, expected = bare_greedy(model, tok, messages, mode, REPLY_TOKENS)
    # cut by length, a reply may end inside a character: its first bytes are never shown (detok.flush)
    text = tok.decode(expected, skip_special_tokens=True).rstrip("\ufffd")
    split = split_reasoning(text, opened=opens_reasoning(prompt))
    # No repetition_penalty sent: MiniCPM5's default (1.0, off) must be what the server applies.
    reply = complete(m5_client, messages, max_tokens=REPLY_TOKENS, **thinking(mode))
    message = reply["choices"][0]["message"]
    assert (message.get("reasoning_content") or "", message["content"]) == (split.reasoning, split.content)
    assert reply["choices"][0]["finish_reason"] == "length"
    assert reply["usage"]["completion_tokens"] == REPLY_TOKENS
    assert reply["usage"]["prompt_tokens"] == len(reference_ids(tok, messages, mode))  # one BOS
    seed = m5_client.post("/", json={"prompt": messages[-1]["content"], "history": messages[:1], "temperature": 0,
                                     "max_new_tokens": REPLY_TOKENS, **seed_thinking(mode)})
    assert seed.status_code == 200
    assert (seed.json().get("reasoning") or "", seed.json()["response"]) == (split.reasoning, split.content)


# --- reasoning separation on the thinking demo ------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_reasoning_and_answer_come_apart_streamed_and_not(m5_demo_client, mode):
    model, tok = load_bare(DEMO_MODEL_DIR)
    for question, reasoning, answer in demo_qa():
        prompt, expected = bare_greedy(model, tok, ask(question), mode, 200)
        split = split_reasoning(tok.decode(expected, skip_special_tokens=True), opened=opens_reasoning(prompt))
        assert (split.content, split.reasoning) == (answer, "" if mode is False else reasoning)

        reply = complete(m5_demo_client, ask(question), **thinking(mode))
        message = reply["choices"][0]["message"]
        assert message["content"] == split.content and reply["choices"][0]["finish_reason"] == "stop"
        if split.reasoning:
            assert message["reasoning_content"] == split.reasoning
            thought = reply["usage"]["completion_tokens_details"]["reasoning_tokens"]
            assert 0 < thought < reply["usage"]["completion_tokens"]
        else:
            assert "reasoning_content" not in message and "completion_tokens_details" not in reply["usage"]

        chunks = stream(m5_demo_client, ask(question), stream_options={"include_usage": True}, **thinking(mode))
        assert (joined(chunks, "content"), joined(chunks, "reasoning_content")) == (split.content, split.reasoning)
        deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
        assert all(not (d.get("content") and d.get("reasoning_content")) for d in deltas)
        assert_no_tag_in(d["content"] for d in deltas if "content" in d)
        assert_no_tag_in(d["reasoning_content"] for d in deltas if "reasoning_content" in d)
        kinds = [("reasoning" if "reasoning_content" in d else "content") for d in deltas if d.get("reasoning_content")
                 or d.get("content")]
        assert kinds == sorted(kinds, key=lambda k: k != "reasoning")  # all reasoning, then all answer
        assert chunks[-1]["usage"] == reply["usage"]


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_the_seed_endpoint_returns_the_answer_and_the_reasoning_beside_it(m5_demo_client, mode):
    question, reasoning, answer = demo_qa()[1]
    reply = m5_demo_client.post("/", json={"prompt": question, "temperature": 0, **seed_thinking(mode)})
    assert reply.status_code == 200
    body = reply.json()
    assert body["response"] == answer
    assert body["history"][-1] == {"role": "assistant", "content": answer}  # never the reasoning
    if mode is False:
        assert "reasoning" not in body
    else:
        assert body["reasoning"] == reasoning


def test_stop_strings_apply_to_the_answer_only(m5_demo_client):
    question, reasoning, answer = demo_qa()[1]  # "demo" is in both
    stop = "demo"
    assert stop in reasoning and stop in answer
    reply = complete(m5_demo_client, ask(question), stop=[stop], **thinking(True))
    message = reply["choices"][0]["message"]
    assert message["reasoning_content"] == reasoning
    assert message["content"] == answer[:answer.index(stop)] and reply["choices"][0]["finish_reason"] == "stop"
    chunks = stream(m5_demo_client, ask(question), stop=[stop], **thinking(True))
    assert (joined(chunks, "reasoning_content"), joined(chunks, "content")) == (reasoning, message["content"])


@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "streamed"])
def test_a_reply_cut_inside_the_reasoning_has_length_empty_content_and_reasoning(m5_demo_client, streamed):
    question, reasoning, _ = demo_qa()[2]
    if streamed:
        chunks = stream(m5_demo_client, ask(question), max_tokens=CUT_TOKENS, **thinking(True))
        content, thought = joined(chunks, "content"), joined(chunks, "reasoning_content")
        finish = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1]
    else:
        reply = complete(m5_demo_client, ask(question), max_tokens=CUT_TOKENS, **thinking(True))
        message, finish = reply["choices"][0]["message"], reply["choices"][0]["finish_reason"]
        content, thought = message["content"], message["reasoning_content"]
        details = reply["usage"]["completion_tokens_details"]
        assert details["reasoning_tokens"] == reply["usage"]["completion_tokens"] == CUT_TOKENS
    assert finish == "length" and content == ""
    assert thought and reasoning.startswith(thought.rstrip("\ufffd"))


# --- the request: chat_template_kwargs and enable_thinking, checked --------------------------------------

@pytest.mark.parametrize("kwargs, message", [
    ({"enable_thinking": True, "thinking_budget": 10},
     "chat_template_kwargs.thinking_budget is not accepted: chat_template_kwargs takes only enable_thinking."),
    ({"enable_thinking": "yes"}, "chat_template_kwargs.enable_thinking must be true or false; got 'yes'."),
    ({"enable_thinking": 1}, "chat_template_kwargs.enable_thinking must be true or false; got 1."),
    ([True], "chat_template_kwargs must be an object; got [True]."),
], ids=["other-key", "string", "number", "not-an-object"])
def test_bad_chat_template_kwargs_are_a_400_naming_what_is_accepted(m5_demo_client, kwargs, message):
    response = m5_demo_client.post("/v1/chat/completions", json={"messages": ask("hi"), "chat_template_kwargs": kwargs})
    assert response.status_code == 400
    assert response.json()["error"]["message"] == message
    assert response.json()["error"]["param"].startswith("chat_template_kwargs")


def test_the_seed_enable_thinking_must_be_a_boolean(m5_demo_client):
    response = m5_demo_client.post("/", json={"prompt": "hi", "enable_thinking": "true"})
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "enable_thinking must be true or false; got 'true'."


def test_both_endpoints_describe_enable_thinking_alike():
    seed = SeedRequest.model_fields["enable_thinking"].description
    assert seed and seed in ChatCompletionRequest.model_fields["chat_template_kwargs"].description


# --- the family's defaults for what a request leaves unset --------------------------------------------------

def test_unset_sampling_fields_take_the_loaded_familys_defaults():
    request = ChatCompletionRequest.model_validate({"messages": ask("hi"), "top_p": 0.5})
    params = request.to_params(MINICPM5.defaults)
    assert (params.temperature, params.top_p, params.repetition_penalty, params.min_p) == (1.0, 0.5, 1.0, 0.0)
    seed = SeedRequest.model_validate({"prompt": "hi", "temperature": 0.2}).to_params(MINICPM5.defaults)
    assert (seed.temperature, seed.top_p, seed.repetition_penalty) == (0.2, 0.95, 1.0)
    # MiniCPM-2B's defaults are GenerationParams' own: nothing changes there.
    assert ChatCompletionRequest.model_validate({"messages": ask("hi")}).to_params(MINICPM_2B.defaults) \
        == GenerationParams()


# --- the official openai client and our RemoteBackend read it ----------------------------------------------

def test_the_openai_client_reads_reasoning_content(m5_demo_server):
    question, reasoning, answer = demo_qa()[0]
    client = openai.OpenAI(base_url=f"{m5_demo_server.url}/v1", api_key="EMPTY", max_retries=0)
    try:
        completion = client.chat.completions.create(
            model="m5-demo", messages=ask(question), temperature=0,
            extra_body={"chat_template_kwargs": {"enable_thinking": True}})
        message = completion.choices[0].message
        assert message.content == answer and message.reasoning_content == reasoning
        assert completion.usage.completion_tokens_details.reasoning_tokens > 0
        chunks = list(client.chat.completions.create(
            model="m5-demo", messages=ask(question), temperature=0, stream=True,
            extra_body={"chat_template_kwargs": {"enable_thinking": True}}))
        deltas = [c.choices[0].delta for c in chunks if c.choices]
        assert "".join(getattr(d, "reasoning_content", None) or "" for d in deltas) == reasoning
        assert "".join(d.content or "" for d in deltas) == answer
    finally:
        client.close()


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_the_remote_backend_sends_enable_thinking_and_splits_the_reply(m5_demo_server, mode):
    question, reasoning, answer = demo_qa()[1]
    backend = RemoteBackend(f"{m5_demo_server.url}/v1")
    try:
        assert backend.takes_template_kwargs  # our own server (owned_by "openbmb")
        generation = backend.submit(ask(question), {"temperature": 0}, options=ChatOptions(enable_thinking=mode))
        parts = list(generation.parts())
        expected = "" if mode is False else reasoning
        assert (generation.reasoning, generation.text) == (expected, answer)
        assert ("".join(r for r, _ in parts), "".join(c for _, c in parts)) == (expected, answer)
        assert generation.stats.finish_reason == "stop" and not generation.stats.ended_in_reasoning
        assert (generation.stats.reasoning_tokens > 0) is bool(expected)
        again = backend.submit(ask(question), {"temperature": 0}, options=ChatOptions(enable_thinking=mode))
        assert "".join(again) == answer and again.reasoning == expected  # iterating: the answer only
    finally:
        backend.close()


def test_the_remote_backend_sees_a_reply_cut_inside_the_reasoning(m5_demo_server):
    backend = RemoteBackend(f"{m5_demo_server.url}/v1")
    try:
        generation = backend.submit(ask(demo_qa()[0][0]), {"temperature": 0, "max_new_tokens": CUT_TOKENS},
                                    options=ChatOptions(enable_thinking=True))
        assert generation.result() == "" and generation.reasoning
        assert generation.stats.finish_reason == "length" and generation.stats.ended_in_reasoning
    finally:
        backend.close()


def test_a_server_not_known_to_take_template_kwargs_never_gets_them(m5_demo_server):
    backend = RemoteBackend(f"{m5_demo_server.url}/v1")
    try:
        backend._card = {"id": "m5-demo", "owned_by": "some-strict-server"}
        assert not backend.takes_template_kwargs
        question, reasoning, answer = demo_qa()[1]
        generation = backend.submit(ask(question), {"temperature": 0}, options=ChatOptions(enable_thinking=False))
        # The switch did not travel: the template's default (thinking) applied.
        assert generation.result() == answer and generation.reasoning == reasoning
    finally:
        backend.close()


# --- MiniCPM-2B: unchanged ----------------------------------------------------------------------------------

def test_minicpm_2b_responses_carry_no_reasoning_fields(m2b_demo_client):
    reply = complete(m2b_demo_client, ask("What is 2+3?"), chat_template_kwargs={"enable_thinking": True})
    assert set(reply["choices"][0]["message"]) == {"role", "content"}
    assert set(reply["usage"]) == {"prompt_tokens", "completion_tokens", "total_tokens"}
    chunks = stream(m2b_demo_client, ask("What is 2+3?"), **thinking(True))
    assert joined(chunks, "content") == reply["choices"][0]["message"]["content"]
    assert not any("reasoning_content" in c["choices"][0]["delta"] for c in chunks if c["choices"])
    seed = m2b_demo_client.post("/", json={"prompt": "What is 2+3?", "temperature": 0, "enable_thinking": True}).json()
    assert set(seed) == {"response", "status", "time", "history"}
    assert seed["response"] == reply["choices"][0]["message"]["content"]


def test_the_log_line_counts_the_reasoning_and_says_when_a_reply_was_cut_inside_it(m5_demo_client, caplog):
    caplog.set_level(logging.INFO, logger="minicpm_core.api")
    question = demo_qa()[2][0]
    complete(m5_demo_client, ask(question), max_tokens=CUT_TOKENS, **thinking(True))
    complete(m5_demo_client, ask(question), **thinking(False))
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("minicpm_core.api")]
    assert lines[-2].endswith(f" reasoning_tokens={CUT_TOKENS} (cut inside the reasoning)")
    assert "reasoning_tokens" not in lines[-1]  # thinking off: the line is MiniCPM-2B's
