"""The remote backend against a strict third-party server: a live `transformers serve`.

`transformers serve` answers 422 "Unexpected fields in the request" to any field outside the OpenAI
schema, so it shows whether the app sends only what a server accepts. It hosts the demo model, saved
as the native Granite checkpoint our loader builds from it (`save_pretrained`: no downloads, no
remote code), so greedy replies are the known DEMO_QA answers. The one change to the checkpoint:
its chat template starts with `{{ bos_token }}`, because transformers serve tokenizes the rendered
template without adding special tokens, while our tokenizer (and the model's training) has BOS.

The server runs in a subprocess on 127.0.0.1 at a free port, with an empty Hugging Face cache and
offline, and is killed at the end. Without the serving extras these tests skip, saying how to
install them; in CI (CI=true) they fail instead, so they never silently stop running.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from streamlit.testing.v1 import AppTest

from api.support import ask  # tests/api
from minicpm_core import remote
from minicpm_core.loader import load_model
from minicpm_core.params import GenerationParams
from minicpm_core.remote import RemoteBackend
from testkit import checkpoint
from ui.i18n import EN, ZH

APP = Path(__file__).resolve().parent.parent / "chat_app.py"
STARTUP_LIMIT = 180.0  # seconds; only a guard against a server that never comes up
GREEDY = {"temperature": 0.0}
STORY = "Tell me a story."  # a DEMO_QA question with a long answer: room to stop mid-reply
# What a server of unknown kind is not sent: every field that is not a standard OpenAI one.
NOT_SENT = tuple(name for name in GenerationParams.model_fields if name not in remote.STANDARD_FIELDS)


def serving_missing() -> str | None:
    """Why `transformers serve` cannot run here, or None."""
    try:
        from transformers.utils.import_utils import is_serve_available
    except ImportError as exc:
        return f"transformers cannot be imported ({exc})"
    if not is_serve_available():
        return "transformers serve needs its extras: pip install -r requirements-dev.txt"
    return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def answer_to(question: str) -> str:
    return dict(checkpoint.DEMO_QA)[question]


@pytest.fixture(scope="module")
def serving() -> None:
    """Skip without the serving extras (saying how to install them); in CI, fail."""
    missing = serving_missing()
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the transformers serve tests, but {missing}.")
        pytest.skip(missing)


@pytest.fixture(scope="module")
def served_checkpoint(serving, demo_ckpt, tmp_path_factory) -> Path:
    """The demo model as a native Granite checkpoint, which transformers serve loads by path."""
    out = tmp_path_factory.mktemp("granite_demo")
    lm = load_model(demo_ckpt, device="cpu", dtype="float32")
    lm.model.save_pretrained(out)
    lm.tokenizer.chat_template = "{{ bos_token }}" + checkpoint.CHAT_TEMPLATE
    lm.tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def server(served_checkpoint, tmp_path_factory):
    """`transformers serve CHECKPOINT` on a free port; yields its /v1 base URL."""
    home = tmp_path_factory.mktemp("hf_home")
    (home / "hub").mkdir()  # an empty cache: /v1/models lists nothing of the user's
    env = os.environ | {"HF_HOME": str(home), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    port = free_port()
    log = (home / "serve.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "transformers.cli.transformers", "serve", str(served_checkpoint),
         "--host", "127.0.0.1", "--port", str(port), "--device", "cpu", "--dtype", "float32"],
        stdout=log, stderr=subprocess.STDOUT, env=env)
    root = f"http://127.0.0.1:{port}"
    try:
        wait_for_health(root, process, home / "serve.log")
        yield f"{root}/v1"
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)
        log.close()


def wait_for_health(root: str, process: subprocess.Popen, log: Path) -> None:
    """Until GET /health answers 200 (the model is loaded before uvicorn starts listening)."""
    deadline = time.monotonic() + STARTUP_LIMIT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"transformers serve exited ({process.returncode}):\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{root}/health", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"transformers serve did not answer /health:\n{log.read_text()[-3000:]}")


@pytest.fixture
def backend(server, served_checkpoint):
    # The model by name: transformers serve before 5.24 (Python 3.10's) lists no local model.
    backend = RemoteBackend(server, model=str(served_checkpoint))
    yield backend
    backend.close()


def test_streamed_reply_with_only_the_fields_the_server_accepts(backend):
    question, answer = checkpoint.DEMO_QA[1]
    assert backend.ignored_controls == NOT_SENT  # an unknown kind of server: standard fields only
    generation = backend.submit(ask(question), GREEDY)
    deltas = list(generation)
    assert len(deltas) > 1 and "".join(deltas) == generation.text == answer
    assert generation.stats.finish_reason == "stop" and generation.stats.completion_tokens > 1
    assert backend.ignored_controls == NOT_SENT  # nothing was refused


def test_stop_mid_reply_closes_the_stream_and_the_server_answers_the_next_question(backend):
    generation = backend.submit(ask(STORY), GREEDY)
    for count, _ in enumerate(generation, 1):
        if count == 3:
            generation.cancel()
    assert generation.done and generation.stats.finish_reason == "cancelled"
    assert generation.text and answer_to(STORY).startswith(generation.text) and generation.text != answer_to(STORY)
    question, answer = checkpoint.DEMO_QA[0]
    assert backend.chat(ask(question), GREEDY)[0] == answer


def test_a_refused_field_is_dropped_once_and_remembered(backend, monkeypatch, caplog):
    # A server taken for one that honours every extra: transformers serve refuses them with a 422.
    monkeypatch.setattr(RemoteBackend, "_honoured_extras", lambda self: frozenset(remote.EXTRA_FIELDS))
    assert backend.ignored_controls == ()
    question, answer = checkpoint.DEMO_QA[1]
    with caplog.at_level("WARNING", logger="minicpm_core.remote"):
        assert backend.chat(ask(question), GREEDY)[0] == answer
        assert backend.ignored_controls == ("repetition_penalty",)
        assert backend.chat(ask(question), GREEDY)[0] == answer  # left out from the start now
        assert backend.chat(ask(question), GREEDY | {"top_k": 5})[0] == answer  # a new field: learnt too
    assert backend.ignored_controls == ("top_k", "repetition_penalty")
    refusals = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == 2 and "repetition_penalty" in refusals[0] and "top_k" in refusals[1]


def test_the_app_chats_shows_the_ignored_controls_and_the_model_page(server, served_checkpoint, monkeypatch,
                                                                        tmp_path):
    monkeypatch.setenv("MINICPM_BACKEND", "openai")
    monkeypatch.setenv("MINICPM_BASE_URL", server)
    monkeypatch.setenv("MINICPM_REMOTE_MODEL", str(served_checkpoint))
    monkeypatch.setenv("MINICPM_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("MINICPM_PASSWORD", raising=False)
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    captions = [c.value for c in at.sidebar.caption]
    assert ignored_note(EN) in captions
    at.sidebar.slider(key="temperature").set_value(0.0).run()
    question, answer = checkpoint.DEMO_QA[1]
    at.chat_input(key="chat_input").set_value(question).run()
    assert not at.exception
    assert [(m.name, m.markdown[0].value) for m in at.chat_message] == [("user", question), ("assistant", answer)]
    at.switch_page("app_pages/model.py").run()
    table = at.table[0].value.to_string()
    assert not at.exception and server in table and str(served_checkpoint) in table
    assert EN["info_ignored_controls"] in table and ", ".join(NOT_SENT) in table
    at.sidebar.segmented_control(key="language").set_value("zh").run()
    assert not at.exception and ignored_note(ZH) in [c.value for c in at.sidebar.caption]


def ignored_note(strings: dict[str, str]) -> str:
    """The sidebar's caption for NOT_SENT in one language (top_k has no sidebar control)."""
    labels = ", ".join(strings[f"param_{name}"] for name in NOT_SENT if f"param_{name}" in strings)
    return strings["server_ignores"].format(controls=labels)
