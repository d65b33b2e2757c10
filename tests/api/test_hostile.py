"""The hostile-input corpus, API half: what an attacker sends is refused with a 4xx, and nothing breaks.

One live server on the tiny checkpoint, with an API key, for the whole module. Every case is sent
as raw bytes over its own socket (so headers, lengths and bodies can lie), must be answered with a
4xx within CASE_TIMEOUT (never a 5xx, never a hang), and is followed by a healthy greedy request
that must succeed. The table is built from the fields of both endpoints; the summary line counts it.
"""

from __future__ import annotations

import json
import os
import socket
import threading

import httpx
import pytest

from fastapi.testclient import TestClient

from minicpm_core.api import create_app
from minicpm_core.api.__main__ import exposure_warning
from minicpm_core.api.__main__ import main as api_main
from minicpm_core.api.guard import json_error_http
from minicpm_core.errors import InvalidRequest
from minicpm_core.api.protocol import MAX_BODY_BYTES, MAX_NAME_LENGTH, MAX_STOP_STRINGS
from minicpm_core.prompt import MAX_MESSAGES

from .support import LiveServer, wait_until

KEY = "hostile-k3y"
CHAT, SEED = "/v1/chat/completions", "/"
CASE_TIMEOUT = 60  # seconds: a bound against hangs, far above any answer here
MIN_CASES = 220
ASK = [{"role": "user", "content": "hi"}]
SURROGATES = ["\ud800", "tail \udfff", "\ude00\ud83d reversed pair", "half an emoji \ud83d"]
HUGE = "x" * (7 << 20)  # a 7 MB string: under the body limit, far over any context


@pytest.fixture(scope="module")
def hostile_server(tiny_engine):
    server = LiveServer(create_app(tiny_engine, api_key=KEY, model_name="minicpm-tiny"), http=json_error_http()).start()
    yield server
    server.stop()


# --- building raw requests ---------------------------------------------------------------------------

def raw(method: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes = b"") -> bytes:
    head = b"%s %s HTTP/1.1\r\nHost: test\r\nConnection: close\r\n" % (method.encode(), path.encode())
    return head + b"".join(k + b": " + v + b"\r\n" for k, v in headers) + b"\r\n" + body


def auth() -> list[tuple[bytes, bytes]]:
    return [(b"Authorization", b"Bearer " + KEY.encode())]


def post(path: str, body: bytes, content_type: bytes = b"application/json",
         headers: list[tuple[bytes, bytes]] | None = None) -> bytes:
    headers = (auth() if headers is None else headers) + [(b"Content-Length", b"%d" % len(body))]
    if content_type:
        headers.append((b"Content-Type", content_type))
    return raw("POST", path, headers, body)


def as_json(value) -> bytes:
    return json.dumps(value).encode()  # ensure_ascii: a lone surrogate travels as its \\ud800 escape


def chunked(body: bytes, size: int = 1 << 16, end: bool = True) -> bytes:
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + size]), body[i:i + size]) for i in range(0, len(body), size))
    return chunks + (b"0\r\n\r\n" if end else b"")


# --- the corpus: (name, request bytes) ----------------------------------------------------------------

def body_cases():
    """JSON bodies for both endpoints: each yields (name, path, body bytes)."""
    seed = {"prompt": "hi", "max_new_tokens": 2}
    chat = {"messages": ASK, "max_tokens": 2}
    # lone surrogates in every text field
    seed_fields = {
        "prompt": lambda s: seed | {"prompt": s},
        "history[0] question": lambda s: seed | {"history": [[s, "a"]]},
        "history[0] answer": lambda s: seed | {"history": [["q", s]]},
        "history[0].content": lambda s: seed | {"history": [{"role": "user", "content": s}]},
        "history[0].role": lambda s: seed | {"history": [{"role": s, "content": "x"}]},
        "a key": lambda s: seed | {s: 1},
    }
    chat_fields = {
        "messages[0].content": lambda s: chat | {"messages": [{"role": "user", "content": s}]},
        "messages[0].content streamed": lambda s: chat | {"stream": True, "messages": [{"role": "user", "content": s}]},
        "messages[0].role": lambda s: chat | {"messages": [{"role": s, "content": "x"}]},
        "messages[0].content[0].text": lambda s: chat | {"messages": [{"role": "user", "content": [
            {"type": "text", "text": s}]}]},
        "messages[0].name (ignored field)": lambda s: chat | {"messages": [{"role": "user", "content": "x", "name": s}]},
        "messages[1].content (history)": lambda s: chat | {"messages": [{"role": "assistant", "content": s}] + ASK},
        "model": lambda s: chat | {"model": s},
        "stop": lambda s: chat | {"stop": s},
        "stop[1]": lambda s: chat | {"stop": ["a", s]},
        "user": lambda s: chat | {"user": s},
        "metadata value": lambda s: chat | {"metadata": {"k": s}},
    }
    for path, fields in ((SEED, seed_fields), (CHAT, chat_fields)):
        for field, make in fields.items():
            for s in SURROGATES:
                yield f"surrogate {s!a} in {path} {field}", path, as_json(make(s))
    yield "UTF-8-encoded surrogate bytes in prompt", SEED, b'{"prompt": "\xed\xa0\x80"}'
    yield "UTF-8-encoded surrogate bytes in content", CHAT, b'{"messages": [{"role": "user", "content": "\xed\xb0\x80"}]}'

    # wrong types, field by field
    numeric = ["max_length", "max_new_tokens", "temperature", "top_p", "top_k", "repetition_penalty", "seed"]
    for field in numeric:
        for value in ("0.5", [1], {"v": 1}, True):
            yield f"{SEED} {field}={value!r}", SEED, as_json(seed | {field: value})
    for field in ("max_tokens", "max_completion_tokens", "n", "temperature", "top_p", "top_k", "seed"):
        for value in ("1", [1], False):
            yield f"{CHAT} {field}={value!r}", CHAT, as_json(chat | {field: value})
    for field, values in {
        "prompt": [None, 5, ["hi"], {"text": "hi"}, True],
        "history": ["earlier", {"q": "a"}, 5, [["only a question"]], [["q", 5]], [None], [{"role": "user"}]],
    }.items():
        for value in values:
            yield f"{SEED} {field}={value!r}", SEED, as_json(seed | {field: value})
    for field, values in {
        "messages": [None, "hello", {"role": "user"}, ["hello"], [None], [[]], 5],
        "model": [5, ["m"], {"id": "m"}],
        "stream": ["yes", 1, [True]],
        "stream_options": [True, "x", {"include_usage": "yes"}, {"unknown": 1}],
        "stop": [5, {"s": 1}, [1], [None], ["a", ["b"]], [""]],
        "user": [5, ["u"]],
        "metadata": ["x", [1], {"k": 1}, {"k": {"nested": "v"}}],
        "logit_bias": [[1], "x", {"50256": -100}],
        "tools": [{}, "none", [{"type": "function"}]],
        "tool_choice": ["required", {"type": "function"}],
        "response_format": [{"type": "json_object"}, "text"],
        "frequency_penalty": [0.5, "x"],
        "presence_penalty": [-1.0],
        "logprobs": [True, "yes"],
        "top_logprobs": [5],
    }.items():
        for value in values:
            yield f"{CHAT} {field}={value!r}", CHAT, as_json(chat | {field: value})

    # numbers out of range, too big to be numbers, and JSON's missing NaN/Infinity
    for field, values in {
        "max_tokens": [-1, 0, 4097, 10 ** 9, 2 ** 63, 2 ** 64 + 1, 1.5, 1e400],
        "max_completion_tokens": [0, -2, 5000],
        "temperature": [-0.1, 2.1, 1e308, -1e400, 1e400],
        "top_p": [0, -1, 1.5],
        "top_k": [-1, 1001, 2 ** 64],
        "repetition_penalty": [0, 0.99, 2.5],
        "max_length": [15, 4097, -5, 2 ** 70],
        "seed": [-1, 2 ** 32, 2 ** 64, 0.5],
        "n": [0, 2, -1],
    }.items():
        for value in values:
            yield f"{CHAT} {field}={value!r}", CHAT, as_json(chat | {field: value})
    for field, values in {"max_new_tokens": [0, 4097, -3], "max_length": [0, 10 ** 6], "temperature": [99]}.items():
        for value in values:
            yield f"{SEED} {field}={value!r}", SEED, as_json(seed | {field: value})
    for field in ("temperature", "top_p", "repetition_penalty", "max_tokens", "seed"):
        for constant in ("NaN", "Infinity", "-Infinity"):
            yield f"{CHAT} {field}={constant}", CHAT, b'{"messages": [{"role": "user", "content": "hi"}], "%s": %s}' % (
                field.encode(), constant.encode())
    yield "seed temperature=NaN", SEED, b'{"prompt": "hi", "temperature": NaN}'
    yield "a 5,000-digit number", CHAT, b'{"messages": [], "max_tokens": ' + b"9" * 5000 + b"}"
    yield "a 101-digit seed", SEED, b'{"prompt": "hi", "seed": 1' + b"0" * 100 + b"}"

    # structure: nesting, sizes, shapes, roles
    yield "nesting 100,000 deep", CHAT, b"[" * 100_000 + b"]" * 100_000
    yield "objects nested 50,000 deep in metadata", CHAT, (
        b'{"messages": [], "metadata": ' + b'{"a": ' * 50_000 + b"1" + b"}" * 50_000 + b"}")
    deep = "x"
    for _ in range(200):
        deep = [deep]
    yield "content nested 200 deep", CHAT, as_json(chat | {"messages": [{"role": "user", "content": deep}]})
    yield "history nested 200 deep", SEED, as_json(seed | {"history": deep})
    yield "stop nested 200 deep", CHAT, as_json(chat | {"stop": deep})
    yield f"{MAX_MESSAGES + 1} messages", CHAT, as_json(chat | {"messages": ASK * (MAX_MESSAGES + 1)})
    yield "200,000 empty messages", CHAT, as_json(chat | {"messages": [{}] * 200_000})
    yield "1,000,000 numbers as messages", CHAT, b'{"messages": [' + b"0," * 999_999 + b"0]}"
    yield f"{MAX_MESSAGES} history pairs", SEED, as_json(seed | {"history": [["q", "a"]] * MAX_MESSAGES})
    yield f"{MAX_MESSAGES + 1} history entries", SEED, as_json(seed | {"history": [["q", "a"]] * (MAX_MESSAGES + 1)})
    yield f"{MAX_STOP_STRINGS + 1} stop strings", CHAT, as_json(chat | {"stop": ["s"] * (MAX_STOP_STRINGS + 1)})
    yield "100,000 stop strings", CHAT, as_json(chat | {"stop": ["s"] * 100_000})
    yield "a 101-character stop string", CHAT, as_json(chat | {"stop": "s" * 101})
    yield "10,000 image parts", CHAT, as_json(chat | {"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:,"}}] * 10_000}]})
    for name, messages in {
        "no messages": [], "a system message only": [{"role": "system", "content": "be brief"}],
        "last message from the assistant": ASK + [{"role": "assistant", "content": "hi"}],
        "an empty question": [{"role": "user", "content": ""}],
        "a blank question": [{"role": "user", "content": " \n\t "}],
        "a message without role": [{"content": "hi"}], "a message without content": [{"role": "user"}],
        "content null": [{"role": "user", "content": None}], "content a number": [{"role": "user", "content": 7}],
        "a part without text": [{"role": "user", "content": [{"type": "text"}]}],
        "a part of unknown type": [{"role": "user", "content": [{"type": "audio", "text": "hi"}]}],
        "a part that is a string": [{"role": "user", "content": ["hi"]}],
    }.items():
        yield name, CHAT, as_json(chat | {"messages": messages})
    for role in ("robot", "", "USER", "tool", "function", "user\u0000", " user", "ユーザー", "user" * 1000):
        yield f"role {role[:20]!r}", CHAT, as_json(chat | {"messages": [{"role": role, "content": "hi"}]})
        yield f"history role {role[:20]!r}", SEED, as_json(seed | {"history": [{"role": role, "content": "hi"}]})
    for name, body in {"an empty object": {}, "an array": [1, 2], "a string": "hi", "a number": 5, "null": None,
                       "true": True, "unknown field": chat | {"best_of": 2}, "a typo": chat | {"temprature": 0.3},
                       "a NUL in a field name": chat | {"max_tok\u0000ens": 2}}.items():
        yield f"{name} to {CHAT}", CHAT, as_json(body)
    for name, body in {"an empty object": {}, "an array": [], "a string": "hi", "a typo": seed | {"promt": "hi"},
                       "OpenAI's body": {"messages": ASK}}.items():
        yield f"{name} to {SEED}", SEED, as_json(body)

    # not JSON, or not quite
    for text in (b"", b"{", b"}", b"{]", b"{'prompt': 'hi'}", b'{"prompt": "hi",}', b'{"prompt": "hi"} trailing',
                 b'/* comment */ {"prompt": "hi"}', b'{"prompt": "hi" "x": 1}', b'{"prompt": "h\x00i"}',
                 b'{"prompt": "line\nbreak"}', b'{"prompt": "\xff\xfe"}', b'{"prompt": "\xc0\xaf"}',
                 b'\xef\xbb\xbf{"prompt": ', b"\x00\x00\x00\x00", b'{"prompt": undefined}', b'{prompt: "hi"}',
                 b'{"prompt": "hi\\x41"}', b'{"prompt": "\\ud800"}', b'{"prompt": 0x10}'):
        yield f"not JSON: {text[:30]!r}", SEED, text
    for path, body in ((SEED, as_json(seed | {"temperature": 0})), (CHAT, as_json(chat | {"temperature": 0}))):
        for cut in (1, 5, len(body) // 2, len(body) - 2, len(body) - 1):
            yield f"{path} truncated at byte {cut}", path, body[:cut]
    yield "prompt given twice", SEED, b'{"prompt": "hi", "prompt": "again"}'
    yield "prompt twice, once not a string", SEED, b'{"prompt": 5, "prompt": "hi"}'
    yield "messages given twice", CHAT, b'{"messages": [], "messages": [{"role": "user", "content": "hi"}]}'
    yield "temperature given twice", CHAT, b'{"messages": [{"role": "user", "content": "hi"}], "temperature": 0, ' \
                                           b'"temperature": 0}'
    yield "role given twice in a message", CHAT, b'{"messages": [{"role": "system", "role": "user", "content": "hi"}]}'

    # huge strings in every field
    yield "a 7 MB prompt", SEED, as_json({"prompt": HUGE})
    yield "a 7 MB prompt of Chinese", SEED, json.dumps({"prompt": "山" * ((7 << 20) // 3)}, ensure_ascii=False).encode()
    yield "a 7 MB question", CHAT, as_json({"messages": [{"role": "user", "content": HUGE}]})
    yield "a 7 MB question in parts", CHAT, as_json({"messages": [{"role": "user", "content": [
        {"type": "text", "text": HUGE[:1 << 20]}] * 7}]})
    yield "a 7 MB question after a history", SEED, as_json({"prompt": HUGE, "history": [["q", "a"]] * 100})
    yield "a 7 MB model name", CHAT, as_json(chat | {"model": HUGE})
    yield f"a model name of {MAX_NAME_LENGTH + 1} characters", CHAT, as_json(chat | {"model": "m" * (MAX_NAME_LENGTH + 1)})
    yield "a 7 MB user", CHAT, as_json(chat | {"user": HUGE})
    yield "a 7 MB stop string", CHAT, as_json(chat | {"stop": HUGE})
    yield "a 7 MB metadata value", CHAT, as_json(chat | {"metadata": {"k": HUGE}})
    yield "17 metadata pairs", CHAT, as_json(chat | {"metadata": {f"k{i}": "v" for i in range(17)}})
    yield "a 7 MB role", CHAT, as_json(chat | {"messages": [{"role": HUGE, "content": "hi"}]})
    yield "a 7 MB field name", CHAT, as_json(chat | {HUGE: 1})
    yield "a 7 MB history question", SEED, as_json(seed | {"history": [[HUGE, "a"]], "prompt": HUGE[:100_000]})


def header_cases():
    """Requests whose headers, lengths, methods or framing are the hostile part."""
    body = as_json({"messages": ASK, "max_tokens": 2})
    key = KEY.encode()
    for name, headers in {
        "no key": [], "an empty Authorization": [(b"Authorization", b"")],
        "Bearer without a key": [(b"Authorization", b"Bearer")], "Bearer and a space": [(b"Authorization", b"Bearer ")],
        "Basic scheme": [(b"Authorization", b"Basic " + key)], "Token scheme": [(b"Authorization", b"Token " + key)],
        "the key alone": [(b"Authorization", key)], "a wrong key": [(b"Authorization", b"Bearer nope")],
        "the key plus a byte": [(b"Authorization", b"Bearer " + key + b"x")],
        "a prefix of the key": [(b"Authorization", b"Bearer " + key[:-1])],
        "the key upper-cased": [(b"Authorization", b"Bearer " + key.upper())],
        "a tab after Bearer": [(b"Authorization", b"Bearer\t" + key)],
        "a UTF-8 key": [(b"Authorization", "Bearer 密钥".encode())],
        "a Latin-1 byte in the key": [(b"Authorization", b"Bearer \xe9" + key)],
        "invalid UTF-8 in the key": [(b"Authorization", b"Bearer \xff\xfe")],
        "a 10 KB key": [(b"Authorization", b"Bearer " + b"k" * 10_000)],
        "a 100 KB Authorization": [(b"Authorization", b"Bearer " + b"k" * 100_000)],
        "a NUL in the key": [(b"Authorization", b"Bearer " + key + b"\x00")],
        "a wrong x-api-key": [(b"x-api-key", b"nope")], "an empty x-api-key": [(b"x-api-key", b"")],
        "a non-ASCII x-api-key": [(b"x-api-key", "密钥".encode())],
        "a wrong Bearer beside the right x-api-key": [(b"Authorization", b"Bearer nope"), (b"x-api-key", key)],
        "1,000 headers": [(b"X-Pad-%d" % i, b"v") for i in range(1000)],
    }.items():
        yield f"auth: {name}", post(CHAT, body, headers=headers)
    yield "auth: no key on /", post(SEED, as_json({"prompt": "hi"}), headers=[])
    yield "auth: no key on /v1/models", raw("GET", "/v1/models", [])
    yield "auth: a wrong key on /v1/models/x", raw("GET", "/v1/models/x", [(b"Authorization", b"Bearer no")])

    for name, content_type in {"text/plain": b"text/plain", "a form": b"application/x-www-form-urlencoded",
                               "multipart": b"multipart/form-data; boundary=x", "none": b"",
                               "XML": b"application/xml", "jsonx": b"application/jsonx", "text/json": b"text/json",
                               "garbage": b";;;", "a NUL": b"application/json\x00"}.items():
        yield f"content type {name}", post(CHAT, body, content_type=content_type)

    base = auth() + [(b"Content-Type", b"application/json")]
    yield "Content-Length shorter than the body", raw("POST", CHAT, base + [(b"Content-Length", b"10")], body)
    for value in (b"abc", b"-5", b"+5", b"1e3", b"0x10", b" ", b"%d" % (MAX_BODY_BYTES + 1), b"9" * 40):
        yield f"Content-Length {value[:20]!r}", raw("POST", CHAT, base + [(b"Content-Length", value)])
    yield "two different Content-Lengths", raw("POST", CHAT, base + [(b"Content-Length", b"%d" % len(body)),
                                                                     (b"Content-Length", b"5")], body)
    yield "Content-Length 0", raw("POST", CHAT, base + [(b"Content-Length", b"0")])
    te = base + [(b"Transfer-Encoding", b"chunked")]
    over = b'{"prompt": "' + b"x" * (MAX_BODY_BYTES + 1)
    yield "chunked, over the limit", raw("POST", SEED, te, chunked(over[:MAX_BODY_BYTES + (1 << 16)], end=False))
    yield "chunked, one chunk over the limit", raw("POST", SEED, te, chunked(over, size=len(over), end=False))
    yield "chunked, a bad chunk size", raw("POST", CHAT, te, b"zz\r\n" + body + b"\r\n0\r\n\r\n")
    yield "chunked, invalid JSON", raw("POST", CHAT, te, chunked(b'{"messages": ['))
    yield "chunked and a Content-Length", raw("POST", CHAT, te + [(b"Content-Length", b"5")], chunked(body))
    yield "an unknown Transfer-Encoding", raw("POST", CHAT, base + [(b"Transfer-Encoding", b"gzip")], body)

    yield "GET on chat completions", raw("GET", CHAT, auth())
    yield "PUT on /", post(SEED, body).replace(b"POST", b"PUT", 1)
    yield "DELETE on /health", raw("DELETE", "/health", [])
    yield "POST /v1/completions", post("/v1/completions", body)
    yield "a path 10 KB long", raw("GET", "/" + "a" * 10_000, auth())
    yield "a path with ..", raw("GET", "/../../etc/passwd", auth())
    yield "a path with %00", raw("GET", "/v1/models/%00", auth())
    yield "an unknown model", raw("GET", "/v1/models/gpt-4o", auth())
    yield "garbage instead of HTTP", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 100
    yield "a request line without version", b"POST /\r\n\r\n"
    yield "HTTP/9.9", b"POST / HTTP/9.9\r\nHost: t\r\n\r\n"
    yield "a header without colon", b"POST / HTTP/1.1\r\nHost: t\r\nBroken header\r\n\r\n"
    yield "no Host header", b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n"
    yield "a 100 KB header name", raw("POST", CHAT, auth() + [(b"X" * 100_000, b"v")], body)


def incomplete_bodies():
    """Bodies that end before their framing says, then the client half-closes: nothing to answer."""
    body = as_json({"messages": ASK, "max_tokens": 2})
    base = auth() + [(b"Content-Type", b"application/json")]
    yield "Content-Length longer than the body", raw("POST", CHAT, base + [(b"Content-Length", b"%d" % (len(body) + 50))],
                                                     body)
    yield "chunked, cut short", raw("POST", CHAT, base + [(b"Transfer-Encoding", b"chunked")],
                                    chunked(body, end=False)[:-10])


def corpus() -> list[tuple[str, bytes]]:
    cases = [(name, post(path, body)) for name, path, body in body_cases()]
    return cases + list(header_cases())


# --- sending and checking ------------------------------------------------------------------------------

def exchange(port: int, request: bytes, half_close: bool) -> tuple[int, bytes]:
    """Send raw bytes, read the answer until the server closes; (status, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=CASE_TIMEOUT) as sock:
        try:
            sock.sendall(request)
            if half_close:
                sock.shutdown(socket.SHUT_WR)  # "that is all": the server must not wait for more
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before reading everything: the answer is still there
        received = b""
        while chunk := sock.recv(1 << 16):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/1.1 ") else 0
    return status, body


def problem(status: int, body: bytes, request: bytes) -> str | None:
    """Why this answer is not a proper refusal, or None."""
    if not 400 <= status < 500:
        return f"status {status or 'none'}: {body[:200]!r}"
    if not body.startswith(b"{"):  # uvicorn's own framing errors too (guard.json_error_http)
        return f"not OpenAI's JSON error shape: {body[:200]!r}"
    error = json.loads(body).get("error") or {}
    if not error.get("message"):
        return f"no error message in {body[:200]!r}"
    if request.split(b" ", 2)[1:2] == [b"/"] and json.loads(body).get("status") not in (status, None):
        return "the seed endpoint's body lacks its status"
    return None


def healthy(client: httpx.Client) -> str | None:
    reply = client.post(CHAT, json={"messages": ASK, "max_tokens": 2, "temperature": 0},
                        headers={"Authorization": f"Bearer {KEY}"})
    if reply.status_code != 200 or reply.json()["usage"]["completion_tokens"] != 2:
        return f"the healthy request after it got {reply.status_code}: {reply.text[:200]}"
    return None


def test_corpus_is_large_and_names_are_unique():
    names = [name for name, _ in corpus()]
    assert len(names) >= MIN_CASES and len(set(names)) == len(names)


def test_every_hostile_input_is_refused_with_a_4xx_and_the_server_stays_healthy(hostile_server, tiny_engine):
    port = int(hostile_server.url.rsplit(":", 1)[1])
    cases = corpus()
    failures = []
    with httpx.Client(base_url=hostile_server.url, timeout=CASE_TIMEOUT) as client:
        for name, request in cases:
            try:
                status, body = exchange(port, request, half_close=False)
                why = problem(status, body, request) or healthy(client)
            except (OSError, httpx.HTTPError) as exc:
                why = f"{type(exc).__name__}: {exc}"
            if why:
                failures.append(f"{name}: {why}")
    assert tiny_engine.queue_depth == 0
    assert not failures, f"{len(failures)} of {len(cases)} hostile inputs mishandled:\n" + "\n".join(failures)
    print(f"\nhostile API inputs: {len(cases)}, all refused with 4xx, healthy after each")


@pytest.mark.parametrize("name, request_bytes", list(incomplete_bodies()), ids=lambda v: v if isinstance(v, str) else "")
def test_a_body_cut_short_is_dropped_without_a_hang_and_the_server_stays_healthy(hostile_server, name, request_bytes):
    # The request never completed, so there is nothing to answer; the server closes the connection
    # at once (no reply at all, rather than a 5xx or a wait) and serves the next request.
    port = int(hostile_server.url.rsplit(":", 1)[1])
    status, body = exchange(port, request_bytes, half_close=True)
    assert (status, body) == (0, b"")
    with httpx.Client(base_url=hostile_server.url, timeout=CASE_TIMEOUT) as client:
        assert healthy(client) is None


# --- one behaviour each: what the corpus only counts ---------------------------------------------------

@pytest.fixture(scope="module")
def keyed_client(tiny_engine):
    from fastapi.testclient import TestClient

    with TestClient(create_app(tiny_engine, api_key=KEY), headers={"Authorization": f"Bearer {KEY}"}) as client:
        yield client


@pytest.mark.parametrize("path, body, param", [
    (SEED, {"prompt": "\ud800"}, "prompt"),
    (SEED, {"prompt": "hi", "history": [["q", "a\udfff"]]}, "history[0][1]"),
    (SEED, {"prompt": "hi", "history": [{"role": "user", "content": "\ud800"}]}, "history[0].content"),
    (CHAT, {"messages": [{"role": "user", "content": "\ud800"}]}, "messages[0].content"),
    (CHAT, {"messages": [{"role": "user", "content": "\ud800"}], "stream": True}, "messages[0].content"),
    (CHAT, {"messages": [{"role": "user", "content": [{"type": "text", "text": "\ud800"}]}]},
     "messages[0].content[0].text"),
    (CHAT, {"messages": ASK, "stop": ["ok", "\ud800"]}, "stop[1]"),
    (CHAT, {"messages": ASK, "model": "\ud800"}, "model"),
])
def test_a_lone_surrogate_is_a_400_naming_the_field(keyed_client, path, body, param):
    reply = keyed_client.post(path, content=json.dumps(body), headers={"Content-Type": "application/json"})
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["param"] == param and error["message"].startswith(f"{param} is not valid Unicode text")


@pytest.mark.parametrize("body, words", [
    (b'{"prompt": "hi", "prompt": "again"}', "the key 'prompt' appears twice"),
    (b'{"prompt": "hi", "temperature": NaN}', "NaN is not a JSON number"),
    (b'{"prompt": "hi", "seed": ' + b"1" * 200 + b"}", "a number has 200 digits"),
    (b'{"prompt": "\xff"}', "not UTF-8 text: byte 0xff"),
    (b"[" * 100_000, "nested too deeply"),
])
def test_what_python_json_would_let_through_is_invalid_json(keyed_client, body, words):
    reply = keyed_client.post(SEED, content=body, headers={"Content-Type": "application/json"})
    assert reply.status_code == 400 and "not valid JSON" in reply.json()["error"]["message"]
    assert words in reply.json()["error"]["message"] and "character -1" not in reply.json()["error"]["message"]


def test_a_huge_question_is_refused_by_its_length(keyed_client):
    reply = keyed_client.post(SEED, json={"prompt": HUGE})
    error = reply.json()["error"]
    assert reply.status_code == 400 and error["code"] == "context_length_exceeded"
    assert "at least" in error["message"] and "the limit is 4096 tokens" in error["message"]


def test_health_never_shows_the_local_model_path(tiny_engine, tiny_ckpt):
    from fastapi.testclient import TestClient

    for key in (None, KEY):
        with TestClient(create_app(tiny_engine, api_key=key)) as client:
            health = client.get("/health")
            assert health.status_code == 200 and str(tiny_ckpt) not in health.text
            assert health.json()["model"] == tiny_ckpt.name


@pytest.mark.parametrize("key", ["密钥", "caf\u00e9", "two words", "", "tab\tkey"])
def test_a_key_no_client_can_send_is_refused_at_start(tiny_engine, key):
    with pytest.raises(InvalidRequest, match="API key"):
        create_app(tiny_engine, api_key=key)


def test_cli_refuses_a_non_ascii_key_before_loading_the_model(tmp_path, capsys, monkeypatch):
    for name in [k for k in os.environ if k.startswith("MINICPM_")]:
        monkeypatch.delenv(name)
    assert api_main(["--model", str(tmp_path / "not-loaded"), "--api-key", "密钥"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: The API key contains '密'") and "not-loaded" not in err


def test_a_non_ascii_key_header_is_a_401_not_a_crash(hostile_server):
    port = int(hostile_server.url.rsplit(":", 1)[1])
    request = post(CHAT, as_json({"messages": ASK}), headers=[(b"Authorization", "Bearer 密钥".encode())])
    status, body = exchange(port, request, half_close=False)
    assert status == 401 and json.loads(body)["error"]["message"] == "Incorrect API key."


@pytest.mark.parametrize("host, key, warned", [("0.0.0.0", None, True), ("::", None, True), ("10.0.0.5", None, True),
                                               ("0.0.0.0", "k3y", False), ("127.0.0.1", None, False),
                                               ("localhost", None, False), ("::1", None, False)])
def test_exposure_warning_only_for_an_open_server_on_a_reachable_address(host, key, warned):
    warning = exposure_warning(host, key)
    assert (warning is not None) == warned
    if warned:
        assert warning.startswith(f"warning: the API listens on {host} without an API key") and "ALLOW_OPEN" in warning


def serve_cli(args, monkeypatch, **env):
    """api_main(args) with uvicorn.run caught (no socket opened): the app and uvicorn's arguments."""
    import uvicorn

    for name in [k for k in os.environ if k.startswith("MINICPM_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    served = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: served.append((app, kwargs)))
    assert api_main(args) == 0
    return served[0]


def test_cli_on_all_interfaces_without_a_key_makes_one_prints_it_and_requires_it(tiny_ckpt, capsys, monkeypatch):
    app, kwargs = serve_cli(["--model", str(tiny_ckpt), "--device", "cpu", "--host", "0.0.0.0", "--port", "1"],
                            monkeypatch)
    assert (kwargs["host"], kwargs["port"]) == ("0.0.0.0", 1)
    printed = capsys.readouterr().out
    key = printed.split("Authorization: Bearer ", 1)[1].split()[0]
    assert len(key) >= 32
    with TestClient(app) as client:
        assert client.get("/v1/models").status_code == 401
        assert client.get("/v1/models", headers={"Authorization": f"Bearer {key}"}).status_code == 200


def test_cli_opt_out_or_loopback_serves_without_a_key_and_the_opt_out_warns(tiny_ckpt, capsys, monkeypatch):
    args = ["--model", str(tiny_ckpt), "--device", "cpu", "--port", "1"]
    app, _ = serve_cli([*args, "--host", "0.0.0.0"], monkeypatch, MINICPM_ALLOW_OPEN="1")
    assert capsys.readouterr().err.count("warning: the API listens on 0.0.0.0 without an API key") == 1
    with TestClient(app) as client:
        assert client.get("/v1/models").status_code == 200
    app, _ = serve_cli([*args, "--host", "127.0.0.1"], monkeypatch)
    with TestClient(app) as client:
        assert client.get("/v1/models").status_code == 200
    assert "Bearer" not in capsys.readouterr().out


def test_broken_http_framing_gets_a_json_error_and_the_cli_serves_with_that_protocol(hostile_server, tiny_ckpt,
                                                                                    monkeypatch):
    port = int(hostile_server.url.rsplit(":", 1)[1])
    for garbage in (b"GARBAGE\r\n\r\n", b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
                    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"):
        status, body = exchange(port, garbage, half_close=True)
        assert status == 400 and json.loads(body)["error"]["code"] == "bad_http_framing", garbage
    _, kwargs = serve_cli(["--model", str(tiny_ckpt), "--device", "cpu", "--host", "127.0.0.1", "--port", "1"],
                          monkeypatch)
    assert kwargs["http"].__name__.startswith("JsonError")


@pytest.fixture
def strict_server(tiny_engine):
    """The API with a 1 s body deadline and 3 MB for all unfinished bodies at once."""
    app = create_app(tiny_engine, api_key=KEY, body_timeout_s=1.0, bodies_budget_bytes=3 << 20)
    server = LiveServer(app, http=json_error_http()).start()
    yield server, app.state.bodies
    server.stop()


def stalled_body(port: int, size: int, sent: int) -> socket.socket:
    """A connection that announced `size` bytes of body and sent `sent` of them, then went quiet."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=CASE_TIMEOUT)
    sock.sendall(raw("POST", CHAT, [(b"Authorization", f"Bearer {KEY}".encode()),
                                    (b"Content-Type", b"application/json"),
                                    (b"Content-Length", str(size).encode())]) + b"x" * sent)
    return sock


def answer_of(sock: socket.socket) -> tuple[int, bytes]:
    received = b""
    while chunk := sock.recv(1 << 16):
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def test_a_body_that_does_not_arrive_in_time_gets_a_408(strict_server):
    server, bodies = strict_server
    with stalled_body(int(server.url.rsplit(":", 1)[1]), 1000, 10) as sock:
        status, body = answer_of(sock)  # the deadline answers; the socket's own timeout is far longer
    assert status == 408 and json.loads(body)["error"]["code"] == "request_timeout"
    assert bodies.held == 0


def test_unfinished_bodies_share_a_bounded_budget_given_back_when_they_close(strict_server):
    server, bodies = strict_server
    port = int(server.url.rsplit(":", 1)[1])
    first = stalled_body(port, 2 << 20, 1 << 20)
    second = stalled_body(port, 2 << 20, 1 << 20)
    wait_until(lambda: bodies.held >= 2 << 20, what="both bodies to be counted")
    third = stalled_body(port, 2 << 20, (1 << 20) + 1)  # its last byte passes the 3 MB: all of it read
    status, body = answer_of(third)
    assert status == 503 and json.loads(body)["error"]["code"] == "server_busy"
    first.close()
    second.close()
    third.close()
    wait_until(lambda: bodies.held == 0, what="the closed bodies' budget to come back")
    with httpx.Client(base_url=server.url, timeout=CASE_TIMEOUT) as client:
        assert healthy(client) is None


def test_without_the_key_a_body_is_never_read(strict_server):
    server, bodies = strict_server
    port = int(server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=CASE_TIMEOUT) as sock:
        sock.sendall(raw("POST", CHAT, [(b"Content-Length", str(7 << 20).encode())]) + b"x" * 1000)
        status, _ = answer_of(sock)
    assert status == 401 and bodies.held == 0


def test_a_client_hanging_up_stops_its_prompt_preparation(hostile_server, tiny_engine, monkeypatch):
    started, outcome = threading.Event(), {}
    submit = tiny_engine.submit

    def submit_once_the_client_is_gone(messages, params=None, *, cancelled=None):
        started.set()
        wait_until(cancelled, what="the API to notice the hang-up")  # the encoding would still be running
        try:
            return submit(messages, params, cancelled=cancelled)
        except InvalidRequest as exc:
            outcome["code"] = exc.code
            raise

    monkeypatch.setattr(tiny_engine, "submit", submit_once_the_client_is_gone)
    port = int(hostile_server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=CASE_TIMEOUT) as sock:
        sock.sendall(post(CHAT, as_json({"messages": ASK, "max_tokens": 2})).replace(b"Connection: close", b"X: y"))
        assert started.wait(CASE_TIMEOUT)
    wait_until(lambda: "code" in outcome, what="the preparation to stop")
    assert outcome["code"] == "cancelled" and tiny_engine.queue_depth == 0 and tiny_engine.running == 0
