"""What a newcomer meets first (issue 19), through AppTest: the heading names the loaded model, the
no-weights page gives the checkpoint's own size and a command that wraps, a switch shows one notice,
and the Chinese interface has no English left in the uploader or the model notes."""

from __future__ import annotations

import threading

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from minicpm_core import catalog
from minicpm_core.families import FAMILIES
from minicpm_core.slot import ModelSlot
from test_app import APP, TIMEOUT, ok
from test_app_switch import model_page
from ui import backend as ui_backend
from ui.i18n import MODEL_NOTES_ZH

FP32 = "OpenBMB/MiniCPM-2B-sft-fp32"
NOTES = [model.note for family in FAMILIES for model in family.known_models if model.note]


def start(language: str = "en") -> AppTest:
    at = ok(AppTest.from_file(str(APP), default_timeout=TIMEOUT).run())
    if language != "en":
        ok(at.sidebar.segmented_control(key="language").set_value(language).run())
    return at


def test_the_heading_names_the_loaded_models_family(use_local_model, tmp_path, monkeypatch):
    use_local_model(tmp_path / "unused", tmp_path / "data")
    monkeypatch.setenv("MINICPM_DEMO_FAMILY", "minicpm5")
    at = start()
    assert at.title[0].value == "MiniCPM5 Chat"
    assert ok(at.sidebar.segmented_control(key="language").set_value("zh").run()).title[0].value == "MiniCPM5 聊天"


def test_the_no_weights_page_gives_the_checkpoints_size_and_wraps_its_command(use_local_model, tmp_path,
                                                                                monkeypatch):
    use_local_model(FP32, tmp_path / "data")
    monkeypatch.setenv("MINICPM_CACHE_DIR", str(tmp_path / "models"))
    at = start()
    intro = " ".join(m.value for m in at.markdown)
    assert "10.9 GB" in intro and "5–11" not in intro
    [command] = [block for block in at.code if "minicpm_core.download" in block.value]
    assert command.proto.wrap_lines, "a long command wraps in its box, not cut off at its edge"
    assert "10.9 GB" in " ".join(m.value for m in ok(start("zh")).markdown)


def test_download_sizes_come_from_the_families():
    assert catalog.download_size_gb(FP32) == 10.9
    assert catalog.download_size_gb("OpenBMB/MiniCPM5-1B") == 2.16
    assert catalog.download_size_gb("someone/unknown-model") is None


def test_every_model_note_has_a_chinese_translation():
    assert NOTES and set(NOTES) <= set(MODEL_NOTES_ZH)


def test_the_chinese_model_page_shows_the_notes_in_chinese(use_local_model, tmp_path, demo_ckpt):
    use_local_model(demo_ckpt, tmp_path / "data")
    captions = " ".join(c.value for c in model_page(start("zh")).caption)
    for note in NOTES:
        assert note not in captions and MODEL_NOTES_ZH[note] in captions


def test_the_chinese_uploader_says_upload_and_its_limit_in_chinese(use_local_model, tmp_path, demo_ckpt):
    use_local_model(demo_ckpt, tmp_path / "data")
    assert not [h for h in start().get("html") if "stFileUploaderDropzone" in h.proto.body], "English: as drawn"
    [css] = [h.proto.body for h in start("zh").get("html") if "stFileUploaderDropzone" in h.proto.body]
    assert '"上传"' in css and '"单个文件不超过 5 MB · JSON"' in css
    assert ".st-key-import_file" in css


@pytest.fixture
def held_switch(use_local_model, tmp_path, monkeypatch):
    """The demo app, whose switches stay under way (and whose pages do not wait for them) until the
    test ends; returns the app's model slot."""
    use_local_model(tmp_path / "unused", tmp_path / "data")
    monkeypatch.setenv("MINICPM_DEMO", "1")
    monkeypatch.setenv("MINICPM_CACHE_DIR", str(tmp_path / "models"))  # start options, so a slot, of its own
    release = threading.Event()
    carry_out, real_wait = ModelSlot._carry_out, ui_backend.PendingBackend.wait

    def held_carry_out(self, *args):
        release.wait(120)
        carry_out(self, *args)

    def wait(self):
        if slot.switching and not release.is_set():
            st.stop()  # what a browser sees while the switch is under way: the page, not yet the new model
        return real_wait(self)

    monkeypatch.setattr(ModelSlot, "_carry_out", held_carry_out)
    monkeypatch.setattr(ui_backend.PendingBackend, "wait", wait)
    options = ui_backend.parse_app_options([])
    slot = ui_backend.get_slot(options)
    yield slot
    release.set()
    if slot.last_switch is not None:
        slot.last_switch.finished.wait(120)
    slot.wait(timeout=120).close()
    ui_backend._slot_for.clear(options)


def test_a_switch_under_way_shows_one_notice(held_switch):
    at = model_page(start())
    ok(at.button(key="use_minicpm5_demo").click().run())
    assert held_switch.switching
    notices = [e.value for e in (*at.info, *at.success, *at.warning) if "minicpm5-demo" in e.value]
    assert len(notices) == 1, notices
    assert notices[0].startswith("The server is switching from minicpm-2b-demo to minicpm5-demo")
