"""A full queue over HTTP: 429 with Retry-After on every chat endpoint, then service resumes."""

from __future__ import annotations

import openai
import pytest
from fastapi.testclient import TestClient
from openai import OpenAI

from minicpm_core.api import create_app
from minicpm_core.engine import Engine
from minicpm_core.errors import QueueFull
from minicpm_core.loader import load_model
from minicpm_core.remote import RemoteBackend

from .support import LiveServer, ask

CHAT = "/v1/chat/completions"
LONG = {"temperature": 0, "max_new_tokens": 2000}  # greedy on random weights: never ends on its own


@pytest.fixture(scope="module")
def busy_engine(tiny_ckpt):
    """One slot and no queue: while one reply generates, every other request is refused."""
    engine = Engine(load_model(tiny_ckpt, device="cpu", dtype="float32"), max_queue=0)
    yield engine
    engine.close()


def occupy(engine):
    generation = engine.submit(ask("hello"), LONG)
    with generation._cond:
        assert generation._cond.wait_for(lambda: generation._token_ids or generation.done, timeout=120)
    return generation


def assert_busy(reply):
    assert reply.status_code == 429
    retry_after = int(reply.headers["Retry-After"])
    error = reply.json()["error"]
    assert error["code"] == "queue_full" and error["type"] == "rate_limit_error"
    assert f"Try again in about {retry_after} seconds" in error["message"]
    return reply.json()


def test_a_full_queue_is_429_with_retry_after(busy_engine):
    with TestClient(create_app(busy_engine)) as client:
        blocker = occupy(busy_engine)
        assert assert_busy(client.post("/", json={"prompt": "hi"}))["status"] == 429  # the seed's clients read it
        assert_busy(client.post(CHAT, json={"messages": ask("hi")}))
        assert_busy(client.post(CHAT, json={"messages": ask("hi"), "stream": True}))
        blocker.cancel()
        assert blocker.wait(10)
        served = client.post("/", json={"prompt": "hi", "temperature": 0, "max_new_tokens": 3})
        assert served.status_code == 200 and served.json()["status"] == 200


def test_openai_client_and_remote_backend_see_the_server_busy(busy_engine):
    server = LiveServer(create_app(busy_engine)).start()
    try:
        client = OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
        blocker = occupy(busy_engine)
        with pytest.raises(openai.RateLimitError, match="queue is full"):
            client.chat.completions.create(model="m", messages=ask("hi"), stream=True)
        with pytest.raises(QueueFull, match=r"is busy \(429\)") as busy:  # the app's remote backend
            RemoteBackend(f"{server.url}/v1").submit(ask("hi"), {"temperature": 0}).result()
        assert busy.value.retry_after == busy_engine.retry_after()
        blocker.cancel()
        assert blocker.wait(10)
    finally:
        server.stop()
