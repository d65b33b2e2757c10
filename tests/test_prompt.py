"""Prompting exactly as MiniCPM's chat(): the template, BOS once, the history budget, stop markers."""

import pytest

from minicpm_core.errors import ContextOverflow, InvalidRequest
from minicpm_core.loader import load_tokenizer
from minicpm_core.prompt import (MINICPM_CHAT_TEMPLATE, build_prompt, encode, find_stop, render,
                                 unsafe_tail, validate_messages)


@pytest.fixture(scope="module")
def tokenizer(tiny_ckpt):
    return load_tokenizer(tiny_ckpt)


def conversation(turns):
    messages = []
    for i in range(turns):
        messages += [{"role": "user", "content": f"question {i} 问题"}, {"role": "assistant", "content": f"answer {i}"}]
    return messages + [{"role": "user", "content": "the newest question 最新"}]


def test_render_follows_the_chat_template(tokenizer):
    messages = [{"role": "user", "content": " 你好 "}, {"role": "assistant", "content": "Hi!\n"},
                {"role": "user", "content": "How are you?"}]
    assert render(messages, tokenizer) == "<用户>你好<AI>Hi!<用户>How are you?<AI>"


def test_system_prompt_is_raw_text_before_the_first_user_turn(tokenizer):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    assert render(messages, tokenizer) == "Be brief.<用户>hi<AI>"


def test_tokenizer_without_template_uses_the_upstream_one(tokenizer, monkeypatch):
    messages = conversation(1)
    expected = render(messages, tokenizer)
    monkeypatch.setattr(tokenizer, "chat_template", None)
    assert render(messages, tokenizer) == expected
    assert "<用户>" in MINICPM_CHAT_TEMPLATE


def test_encode_adds_bos_exactly_once(tokenizer):
    ids = encode(conversation(2), tokenizer)
    assert ids[0] == tokenizer.bos_token_id
    assert ids.count(tokenizer.bos_token_id) == 1
    assert tokenizer.decode(ids, skip_special_tokens=True) == render(conversation(2), tokenizer)


def test_markers_are_not_single_tokens(tokenizer):
    for marker in ("<用户>", "<AI>"):
        assert len(tokenizer(marker, add_special_tokens=False)["input_ids"]) > 1


def test_everything_fits_nothing_dropped(tokenizer):
    prompt = build_prompt(conversation(3), tokenizer, budget=4096)
    assert prompt.turns_dropped == 0
    assert prompt.ids == encode(conversation(3), tokenizer)


def test_oldest_whole_turns_are_dropped_first(tokenizer):
    messages = [{"role": "system", "content": "sys"}] + conversation(6)
    full = len(encode(messages, tokenizer))
    prompt = build_prompt(messages, tokenizer, budget=full, reply_room=full // 3)
    assert 0 < prompt.turns_dropped < 6
    text = tokenizer.decode(prompt.ids, skip_special_tokens=True)
    assert text.startswith("sys<用户>question ")
    assert "question 0 " not in text and text.endswith("the newest question 最新<AI>")
    assert len(prompt.ids) + full // 3 <= full


def test_newest_question_kept_even_when_little_room_is_left(tokenizer):
    question = [{"role": "user", "content": "word " * 40}]
    size = len(encode(question, tokenizer))
    prompt = build_prompt(conversation(2)[:-1] + question, tokenizer, budget=size + 3, reply_room=100)
    assert prompt.ids == encode(question, tokenizer)


def test_question_longer_than_the_context_is_a_clear_error(tokenizer):
    with pytest.raises(ContextOverflow, match="tokens long but the limit is 32"):
        build_prompt([{"role": "user", "content": "很长的问题 " * 50}], tokenizer, budget=32)


@pytest.mark.parametrize("messages, fragment", [
    ([], "non-empty list"),
    ("hello", "non-empty list"),
    ([{"role": "user"}], "content must be a string"),
    ([{"role": "robot", "content": "x"}], "one of system, user, assistant"),
    ([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], "last message"),
    ([{"role": "user", "content": "   "}], "empty"),
    (["hi"], "must be an object"),
])
def test_bad_messages_are_clear_errors(messages, fragment):
    with pytest.raises(InvalidRequest, match=fragment):
        validate_messages(messages)


@pytest.mark.parametrize("text, index", [("hello<用户>more", 5), ("a<AI>b<用户>", 1), ("plain < text >", None)])
def test_find_stop(text, index):
    assert find_stop(text) == index


@pytest.mark.parametrize("text, held", [("answer<", 1), ("answer<用", 2), ("answer<用户", 3), ("answer<A", 2),
                                        ("answer<AI", 3), ("a < b", 0), ("done.", 0), ("<用户>", 0)])
def test_unsafe_tail_holds_back_possible_marker_starts(text, held):
    assert unsafe_tail(text) == held
