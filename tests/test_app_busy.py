"""The chat page when the engine's queue is full: a clear notice, the question kept, Regenerate retries.

The engine gets one slot and no queue (MINICPM_MAX_QUEUE=0); a reply held at its first step
occupies the slot, so the page's question is refused exactly as it would be on a busy server.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from transformers import LogitsProcessor, LogitsProcessorList

from minicpm_core.store import ConversationStore, default_db_path

APP = Path(__file__).resolve().parent.parent / "chat_app.py"
TIMEOUT = 60


class HoldUntil(LogitsProcessor):
    """Keeps the reply it belongs to at its first step until `release` is set."""

    def __init__(self, started: threading.Event, release: threading.Event):
        self.started, self.release = started, release

    def __call__(self, input_ids, scores):
        self.started.set()
        self.release.wait(30)
        return scores


@pytest.fixture
def busy_app(monkeypatch, use_local_model, tmp_path, demo_ckpt):
    use_local_model(demo_ckpt, tmp_path / "data")
    monkeypatch.setenv("MINICPM_MAX_QUEUE", "0")
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    assert not at.exception
    return at


def occupy_the_only_slot(engine, monkeypatch):
    """Start a reply that holds the engine's only slot; return (release event, its generation)."""
    started, release = threading.Event(), threading.Event()
    original = engine._generate_kwargs

    def held(generation, cache):
        kwargs = original(generation, cache)
        kwargs["logits_processor"] = LogitsProcessorList([HoldUntil(started, release)])
        return kwargs

    monkeypatch.setattr(engine, "_generate_kwargs", held)
    held_reply = engine.submit([{"role": "user", "content": "hello"}], {"temperature": 0, "max_new_tokens": 2})
    assert started.wait(30)
    monkeypatch.setattr(engine, "_generate_kwargs", original)
    return release, held_reply


@pytest.mark.parametrize("language, headline", [("en", "The model is busy"), ("zh", "模型正忙")])
def test_a_full_queue_shows_a_notice_and_keeps_the_question(busy_app, monkeypatch, language, headline):
    at = busy_app
    at.sidebar.segmented_control(key="language").set_value(language).run()
    engine = at.session_state["_backend"]
    assert engine.max_queue == 0
    release, held_reply = occupy_the_only_slot(engine, monkeypatch)
    try:
        at.chat_input(key="chat_input").set_value("hello").run()
        assert not at.exception
        notice = at.warning[0].value
        assert headline in notice and str(engine.retry_after()) in notice
        assert "Traceback" not in notice
        assert [m.name for m in at.chat_message] == ["user"]  # the question stays on the page
        assert at.button(key="regenerate")  # with the button that asks it again
        store = ConversationStore(default_db_path())
        try:
            assert [(m.role, m.content) for m in store.get(at.query_params["c"]).messages] == [("user", "hello")]
        finally:
            store.close()
    finally:
        release.set()
    assert held_reply.wait(30)  # the slot is free again: Regenerate asks the kept question anew
    at.button(key="regenerate").click().run()
    assert not at.exception and not at.error
    assert [m.name for m in at.chat_message] == ["user", "assistant"]
