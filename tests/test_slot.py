"""Switching the served model (minicpm_core/slot.py and Engine.retire), on real tiny checkpoints of two
families: what is loaded afterwards, what happens to replies under way, memory, failures, refusals."""

from __future__ import annotations

import threading

import pytest

from minicpm_core.engine import load_engine
from minicpm_core.errors import InvalidRequest, ModelSwitching
from minicpm_core.settings import ModelSettings
from minicpm_core.slot import ModelSlot

QUESTION = [{"role": "user", "content": "hello"}]
LONG = {"temperature": 0.0, "max_new_tokens": 2000, "max_length": 4096}  # random weights: never ends by itself


def settings(path) -> ModelSettings:
    return ModelSettings(model=str(path), device="cpu", dtype="float32")


class CountingBuild:
    """load_engine, counting which models were built."""

    def __init__(self):
        self.built: list[str] = []

    def __call__(self, model_settings: ModelSettings):
        self.built.append(model_settings.model)
        return load_engine(model_settings)


@pytest.fixture
def build():
    return CountingBuild()


def switched(slot: ModelSlot, target, name: str = "target"):
    record = slot.switch(settings(target), name)
    assert record.finished.wait(120), "the switch did not end"
    return record, slot.wait(timeout=120)


def test_a_switch_loads_the_other_family_and_frees_the_first(build, tiny_ckpt, m5_ckpt):
    slot = ModelSlot(settings(tiny_ckpt), build)
    first = slot.wait(timeout=120)
    assert first.lm.family.name == "minicpm-2b"
    record, second = switched(slot, m5_ckpt, "MiniCPM5 tiny")
    assert (record.number, record.state, record.source, record.target) == (1, "done", tiny_ckpt.name, "MiniCPM5 tiny")
    assert second.lm.family.name == "minicpm5" and second is not first
    reply = second.submit(QUESTION, {"temperature": 0.0, "max_new_tokens": 3})
    reply.result()
    assert reply.stats.completion_tokens == 3 and reply.stats.finish_reason == "length"
    assert all(p.is_meta for p in first.model.parameters()), "the first model's weights hold no memory"
    assert len(first.prefix_cache) == 0
    with pytest.raises(ModelSwitching, match="switching to MiniCPM5 tiny"):
        first.submit(QUESTION)  # a page still holding the old engine gets a message, not a crash
    second.close()


def test_a_reply_under_way_finishes_within_the_drain_time(build, tiny_ckpt, m5_ckpt):
    slot = ModelSlot(settings(tiny_ckpt), build, drain_s=60)
    reply = slot.wait(timeout=120).submit(QUESTION, {"temperature": 0.0, "max_new_tokens": 5})
    record, second = switched(slot, m5_ckpt)
    assert reply.stats.finish_reason == "length" and reply.stopped_for is None
    assert reply.stats.completion_tokens == 5
    second.close()


def test_replies_longer_than_the_drain_time_are_cancelled_naming_the_new_model(build, tiny_ckpt, m5_ckpt):
    slot = ModelSlot(settings(tiny_ckpt), build, drain_s=0.0)
    engine = slot.wait(timeout=120)
    running = engine.submit(QUESTION, LONG)
    waiting = engine.submit(QUESTION, LONG)  # one worker: this one is still queued
    record, second = switched(slot, m5_ckpt, "the new one")
    for reply in (running, waiting):
        assert reply.wait(30) and reply.stats.finish_reason == "cancelled"
        assert reply.stopped_for == "the new one"
    second.close()


def test_a_failed_switch_puts_the_previous_model_back(build, tiny_ckpt, tmp_path):
    slot = ModelSlot(settings(tiny_ckpt), build)
    slot.wait(timeout=120)
    missing = tmp_path / "not-a-model"
    record, back = switched(slot, missing)
    assert record.state == "failed" and "not-a-model" in record.error
    assert str(tmp_path) not in record.error  # every session sees it: the model's name, never its path
    assert slot.settings == settings(tiny_ckpt) and back.lm.family.name == "minicpm-2b"
    assert "".join(back.submit(QUESTION, {"temperature": 0.0, "max_new_tokens": 3}))
    assert build.built == [str(tiny_ckpt), str(missing), str(tiny_ckpt)]
    back.close()


def test_a_switch_is_refused_while_one_is_under_way_and_for_the_loaded_model(build, tiny_ckpt, m5_ckpt):
    slot = ModelSlot(settings(tiny_ckpt), build)
    engine = slot.wait(timeout=120)
    with pytest.raises(InvalidRequest, match="is the model loaded now"):
        slot.switch(settings(tiny_ckpt), "same")
    hold = engine.submit(QUESTION, LONG)  # keeps the switch draining until it is cancelled
    slot.drain_s = 600
    slot.switch(settings(m5_ckpt), "first")
    with pytest.raises(InvalidRequest, match="already switching to first"):
        slot.switch(settings(tiny_ckpt), "second")
    hold.cancel()
    assert slot.last_switch.finished.wait(120) and slot.last_switch.state == "done"
    slot.wait(timeout=120).close()


def test_a_switch_before_the_first_load_began_loads_only_the_new_model(build, tiny_ckpt, m5_ckpt):
    slot = ModelSlot(settings(tiny_ckpt), build)
    stale = slot.load
    record, engine = switched(slot, m5_ckpt)
    stale.begin()  # a caller that still held the old load: it never starts now
    assert build.built == [str(m5_ckpt)] and record.state == "done"
    engine.close()


def test_waiters_end_with_the_current_model_whatever_replaced_their_load(build, tiny_ckpt, m5_ckpt):
    slot = ModelSlot(settings(tiny_ckpt), build)
    slot.wait(timeout=120)
    got = {}
    slot.switch(settings(m5_ckpt), "new")
    waiter = threading.Thread(target=lambda: got.setdefault("backend", slot.wait(timeout=120)))
    waiter.start()
    waiter.join(150)
    assert got["backend"].lm.family.name == "minicpm5"
    got["backend"].close()
