"""The HTTP API on real tiny models: the seed's clients, OpenAI's client, errors, auth, logs, cancel."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import threading

import httpx
import openai
import pytest
import requests
from fastapi.testclient import TestClient
from openai import OpenAI

from minicpm_core.api import create_app
from minicpm_core.api.__main__ import main as api_main
from testkit.checkpoint import DEMO_QA

from .support import GREEDY, ask, wait_until

QA = dict(DEMO_QA)
SEED_QUESTION = ("Which mountain is the highest in Shandong Province? Is it higher or lower than Huangshan? "
                 "What is the difference?")
# The seed tutorial's client code, verbatim but for its indentation, which the page lost.
SEED_CURL = """curl -X POST "http://127.0.0.1:6006" \\
-H 'Content-Type: application/json' \\
-d '{"prompt": "Which mountain is the highest in Shandong Province? Is it higher or lower than Huangshan? What is the difference?"}'
"""
SEED_REQUESTS = """
import requests
import json

def get_completion(prompt):
    headers = {'Content-Type': 'application/json'}
    data = {"prompt": prompt,"max_length":512}
    response = requests.post(url='http://127.0.0.1:6006', headers=headers, data=json.dumps(data))
    return response.json()['response']

if __name__ == '__main__':
    print(get_completion("Which mountain is the highest in Shandong Province? Is it higher or lower than Huangshan? How much difference?"))
"""
TIME_FORMAT = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$")


def openai_client(server, api_key="unused") -> OpenAI:
    return OpenAI(base_url=f"{server.url}/v1", api_key=api_key, max_retries=0)


def sse_events(response) -> list:
    """The `data:` payloads of an SSE response, JSON-decoded except the final [DONE]."""
    events = []
    for line in response.iter_lines():
        if line.startswith("data: "):
            payload = line[len("data: "):]
            events.append(payload if payload == "[DONE]" else json.loads(payload))
        else:
            assert line == "", f"unexpected SSE line {line!r}"
    return events


# --- the seed tutorial's clients ------------------------------------------------------------------

@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_seed_curl_line_works_unchanged(m2b_demo_server):
    command = SEED_CURL.replace("http://127.0.0.1:6006", m2b_demo_server.url)
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    assert body["status"] == 200 and isinstance(body["response"], str)
    assert TIME_FORMAT.match(body["time"])


def test_seed_requests_example_works_unchanged(m2b_demo_server):
    namespace = {"__name__": "seed_client"}
    exec(SEED_REQUESTS.replace("http://127.0.0.1:6006", m2b_demo_server.url), namespace)
    answer = namespace["get_completion"]("What is the capital of France?")  # sampled: the seed's defaults
    assert isinstance(answer, str) and answer.strip()


def test_seed_reply_carries_status_time_and_history(m2b_demo_client, m2b_demo_engine):
    reply = m2b_demo_client.post("/", json={"prompt": "What is 2+3?", "temperature": 0})
    assert reply.status_code == 200
    body = reply.json()
    assert list(body) == ["response", "status", "time", "history"]
    assert body["response"] == m2b_demo_engine.chat(ask("What is 2+3?"), GREEDY)[0] and body["status"] == 200
    assert TIME_FORMAT.match(body["time"])
    assert body["history"] == [{"role": "user", "content": "What is 2+3?"},
                               {"role": "assistant", "content": body["response"]}]


def test_seed_history_as_pairs_or_messages_is_the_same_conversation(m2b_demo_client, m2b_demo_engine):
    earlier = ["hello", QA["hello"]]
    messages = [{"role": "user", "content": earlier[0]}, {"role": "assistant", "content": earlier[1]}]
    expected, _ = m2b_demo_engine.chat(messages + ask("What is 2+3?"), GREEDY)
    for history in ([earlier], messages):
        body = m2b_demo_client.post("/", json={"prompt": "What is 2+3?", "history": history, "temperature": 0}).json()
        assert body["response"] == expected
        assert body["history"] == messages + ask("What is 2+3?") + [{"role": "assistant", "content": expected}]


def test_seed_max_length_bounds_prompt_plus_reply(tiny_client, idle_tiny_engine):
    body = tiny_client.post("/", json={"prompt": "hello", "max_length": 48, "temperature": 0}).json()
    stats = idle_tiny_engine.recent[-1]
    assert stats.prompt_tokens + stats.completion_tokens == 48 and stats.finish_reason == "length"
    assert body["response"] == idle_tiny_engine.chat(ask("hello"), {"max_length": 48, "temperature": 0})[0]


# --- OpenAI protocol --------------------------------------------------------------------------------

def test_openai_client_non_streamed_matches_engine_greedy(m2b_demo_server, m2b_demo_engine):
    question = "Who are you?"
    expected, stats = m2b_demo_engine.chat(ask(question), GREEDY)
    completion = openai_client(m2b_demo_server).chat.completions.create(
        model="any-name", messages=ask(question), temperature=0)
    assert completion.choices[0].message.content == expected
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.object == "chat.completion" and completion.id.startswith("chatcmpl-")
    assert completion.model == "minicpm-demo"
    usage = completion.usage
    assert (usage.prompt_tokens, usage.completion_tokens) == (stats.prompt_tokens, stats.completion_tokens)
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_openai_client_streamed_matches_engine_greedy(m2b_demo_server, m2b_demo_engine):
    question = "Tell me a story."
    expected, stats = m2b_demo_engine.chat(ask(question), GREEDY)
    chunks = list(openai_client(m2b_demo_server).chat.completions.create(
        model="minicpm-demo", messages=ask(question), temperature=0, stream=True,
        stream_options={"include_usage": True}))
    assert len({c.id for c in chunks}) == 1 and all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == expected
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == stats.completion_tokens


def test_stream_is_server_sent_events_ending_in_done(m2b_demo_client, m2b_demo_engine):
    body = {"messages": ask("谢谢"), "temperature": 0, "stream": True}
    with m2b_demo_client.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse_events(response)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[-1]["choices"][0] == {"index": 0, "delta": {}, "finish_reason": "stop"}
    assert all("usage" not in c for c in chunks)  # only with stream_options.include_usage
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == m2b_demo_engine.chat(
        ask("谢谢"), GREEDY)[0]


def test_max_tokens_and_max_completion_tokens_cap_the_reply(m2b_demo_client, m2b_demo_engine):
    full = m2b_demo_engine.chat(ask("Tell me a story."), GREEDY)[0]
    for field in ("max_tokens", "max_completion_tokens"):
        body = m2b_demo_client.post("/v1/chat/completions", json={
            "messages": ask("Tell me a story."), "temperature": 0, field: 5}).json()
        assert body["choices"][0]["finish_reason"] == "length" and body["usage"]["completion_tokens"] == 5
        assert full.startswith(body["choices"][0]["message"]["content"])


def test_stop_strings_end_the_reply_streamed_and_not(m2b_demo_client, m2b_demo_engine):
    answer = m2b_demo_engine.chat(ask("Tell me a story."), GREEDY)[0]
    stop = answer[20:24]
    expected = answer[:answer.index(stop)]
    request = {"messages": ask("Tell me a story."), "temperature": 0, "stop": [stop, "never appears"]}
    body = m2b_demo_client.post("/v1/chat/completions", json=request).json()
    assert body["choices"][0]["message"]["content"] == expected
    assert body["choices"][0]["finish_reason"] == "stop"
    with m2b_demo_client.stream("POST", "/v1/chat/completions", json=request | {"stream": True}) as response:
        chunks = sse_events(response)[:-1]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == expected


def test_extra_body_parameters_and_seed_are_honoured(m2b_demo_server):
    client = openai_client(m2b_demo_server)

    def sample(seed):
        return client.chat.completions.create(
            model="m", messages=ask("Tell me a story."), temperature=1.5, top_p=1.0, max_tokens=12, seed=seed,
            extra_body={"top_k": 50, "repetition_penalty": 1.05}).choices[0].message.content

    assert sample(7) == sample(7)


def test_models_lists_the_served_model(m2b_demo_server, m2b_demo_engine):
    client = openai_client(m2b_demo_server)
    models = client.models.list().data
    assert [m.id for m in models] == ["minicpm-demo"]
    assert models[0].object == "model" and models[0].model_dump()["max_model_len"] == m2b_demo_engine.context_length
    assert client.models.retrieve("minicpm-demo").id == "minicpm-demo"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-4o")


def test_health_reports_model_and_queue(m2b_demo_client):
    assert m2b_demo_client.get("/health").json() == {
        "status": "ok", "model_loaded": True, "model": "minicpm-demo", "queue_depth": 0, "running": 0}


def test_openapi_schema_documents_both_endpoints(m2b_demo_client):
    paths = m2b_demo_client.get("/openapi.json").json()["paths"]
    assert {"/", "/v1/chat/completions", "/v1/models", "/health"} <= set(paths)


# --- bad requests ------------------------------------------------------------------------------------

CHAT = "/v1/chat/completions"
OK_MESSAGES = ask("hello")
LONG_PROMPT = "mountain river " * 3000  # well over 4,096 tokens

BAD_REQUESTS = [
    # (path, body: dict/list → JSON, str → raw bytes, status, words the message must contain)
    ("/", '{"prompt": "hi"', 400, "not valid JSON"),
    ("/", [1, 2], 400, "must be a JSON object; got an array"),
    ("/", '"hi"', 400, "must be a JSON object; got a string"),
    ("/", "", 400, "body is empty"),
    ("/", {}, 400, "prompt is required"),
    ("/", {"prompt": "   "}, 400, "prompt is empty"),
    ("/", {"prompt": 42}, 400, "prompt must be a string"),
    ("/", {"prompt": "hi", "temperature": 3}, 400, "temperature must be between 0.0 and 2.0"),
    ("/", {"prompt": "hi", "top_p": 0}, 400, "top_p must be between"),
    ("/", {"prompt": "hi", "repetition_penalty": 0.5}, 400, "repetition_penalty must be between 1.0 and 2.0"),
    ("/", {"prompt": "hi", "max_length": 5}, 400, "max_length must be between 16 and 4096"),
    ("/", {"prompt": "hi", "max_length": "512"}, 400, "max_length must be an integer"),
    ("/", {"prompt": "hi", "temprature": 0.3}, 400, "Did you mean 'temperature'"),
    ("/", {"prompt": "hi", "history": [["only a question"]]}, 400, "[question, answer] pair"),
    ("/", {"prompt": "hi", "history": [{"role": "bot", "content": "x"}]}, 400, "history[0] must have a role"),
    ("/", {"prompt": "hi", "history": "earlier"}, 400, "history must be a list"),
    ("/", {"prompt": LONG_PROMPT}, 400, "limit is 4096 tokens"),
    (CHAT, {"model": "m"}, 400, "messages is required"),
    (CHAT, {"messages": []}, 400, "messages is empty"),
    (CHAT, {"messages": "hello"}, 400, "messages must be a list"),
    (CHAT, {"messages": ["hello"]}, 400, "messages[0] must be an object"),
    (CHAT, {"messages": [{"role": "wizard", "content": "hi"}]}, 400, "messages[0].role is 'wizard'"),
    (CHAT, {"messages": [{"role": "user", "content": 7}]}, 400, "messages[0].content must be a string"),
    (CHAT, {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}, 400,
     "reads text only"),
    (CHAT, {"messages": OK_MESSAGES + [{"role": "assistant", "content": "hi"}]}, 400, "last message must be"),
    (CHAT, {"messages": ask("   ")}, 400, "question is empty"),
    (CHAT, {"messages": OK_MESSAGES, "model": 5}, 400, "model must be a string"),
    (CHAT, {"messages": OK_MESSAGES, "n": 2}, 400, "n must be 1"),
    (CHAT, {"messages": OK_MESSAGES, "max_tokens": 0}, 400, "max_tokens must be between 1 and 4096"),
    (CHAT, {"messages": OK_MESSAGES, "max_tokens": 1.5}, 400, "max_tokens must be an integer"),
    (CHAT, {"messages": OK_MESSAGES, "max_tokens": 5, "max_completion_tokens": 6}, 400, "disagree"),
    (CHAT, {"messages": OK_MESSAGES, "temperature": "hot"}, 400, "temperature must be a number"),
    (CHAT, {"messages": OK_MESSAGES, "seed": -1}, 400, "seed must be between 0"),
    (CHAT, {"messages": OK_MESSAGES, "top_k": 5000}, 400, "top_k must be between 0 and 1000"),
    (CHAT, {"messages": OK_MESSAGES, "stream": "yes"}, 400, "stream must be true or false"),
    (CHAT, {"messages": OK_MESSAGES, "stream_options": True}, 400, "stream_options must be an object"),
    (CHAT, {"messages": OK_MESSAGES, "stop": 5}, 400, "stop must be a string or a list"),
    (CHAT, {"messages": OK_MESSAGES, "stop": ["a", "b", "c", "d", "e"]}, 400, "at most 4"),
    (CHAT, {"messages": OK_MESSAGES, "stop": [""]}, 400, "Each stop string"),
    (CHAT, {"messages": OK_MESSAGES, "tools": [{"type": "function"}]}, 400, "tools[0] must be"),
    (CHAT, {"messages": OK_MESSAGES, "tools": [{"type": "function", "function": {"name": "f"}}]}, 400,
     "MiniCPM-2B was not trained for tool calls"),
    (CHAT, {"messages": OK_MESSAGES, "logprobs": True}, 400, "logprobs is not supported"),
    (CHAT, {"messages": OK_MESSAGES, "frequency_penalty": 0.5}, 400, "use repetition_penalty"),
    (CHAT, {"messages": OK_MESSAGES, "best_of": 2}, 400, "Unknown parameter 'best_of'"),
    (CHAT, {"messages": ask(LONG_PROMPT)}, 400, "limit is 4096 tokens"),
    (CHAT, {"messages": ask("a b c d e f g h i j k l m n o p q r s t u v w x y z"), "max_length": 16}, 400,
     "limit is 16 tokens"),
    ("/v1/completions", {"prompt": "hi"}, 404, "No such endpoint"),
    (CHAT, {"messages": ask("x" * (9 << 20))}, 413, "at most 8388608"),
]


@pytest.mark.parametrize("path, body, status, words", BAD_REQUESTS,
                         ids=[f"{i:02d}-{words}" for i, (_, _, _, words) in enumerate(BAD_REQUESTS)])
def test_bad_request_gets_4xx_with_a_helpful_message(m2b_demo_client, path, body, status, words):
    content = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    reply = m2b_demo_client.post(path, content=content, headers={"Content-Type": "application/json"})
    assert reply.status_code == status, reply.text
    error = reply.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
    assert words in error["message"]
    if path == "/":
        assert reply.json()["status"] == status  # the seed's clients read `status`
    assert m2b_demo_client.get("/health").json()["running"] == 0


def test_context_overflow_has_openai_code(m2b_demo_client):
    error = m2b_demo_client.post(CHAT, json={"messages": ask(LONG_PROMPT)}).json()["error"]
    assert error["code"] == "context_length_exceeded" and error["param"] == "messages"


def test_non_json_content_type_is_refused_with_the_fix(m2b_demo_client):
    reply = m2b_demo_client.post("/", content=b'{"prompt": "hi"}', headers={"Content-Type": "text/plain"})
    assert reply.status_code == 400 and "Content-Type: application/json" in reply.json()["error"]["message"]


def test_chunked_bodies_are_read_and_capped(m2b_demo_client):
    def chunks(body: bytes, size: int = 1 << 16):
        yield from (body[i:i + size] for i in range(0, len(body), size))

    small = json.dumps({"prompt": "谢谢", "max_new_tokens": 2}).encode()
    reply = m2b_demo_client.post("/", content=chunks(small), headers={"Content-Type": "application/json"})
    assert reply.status_code == 200 and reply.json()["status"] == 200
    big = json.dumps({"prompt": "x" * (9 << 20)}).encode()
    reply = m2b_demo_client.post("/", content=chunks(big), headers={"Content-Type": "application/json"})
    assert reply.status_code == 413 and "at most 8388608" in reply.json()["error"]["message"]


def test_wrong_method_is_405_in_error_shape(m2b_demo_client):
    reply = m2b_demo_client.get(CHAT)
    assert reply.status_code == 405 and "GET is not allowed" in reply.json()["error"]["message"]


def test_server_still_answers_after_bad_requests(m2b_demo_client, m2b_demo_engine):
    body = m2b_demo_client.post("/", json={"prompt": "What is the capital of France?", "temperature": 0}).json()
    assert body["response"] == m2b_demo_engine.chat(ask("What is the capital of France?"), GREEDY)[0]


def test_generation_failure_is_500_with_its_message(tiny_client, tiny_server, idle_tiny_engine, monkeypatch):
    original = idle_tiny_engine._generate_kwargs
    monkeypatch.setattr(idle_tiny_engine, "_generate_kwargs",
                        lambda generation, cache: original(generation, cache) | {"no_such_argument": 1})
    reply = tiny_client.post(CHAT, json={"messages": ask("hi"), "max_tokens": 3})
    assert reply.status_code == 500
    assert reply.json()["error"]["message"].startswith("Generation failed:")
    with pytest.raises(openai.APIError, match="Generation failed"):
        list(openai_client(tiny_server).chat.completions.create(model="m", messages=ask("hi"), stream=True))


# --- API key -------------------------------------------------------------------------------------------

def test_api_key_is_required_when_set(m2b_demo_engine):
    with TestClient(create_app(m2b_demo_engine, api_key="s3cret")) as client:
        body = {"messages": ask("谢谢"), "temperature": 0}
        missing = client.post(CHAT, json=body)
        assert missing.status_code == 401 and missing.json()["error"]["code"] == "invalid_api_key"
        assert "Authorization: Bearer" in missing.json()["error"]["message"]
        wrong = client.post(CHAT, json=body, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and "Incorrect API key" in wrong.json()["error"]["message"]
        assert client.post("/", json={"prompt": "hi"}).json()["status"] == 401
        assert client.get("/v1/models").status_code == 401
        assert client.post(CHAT, json=body, headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert client.post("/", json={"prompt": "谢谢"}, headers={"x-api-key": "s3cret"}).status_code == 200
        assert client.get("/health").status_code == 200  # for load balancers


# --- logging ---------------------------------------------------------------------------------------------

def test_log_line_has_counts_and_timings_but_no_text_by_default(m2b_demo_client, caplog):
    caplog.set_level(logging.INFO, logger="minicpm_core.api")
    reply = m2b_demo_client.post("/", json={"prompt": "What is the capital of France?", "temperature": 0}).json()
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("minicpm_core.api")]
    assert len(lines) == 1
    for field in ("POST /", "prompt_tokens=", "completion_tokens=", "ttft=", "tokens/s=", "finish=stop", "total="):
        assert field in lines[0]
    assert "France" not in caplog.text and reply["response"] not in caplog.text


def test_log_prompts_adds_the_text(m2b_demo_engine, caplog):
    caplog.set_level(logging.INFO, logger="minicpm_core.api")
    with TestClient(create_app(m2b_demo_engine, log_prompts=True)) as client:
        reply = client.post(CHAT, json={"messages": ask("What is the capital of France?"), "temperature": 0})
    assert "What is the capital of France?" in caplog.text
    assert repr(reply.json()["choices"][0]["message"]["content"]) in caplog.text


# --- concurrency and cancellation ------------------------------------------------------------------------

def test_sixteen_concurrent_streams_each_get_their_own_reply(m2b_demo_server, m2b_demo_engine):
    questions = list(QA)[:16]
    params = {"temperature": 0, "max_new_tokens": 16}
    expected = {q: m2b_demo_engine.chat(ask(q), params)[0] for q in questions}
    assert len(set(expected.values())) == 16
    client = openai_client(m2b_demo_server)
    replies, start = {}, threading.Barrier(len(questions))

    def converse(question):
        start.wait(timeout=60)
        stream = client.chat.completions.create(model="m", messages=ask(question), temperature=0, max_tokens=16,
                                                stream=True)
        replies[question] = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

    threads = [threading.Thread(target=converse, args=(q,)) for q in questions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert replies == expected


def test_client_disconnect_mid_stream_stops_generation(tiny_server, idle_tiny_engine):
    body = {"messages": ask("hello"), "temperature": 0, "max_tokens": 4000, "stream": True}
    with httpx.Client(base_url=tiny_server.url, timeout=30) as client:
        with client.stream("POST", CHAT, json=body) as response:
            contents = 0
            for line in response.iter_lines():
                contents += '"content":">' in line
                if contents == 3:
                    break  # leaving the block closes the connection mid-reply
    wait_until(lambda: idle_tiny_engine.running == 0 and idle_tiny_engine.recent, what="the cancelled reply")
    stats = idle_tiny_engine.recent[-1]
    assert stats.finish_reason == "cancelled" and stats.completion_tokens < 400


def test_client_disconnect_while_waiting_for_a_full_reply_stops_generation(tiny_server, idle_tiny_engine):
    body = json.dumps({"prompt": "hello", "temperature": 0}).encode()
    port = int(tiny_server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        wait_until(lambda: idle_tiny_engine.running == 1, what="the reply to start")
    wait_until(lambda: idle_tiny_engine.running == 0 and idle_tiny_engine.recent, what="the cancelled reply")
    stats = idle_tiny_engine.recent[-1]
    assert stats.finish_reason == "cancelled" and stats.completion_tokens < 400


# --- the command line ------------------------------------------------------------------------------------

def _cli_env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINICPM_")}
    return env | {"PYTHONUNBUFFERED": "1"}


def test_cli_bad_model_path_prints_the_message_and_exits(tmp_path, capsys, monkeypatch):
    for name in [k for k in os.environ if k.startswith("MINICPM_")]:
        monkeypatch.delenv(name)
    missing = tmp_path / "no-such-model"
    assert api_main(["--model", str(missing), "--device", "cpu"]) == 2  # returns: no exception, no traceback
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(missing) in err and "Traceback" not in err


def test_cli_serves_the_seed_endpoint_and_openai_with_a_key(tiny_ckpt):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "minicpm_core.api", "--model", str(tiny_ckpt), "--device", "cpu",
               "--dtype", "float32", "--host", "127.0.0.1", "--port", str(port), "--api-key", "k3y"]
    server = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=_cli_env())
    try:
        for line in server.stderr:  # ends if the server dies
            if "Uvicorn running on" in line:  # logged once the socket listens (startup comes before)
                break
        assert server.poll() is None, "the server exited"
        url = f"http://127.0.0.1:{port}"
        reply = requests.post(url, json={"prompt": "hi", "max_new_tokens": 3, "temperature": 0}, headers={"x-api-key": "k3y"})
        assert reply.status_code == 200 and reply.json()["status"] == 200
        completion = OpenAI(base_url=f"{url}/v1", api_key="k3y", max_retries=0).chat.completions.create(
            model=str(tiny_ckpt), messages=ask("hi"), max_tokens=3, temperature=0)  # greedy: never ends early
        assert completion.usage.completion_tokens == 3
        assert requests.post(url, json={"prompt": "hi"}).status_code == 401
    finally:
        server.terminate()
        server.wait(30)
