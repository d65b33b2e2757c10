"""Loading reports the time from its start to ready, and warms the model up once on the way."""

from __future__ import annotations

import threading

from streamlit.testing.v1 import AppTest

from minicpm_core import loader
from minicpm_core.engine import load_engine
from minicpm_core.settings import ModelSettings
from minicpm_core.slot import ModelSlot
from test_app_loading import APP, TIMEOUT, ok


def test_the_load_time_runs_from_start_to_ready(tiny_ckpt):
    release = threading.Event()

    def slow_build(settings: ModelSettings):
        release.wait(10)  # whatever happens before the engine exists (imports, a first CUDA call) counts too
        return load_engine(settings)

    slot = ModelSlot(ModelSettings(model=str(tiny_ckpt), device="cpu", dtype="float32"), slow_build)
    slot.load.begin()
    assert slot.load_seconds is None, "no load time while loading"
    threading.Timer(0.3, release.set).start()
    engine = slot.wait(timeout=60)
    try:
        assert slot.load_seconds >= 0.3
    finally:
        engine.close()


def test_loading_generates_once_before_the_model_is_handed_out(tiny_ckpt, monkeypatch):
    warmed = []
    real = loader.warm_up
    monkeypatch.setattr(loader, "warm_up", lambda model, tok: (warmed.append(model), real(model, tok)))
    lm = loader.load_model(tiny_ckpt, device="cpu", dtype="float32")
    assert warmed == [lm.model]


def test_warm_up_runs_a_real_generation(tiny_ckpt):
    lm = loader.load_model(tiny_ckpt, device="cpu", dtype="float32")
    steps = []
    handle = lm.model.register_forward_hook(lambda *args: steps.append(1))
    try:
        loader.warm_up(lm.model, lm.tokenizer)
    finally:
        handle.remove()
    assert len(steps) == loader.WARM_UP_TOKENS  # a prefill, then one decoding step per further token


def test_the_model_page_shows_the_slots_load_time(use_local_model, tmp_path, demo_ckpt):
    use_local_model(demo_ckpt, tmp_path / "data")
    at = ok(AppTest.from_file(str(APP), default_timeout=TIMEOUT).run())
    ok(at.switch_page("app_pages/model.py").run())
    from ui import backend as ui_backend

    seconds = ui_backend.get_slot(ui_backend.parse_app_options([])).load_seconds
    rows = {row[0]: row[1] for row in at.table[0].value.itertuples(index=False)}
    assert rows["Load time"] == f"{seconds:.1f} s"


def test_a_failed_warm_up_does_not_fail_the_load(tiny_ckpt, monkeypatch, caplog):
    from transformers import GraniteForCausalLM

    def broken(*args, **kwargs):
        raise RuntimeError("no generating today")

    monkeypatch.setattr(GraniteForCausalLM, "generate", broken)
    lm = loader.load_model(tiny_ckpt, device="cpu", dtype="float32")
    assert lm.model is not None and "warming the model up failed" in caplog.text
