"""The first page is drawn while the model loads (issue 8.8): AppTest on a checkpoint of its own.

Every test here uses its own copy of the demo checkpoint, so its options (the st.cache_resource key)
are new to this process and the load really starts from nothing. The load is held back at its first
wait (`PendingBackend.wait` ends the run with st.stop() while `hold` is set), which is exactly what a
browser sees while the model loads; then the real wait loads the real checkpoint.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from testkit import checkpoint
from ui import backend as ui_backend

APP = Path(__file__).resolve().parent.parent / "chat_app.py"
TIMEOUT = 60  # seconds per script run; a run that loads the model imports torch first


@pytest.fixture
def held_load(monkeypatch, use_local_model, tmp_path, demo_ckpt):
    """The app on a fresh copy of the demo checkpoint, its load held until `state["hold"]` is False."""
    model = tmp_path / "model"
    shutil.copytree(demo_ckpt, model)
    use_local_model(model, tmp_path / "data")
    state = {"hold": True, "held_runs": 0}
    real_wait = ui_backend.PendingBackend.wait

    def wait(self):
        if state["hold"]:
            state["held_runs"] += 1
            st.stop()
        return real_wait(self)

    monkeypatch.setattr(ui_backend.PendingBackend, "wait", wait)
    options = ui_backend.parse_app_options([])
    state["load"] = lambda: ui_backend.get_slot(options).load
    yield state
    ui_backend._slot_for.clear(options)


def ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    return at


def loading_notice_shown(at: AppTest) -> bool:
    return any(info.value.startswith("Loading the model") for info in at.info)


def test_the_page_is_drawn_before_the_model_is_loaded(held_load):
    at = ok(AppTest.from_file(str(APP), default_timeout=TIMEOUT).run())
    assert held_load["held_runs"] == 1, "the run reached the end of the page and then waited for the model"
    assert held_load["load"]().started is None, "nothing of the model was needed to draw the page"
    assert loading_notice_shown(at)
    assert at.chat_input, "a question can be typed while the model loads"
    assert [b for b in at.button if (b.key or "").startswith("example_")], "the welcome's examples are there"
    assert at.sidebar.slider, "the sidebar's settings are there"


def test_a_question_asked_while_the_model_loads_is_answered_once_it_is_loaded(held_load):
    question, answer = checkpoint.DEMO_QA[0]
    at = ok(AppTest.from_file(str(APP), default_timeout=TIMEOUT).run())
    ok(at.sidebar.slider(key="temperature").set_value(0.0).run())  # greedy: the demo's exact answer
    assert loading_notice_shown(at) and held_load["load"]().started is None
    held_load["hold"] = False
    ok(at.chat_input[0].set_value(question).run())
    assert held_load["load"]().done.is_set()
    assert not loading_notice_shown(at), "the run after the load draws the loaded page"
    messages = [(m.name, m.markdown[0].value) for m in at.chat_message]
    assert messages == [("user", question), ("assistant", answer)]


def test_a_failed_load_shows_the_setup_page_and_is_tried_again(held_load, monkeypatch, tmp_path):
    missing = tmp_path / "no-model-here"
    monkeypatch.setenv("MINICPM_MODEL", str(missing))
    options = ui_backend.parse_app_options([])
    held_load["hold"] = False
    try:
        at = ok(AppTest.from_file(str(APP), default_timeout=TIMEOUT).run())
        assert str(missing) in " ".join(e.value for e in at.error), "the missing model page names the folder"
        assert not at.chat_input
        assert not ui_backend.get_slot(options).load.done.is_set(), "the failure was not kept: a rerun loads anew"
        ok(at.run())
        assert str(missing) in " ".join(e.value for e in at.error), "every run shows it, not a chat page first"
        assert not at.chat_input and not loading_notice_shown(at)
    finally:
        ui_backend._slot_for.clear(options)
