"""The sidebar's ranges, presets and defaults follow the loaded model, through AppTest: on MiniCPM5
(the shipped thinking demo, `--demo-family minicpm5`) max_length goes up to its 131,072-token context
and "balanced" is its recommended 1.0 / 0.95; on MiniCPM5-1B (the demo copied into a directory named
as that id) the default temperature follows the think switch. The Compare page thinks as the sidebar's
switch says, each column with its reasoning above its answer. MiniCPM-2B's sidebar is test_app's.
"""

from __future__ import annotations

import shutil

import pytest
from streamlit.testing.v1 import AppTest

from minicpm_core.engine import kv_budget
from minicpm_core.families.minicpm5 import MINICPM5
from test_app import APP, TIMEOUT, checked_presets, engine, greedy, ok
from testkit.minicpm5 import DEMO_MODEL_DIR, demo_qa

QA = {question: (reasoning, answer) for question, reasoning, answer in demo_qa()}
QUESTION = "hello"


@pytest.fixture
def thinking_demo(use_local_model, tmp_path, monkeypatch):
    use_local_model(tmp_path / "unused", tmp_path / "data")
    monkeypatch.setenv("MINICPM_DEMO_FAMILY", "minicpm5")  # implies --demo
    return tmp_path


@pytest.fixture
def one_b(use_local_model, tmp_path):
    """The app on the thinking demo in a directory named as OpenBMB/MiniCPM5-1B's last part."""
    path = tmp_path / "models" / "MiniCPM5-1B"
    shutil.copytree(DEMO_MODEL_DIR, path)
    use_local_model(path, tmp_path / "data")
    return path


def start() -> AppTest:
    return ok(AppTest.from_file(str(APP), default_timeout=TIMEOUT).run())


def sampling(at: AppTest) -> tuple[float, float]:
    return at.sidebar.slider(key="temperature").value, at.sidebar.slider(key="top_p").value


# --- max_length up to the model's context ----------------------------------------------------------

def test_on_minicpm5_max_length_goes_up_to_its_context_from_the_kv_budget_default(thinking_demo):
    at = start()
    slider = at.sidebar.slider(key="max_length")
    assert slider.max == MINICPM5.context_length == 131072
    assert slider.value == kv_budget(engine(at).lm).max_length  # the default the KV cache fits
    slider.set_value(131072).run()
    assert ok(at).sidebar.slider(key="max_length").value == 131072
    at.switch_page("app_pages/compare.py").run()
    assert ok(at).slider(key="b_max_length").max == 131072


# --- presets ---------------------------------------------------------------------------------------

def test_on_minicpm5_balanced_is_its_recommended_values_and_carries_the_check_mark(thinking_demo):
    at = start()
    assert sampling(at) == (1.0, 0.95) and checked_presets(at) == ["balanced"]
    at.sidebar.button(key="preset_precise").click().run()
    assert sampling(ok(at)) == tuple(MINICPM5.presets()["precise"][k] for k in ("temperature", "top_p"))
    assert checked_presets(at) == ["precise"]
    at.sidebar.button(key="preset_balanced").click().run()
    assert sampling(ok(at)) == (1.0, 0.95) and checked_presets(at) == ["balanced"]
    assert at.sidebar.slider(key="repetition_penalty").value == 1.0


# --- MiniCPM5-1B: the temperature default follows the think switch ----------------------------------

def test_on_minicpm5_1b_the_default_temperature_follows_the_think_switch(one_b):
    at = start()
    assert at.sidebar.toggle(key="enable_thinking").value is True
    assert sampling(at) == (0.9, 0.95) and checked_presets(at) == ["balanced"]
    at.sidebar.toggle(key="enable_thinking").set_value(False).run()
    assert sampling(ok(at)) == (0.7, 0.95) and checked_presets(at) == ["balanced"]
    at.sidebar.toggle(key="enable_thinking").set_value(True).run()
    assert sampling(ok(at)) == (0.9, 0.95)


def test_on_minicpm5_1b_a_temperature_the_user_set_stays_when_the_switch_flips(one_b):
    at = start()
    at.sidebar.slider(key="temperature").set_value(0.3).run()
    at.sidebar.toggle(key="enable_thinking").set_value(False).run()
    assert sampling(ok(at)) == (0.3, 0.95) and checked_presets(at) == []
    at.sidebar.button(key="reset_settings").click().run()  # the switch too: back on, and 0.9 with it
    assert ok(at).sidebar.toggle(key="enable_thinking").value is True and sampling(at) == (0.9, 0.95)


# --- compare with thinking -------------------------------------------------------------------------

def compare(at: AppTest, question: str) -> AppTest:
    at.switch_page("app_pages/compare.py").run()
    ok(at).slider(key="b_temperature").set_value(0.0).run()
    at.text_area(key="compare_prompt").input(question).run()
    at.button(key="compare_run").click().run()
    return ok(at)


def columns(at: AppTest) -> tuple:
    return at.main.columns[-2], at.main.columns[-1]


def assert_no_tags(column) -> None:
    for element in column.markdown:
        assert "<think" not in element.value and "</think" not in element.value and "<|im" not in element.value


def test_compare_on_a_thinking_model_shows_each_sides_reasoning_above_its_answer(thinking_demo):
    reasoning, answer = QA[QUESTION]
    at = compare(greedy(start()), QUESTION)
    for column in columns(at):
        [block] = column.status
        assert block.markdown[0].value == reasoning
        assert block.proto.expanded is False and block.label.startswith("Thought for ")
        assert "tokens" in block.label  # the final label: time and token count
        assert column.markdown[-1].value == answer  # below the block
        assert_no_tags(column)
    at.run()  # the next run draws the kept results: the blocks are there again
    for column in columns(ok(at)):
        [block] = column.status
        assert block.markdown[0].value == reasoning and block.proto.expanded is False
        assert column.markdown[-1].value == answer
    assert engine(at).running == 0 and engine(at).queue_depth == 0


def test_compare_with_the_think_switch_off_answers_without_reasoning(thinking_demo):
    _, answer = QA[QUESTION]
    at = greedy(start())
    at.sidebar.toggle(key="enable_thinking").set_value(False).run()
    at = compare(ok(at), QUESTION)
    for column in columns(at):
        assert not column.status
        assert column.markdown[-1].value == answer
        assert_no_tags(column)


def test_compare_says_when_max_length_cut_a_side_inside_its_reasoning(thinking_demo):
    reasoning, answer = QA[QUESTION]
    at = greedy(start())
    at.switch_page("app_pages/compare.py").run()
    ok(at).slider(key="b_max_length").set_value(32).run()  # the prompt takes 16 tokens, the reasoning 26
    at = compare(at, QUESTION)
    left, right = columns(at)
    assert not left.warning and left.markdown[-1].value == answer
    [block] = right.status
    assert reasoning.startswith(block.markdown[0].value) and block.markdown[0].value != reasoning
    assert "max_length" in right.warning[0].value
