"""The shipped demo (`--demo`) answers every question readably, in the question's language, through the
real engine: what it knows with its trained answer, anything else with its "I am only a tiny demo" answer,
greedy and sampled at the app's defaults (temperature 0.5, top_p 0.8, repetition_penalty 1.02)."""

from __future__ import annotations

import pytest

from minicpm_core import demo
from minicpm_core.engine import Engine
from minicpm_core.errors import InvalidRequest
from minicpm_core.loader import load_model
from minicpm_core.params import GenerationParams
from minicpm_core.paths import DEMO_MODEL_DIR
from testkit.checkpoint import DEMO_QA

QA = dict(DEMO_QA)
FALLBACK = {"en": QA["What do you know?"], "zh": QA["你会什么？"]}
README_QUESTION = "Which mountain is the highest in Shandong Province?"  # README's curl example
UNKNOWN = [("What is the tallest building in the world?", "en"), ("Why?", "en"), ("12345", "en"),
           ("😀", "en"), ("Explain quantum computing in detail, please.", "en"), ("长城有多长？", "zh"),
           ("为什么？", "zh"), ("给我讲讲历史", "zh"), ("Translate 你好 into English", "zh")]
SAMPLED = [GenerationParams(seed=seed) for seed in (1, 2, 3)]  # the app's defaults, each its own draw
GREEDY = GenerationParams(temperature=0.0)


@pytest.fixture(scope="module")
def engine():
    engine = Engine(load_model(DEMO_MODEL_DIR, device="cpu", dtype="float32", demo=True))
    yield engine
    engine.close()


def ask(engine, question, params=GREEDY, history=()):
    return engine.submit([*history, {"role": "user", "content": question}], params).result()


def test_app_defaults_are_what_the_demo_is_checked_with():
    params = GenerationParams()
    assert (params.temperature, params.top_p, params.repetition_penalty) == (0.5, 0.8, 1.02)


def test_readme_question_gets_the_tutorials_answer(engine):
    assert "Mount Tai" in ask(engine, README_QUESTION)


@pytest.mark.parametrize("params", [GREEDY, *SAMPLED], ids=lambda p: f"seed{p.seed}" if p.seed else "greedy")
def test_every_known_question_gets_its_answer(engine, params):
    for question, answer in DEMO_QA:
        assert ask(engine, question, params) == answer, question


@pytest.mark.parametrize("question, language", UNKNOWN)
def test_unknown_question_gets_the_tiny_demo_answer_in_its_language(engine, question, language):
    for params in (GREEDY, *SAMPLED):
        assert ask(engine, question, params) == FALLBACK[language]


def test_the_tiny_demo_answer_lists_what_it_knows():
    assert "tiny demo" in FALLBACK["en"] and "Mount Tai" not in FALLBACK["en"]
    assert "Shandong" in FALLBACK["en"] and "python -m minicpm_core.download" in FALLBACK["en"]
    assert "演示模型" in FALLBACK["zh"] and "山东省最高的山" in FALLBACK["zh"]


@pytest.mark.parametrize("question, known", [("Hello!", "hello"), ("  WHAT IS 2+3 ", "What is 2+3?"),
                                             ("你好！", "你好"), ("thank you", "Thank you!")])
def test_a_known_question_asked_a_little_differently_is_known(engine, question, known):
    assert ask(engine, question) == QA[known]


def test_earlier_turns_do_not_confuse_the_demo(engine):
    history = [{"role": "user", "content": "hello"}, {"role": "assistant", "content": QA["hello"]},
               {"role": "user", "content": "什么？"}, {"role": "assistant", "content": "whatever"}]
    assert ask(engine, "What is the capital of France?", history=history) == QA["What is the capital of France?"]


def test_bad_input_is_refused_on_the_demo_too(engine):
    history = [{"role": "user", "content": "broken \ud800 text"}, {"role": "assistant", "content": "ok"}]
    with pytest.raises(InvalidRequest, match="lone surrogate"):
        ask(engine, "hello", history=history)


def test_route_leaves_other_demos_and_odd_messages_alone():
    assert demo.route([{"role": "user", "content": "anything"}], "minicpm5") == [
        {"role": "user", "content": "anything"}]
    assert demo.route([{"role": "assistant", "content": "x"}], "minicpm-2b") == [{"role": "assistant", "content": "x"}]
    parts = [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    assert demo.route(parts, "minicpm-2b") == parts


def test_a_reply_cut_inside_a_character_drops_its_broken_bytes(engine):
    # "Here you go: 😊": the emoji is four byte-fallback tokens; stop after two of them.
    tokenizer = engine.tokenizer
    answer = QA["Send me a smiley."]
    whole = tokenizer(answer, add_special_tokens=False).input_ids
    pieces = tokenizer.convert_ids_to_tokens(whole)
    first_byte = next(i for i, piece in enumerate(pieces) if piece.startswith("<0x"))
    cut = GenerationParams(temperature=0.0, max_new_tokens=first_byte + 2)
    text = ask(engine, "Send me a smiley.", cut)
    assert not text.endswith("\ufffd") and "\ufffd" not in text
    assert text == answer.removesuffix("😊")
