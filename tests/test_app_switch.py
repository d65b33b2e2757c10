"""Switching models on the Model page (issue 11.5), through AppTest on real tiny checkpoints of two
families placed where downloads go: `{cache}/OpenBMB/MiniCPM-2B-sft-bf16` holds the MiniCPM-2B demo,
`{cache}/OpenBMB/MiniCPM5-1B` the MiniCPM5 (thinking) demo. The app starts on the first by its id.

Each test has its own cache folder, so its start options (the model slot's key) are its own, and it
closes what it loaded. An AppTest is one browser session; a second AppTest is another one.
"""

from __future__ import annotations

import re
import shutil
import threading
import time

import pytest
from streamlit.testing.v1 import AppTest

from minicpm_core import download
from minicpm_core.engine import kv_budget
from minicpm_core.families import FAMILIES
from minicpm_core.store import ConversationStore, default_db_path
from test_app import APP, TIMEOUT, ask, greedy, ok, stored
from test_app_widget_defaults import SETTINGS_KEYS, assert_drawn_with_their_values
from testkit import checkpoint
from testkit.minicpm5 import DEMO_MODEL_DIR as M5_DEMO, demo_qa
from ui import backend as ui_backend
from ui.markdown_safe import plain_text

TWO_B, FIVE = "OpenBMB/MiniCPM-2B-sft-bf16", "OpenBMB/MiniCPM5-1B"
M5_QA = {question: (reasoning, answer) for question, reasoning, answer in demo_qa()}


def key_of(model: str) -> str:
    return model.replace("/", "_").replace("-", "_").lower()


@pytest.fixture
def models_in_cache(use_local_model, tmp_path, monkeypatch, demo_ckpt):
    """`models_in_cache(first)`: `first` (a checkpoint folder) as TWO_B, the MiniCPM5 demo as FIVE, the app
    on TWO_B; returns the app's model slot."""
    cache = tmp_path / "models"
    options = []

    def place(first):
        shutil.copytree(first, download.default_model_dir(TWO_B, cache))
        shutil.copytree(M5_DEMO, download.default_model_dir(FIVE, cache))
        use_local_model(TWO_B, tmp_path / "data")
        monkeypatch.setenv("MINICPM_CACHE_DIR", str(cache))
        options.append(ui_backend.parse_app_options([]))
        return ui_backend.get_slot(options[0])

    yield place
    for option in options:
        slot = ui_backend.get_slot(option)
        slot.wait(timeout=120).close()
        ui_backend._slot_for.clear(option)


@pytest.fixture
def two_models(models_in_cache, demo_ckpt):
    return models_in_cache(demo_ckpt)


def start() -> AppTest:
    return greedy(ok(AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()))


def model_page(at: AppTest) -> AppTest:
    return ok(at.switch_page("app_pages/model.py").run())


def badges(at: AppTest) -> list[str]:
    """The state badges' labels (st.badge is drawn as Markdown)."""
    inside = [m.value[m.value.index("-badge[") + 7:m.value.rindex("]")] for m in at.markdown if "-badge[" in m.value]
    return [re.sub(r"^:material/\w+: ", "", label) for label in inside]


def test_the_model_page_lists_every_supported_model_with_its_state(two_models):
    at = model_page(start())
    buttons = {b.key: b for b in at.button}
    every = [model.id for family in FAMILIES for model in family.known_models]
    names = [m.value for m in at.markdown]
    for model in every:
        assert f"**{model}**" in names
    assert f"use_{key_of(FIVE)}" in buttons, "downloaded: it can be used"
    assert f"use_{key_of(TWO_B)}" not in buttons and f"download_{key_of(TWO_B)}" not in buttons, "it is loaded"
    for model in set(every) - {TWO_B, FIVE}:
        assert f"download_{key_of(model)}" in buttons, f"{model} is not downloaded: it can be"
    assert "use_minicpm5_demo" in buttons and "use_minicpm_2b_demo" in buttons
    states = badges(at)
    assert (states.count("Loaded"), states.count("Downloaded"), states.count("Built in")) == (1, 1, 2), states


def test_use_this_model_switches_the_server_and_the_next_reply_comes_from_it(two_models):
    first_question, first_answer = checkpoint.DEMO_QA[0]
    at = ask(start(), first_question)
    conv = at.query_params["c"]
    other = ok(AppTest.from_file(str(APP), default_timeout=TIMEOUT).run())  # a second session, open meanwhile

    at = model_page(at)
    at.button(key=f"use_{key_of(FIVE)}").click().run()
    assert two_models.last_switch.finished.wait(120) and two_models.last_switch.state == "done"
    at = ok(at.switch_page("app_pages/chat.py").run())
    assert at.session_state["_backend"].lm.family.name == "minicpm5"
    assert at.sidebar.toggle(key="enable_thinking"), "the new family's own controls"
    max_length = at.sidebar.slider(key="max_length")  # a default left alone follows the new model's
    assert max_length.max == 131072 and max_length.value == kv_budget(at.session_state["_backend"].lm).max_length

    reasoning, answer = M5_QA["hello"]
    at.sidebar.button(key="new_conversation").click().run()
    at = ask(greedy(ok(at)), "hello")  # a new conversation: the MiniCPM5 demo's exact reply
    fresh_conv = at.query_params["c"]
    fresh = stored(fresh_conv).messages[1]
    assert (fresh.meta["reasoning"], fresh.content, fresh.meta["model"]) == (reasoning, answer, FIVE)
    assert any(c.value.startswith(f"{plain_text(FIVE)} · ") for c in at.caption), [c.value for c in at.caption]
    before = stored(conv).messages[1]
    assert (before.content, before.meta["model"]) == (first_answer, TWO_B), "the earlier reply keeps its model"
    at.query_params["c"] = conv
    captions = [c.value for c in ok(at.run()).caption]
    assert any(c.startswith(f"{plain_text(TWO_B)} · ") for c in captions), captions

    ok(other.run())  # the other session's next run: told once, then not again
    [told] = [s.value for s in other.success]
    assert told.startswith(f"The server now runs **{FIVE}** (switched from {TWO_B} at ")
    assert not ok(other.run()).success

    store = ConversationStore(default_db_path())
    try:
        exports = store.export_markdown(conv), store.export_markdown(fresh_conv)
    finally:
        store.close()
    assert f"**MiniCPM** ({TWO_B})" in exports[0] and f"**MiniCPM** ({FIVE})" in exports[1]


def test_after_a_switch_each_widget_is_sent_with_its_kept_value_in_the_new_range(two_models):
    """max_length's range changes (4,096 to 131,072), so Streamlit makes it a new widget: it starts at
    the value the user chose; the think switch appears at the new model's default (see
    test_app_widget_defaults for why a widget's sent default must be its value)."""
    at = start()
    assert_drawn_with_their_values(at, [key for key in SETTINGS_KEYS if key != "enable_thinking"])
    at.sidebar.slider(key="max_length").set_value(3000).run()
    at = model_page(at)
    at.button(key=f"use_{key_of(FIVE)}").click().run()
    assert two_models.last_switch.finished.wait(120) and two_models.last_switch.state == "done"
    at = ok(at.switch_page("app_pages/chat.py").run())
    assert_drawn_with_their_values(at)
    max_length = at.sidebar.slider(key="max_length")
    assert (max_length.value, max_length.max) == (3000, 131072)
    assert at.sidebar.toggle(key="enable_thinking").value is True


def test_a_reply_the_switch_cancels_says_so_in_its_caption(models_in_cache, tiny_ckpt):
    slot = models_in_cache(tiny_ckpt)  # random weights: greedy replies run to max_length, long enough to cut
    slot.drain_s = 0.0
    engine = slot.wait(timeout=120)

    def switch_once_generating() -> None:
        deadline = time.monotonic() + 120
        while not engine.running:
            if time.monotonic() > deadline:
                return  # no switch: the reply is not cancelled, and the asserts below say so
            time.sleep(0.01)
        slot.switch(slot.settings.model_copy(update={"model": FIVE}), FIVE)

    switcher = threading.Thread(target=switch_once_generating, daemon=True)
    switcher.start()
    at = ask(start(), "hello")
    switcher.join(60)
    meta = stored(at.query_params["c"]).messages[1].meta
    assert (meta["finish_reason"], meta["stopped_for"], meta["model"]) == ("cancelled", FIVE, TWO_B)
    assert slot.last_switch.finished.wait(120) and slot.last_switch.state == "done"
    at = ok(at.run())
    assert any(f"stopped: the server switched to {plain_text(FIVE)}" in c.value for c in at.caption), [c.value for c in at.caption]


def test_with_a_password_only_a_logged_in_session_can_switch(two_models, monkeypatch):
    monkeypatch.setenv("MINICPM_PASSWORD", "s3cret")
    at = ok(AppTest.from_file(str(APP), default_timeout=TIMEOUT).run())
    assert not [b for b in at.button if (b.key or "").startswith("use_")], "the login page: nothing to switch"
    at.switch_page("app_pages/model.py").run()
    assert not [b for b in ok(at).button if (b.key or "").startswith("use_")]
    at.text_input(key="password").input("s3cret")
    at.button(key="login_submit").click().run()
    at = model_page(ok(at))
    assert at.button(key=f"use_{key_of(FIVE)}").disabled is False


def test_the_download_button_fetches_a_model_with_progress_and_then_offers_it(two_models, monkeypatch, demo_ckpt):
    target = download.default_model_dir("OpenBMB/MiniCPM-1B-sft-bf16", two_models.settings.cache_dir)

    def fake_download(model, cache_dir):  # ModelScope is out of reach in tests: copy a checkpoint
        shutil.copytree(demo_ckpt, target)
        return target

    monkeypatch.setattr(download, "download_model", fake_download)
    at = model_page(start())
    at.button(key="download_openbmb_minicpm_1b_sft_bf16").click().run()
    assert any("is downloaded: you can use it now" in s.value for s in ok(at).success)
    assert at.button(key="use_openbmb_minicpm_1b_sft_bf16")


def test_a_download_another_session_started_shows_as_under_way(two_models, monkeypatch, demo_ckpt):
    model = "OpenBMB/MiniCPM-2B-dpo-bf16"
    release = threading.Event()

    def slow_download(model_id, cache_dir):
        release.wait(60)
        return download.default_model_dir(model_id, cache_dir)

    monkeypatch.setattr(download, "download_model", slow_download)
    job = download.start_or_follow(model, two_models.settings.cache_dir)  # as another session's click would
    try:
        at = model_page(start())
        assert f"download_{key_of(model)}" not in [b.key for b in at.button], "no second download offered"
        assert "Downloading…" in badges(at)
    finally:
        release.set()
        job.join(60)
