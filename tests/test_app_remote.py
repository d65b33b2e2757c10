"""The app with `--backend openai`: the same pages driving this project's own API server, live."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from api.support import LiveServer  # tests/api: uvicorn in a thread
from minicpm_core.api import create_app
from minicpm_core.engine import Engine
from minicpm_core.loader import load_model
from minicpm_core.store import ConversationStore, default_db_path
from testkit import checkpoint
from ui.i18n import EN

APP = Path(__file__).resolve().parent.parent / "chat_app.py"


@pytest.fixture(scope="module")
def server(demo_ckpt):
    engine = Engine(load_model(demo_ckpt, device="cpu", dtype="float32"))
    live = LiveServer(create_app(engine, model_name="minicpm-demo")).start()
    yield live
    live.stop()
    engine.close()


def test_chat_through_an_openai_compatible_server(server, monkeypatch, tmp_path):
    monkeypatch.setenv("MINICPM_BACKEND", "openai")
    monkeypatch.setenv("MINICPM_BASE_URL", f"{server.url}/v1")
    monkeypatch.setenv("MINICPM_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("MINICPM_PASSWORD", raising=False)
    question, answer = checkpoint.DEMO_QA[1]
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not [c for c in at.sidebar.caption if c.value.startswith(EN["server_ignores"].split("{")[0])]
    at.sidebar.slider(key="temperature").set_value(0.0).run()
    at.chat_input(key="chat_input").set_value(question).run()
    assert not at.exception
    assert [(m.name, m.markdown[0].value) for m in at.chat_message] == [("user", question), ("assistant", answer)]
    store = ConversationStore(default_db_path())
    reply = store.get(at.query_params["c"]).messages[-1]
    store.close()
    assert reply.content == answer and reply.meta["finish_reason"] == "stop" and reply.meta["completion_tokens"] > 0
    assert reply.meta["model"] == "minicpm-demo"  # what the server calls its model
    at.switch_page("app_pages/model.py").run()
    table = at.table[0].value.to_string()
    assert not at.exception and server.url in table and "minicpm-demo" in table
    assert not [b for b in at.button if (b.key or "").startswith(("use_", "download_"))], "the server chooses"
    assert any(c.value.startswith("This app uses the model server at") for c in at.caption)
