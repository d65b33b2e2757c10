"""Prompting exactly as MiniCPM's chat(): the template, BOS once, the history budget, stop markers."""

import random

import pytest

import dataclasses

from minicpm_core.errors import ContextOverflow, InvalidRequest, ModelNotFound
from minicpm_core.families import DEFAULT_FAMILY
from minicpm_core.families.minicpm2b import MINICPM_2B
from minicpm_core.loader import load_tokenizer
from minicpm_core.prompt import (build_prompt, encode, find_stop, max_chars_per_token, render, split_turns,
                                 unsafe_tail, validate_messages)
from testkit.checkpoint import write_checkpoint

MARKERS = MINICPM_2B.stop_markers


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
    assert "<用户>" in MINICPM_2B.fallback_chat_template and DEFAULT_FAMILY is MINICPM_2B


def test_the_fallback_template_is_the_given_familys(tokenizer, monkeypatch):
    monkeypatch.setattr(tokenizer, "chat_template", None)
    other = dataclasses.replace(MINICPM_2B, fallback_chat_template="{% for m in messages %}[{{m['content']}}]{% endfor %}")
    assert render([{"role": "user", "content": "hi"}], tokenizer, other) == "[hi]"
    prompt = build_prompt([{"role": "user", "content": "hi"}], tokenizer, budget=64, family=other)
    assert prompt.ids == encode([{"role": "user", "content": "hi"}], tokenizer, other)
    assert prompt.ids != encode([{"role": "user", "content": "hi"}], tokenizer)


def test_no_template_anywhere_is_a_clear_error(tokenizer, monkeypatch):
    monkeypatch.setattr(tokenizer, "chat_template", None)
    without = dataclasses.replace(MINICPM_2B, fallback_chat_template=None)
    with pytest.raises(ModelNotFound, match="ships no chat template"):
        render([{"role": "user", "content": "hi"}], tokenizer, without)


def test_encode_adds_bos_exactly_once(tokenizer):
    ids = encode(conversation(2), tokenizer)
    assert ids[0] == tokenizer.bos_token_id
    assert ids.count(tokenizer.bos_token_id) == 1
    assert tokenizer.decode(ids, skip_special_tokens=True) == render(conversation(2), tokenizer)


def test_markers_are_not_single_tokens(tokenizer):
    for marker in MARKERS:
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
    assert find_stop(text, MARKERS) == index


@pytest.mark.parametrize("text, held", [("answer<", 1), ("answer<用", 2), ("answer<用户", 3), ("answer<A", 2),
                                        ("answer<AI", 3), ("a < b", 0), ("done.", 0), ("<用户>", 0)])
def test_unsafe_tail_holds_back_possible_marker_starts(text, held):
    assert unsafe_tail(text, MARKERS) == held


# --- the history budget at scale: bounded work, same ids as the full re-encoding ---------------------

def reference_build_prompt(messages, tokenizer, budget, reply_room=128):
    """The original quadratic scan (re-encode the rest once per dropped turn): the oracle for the ids."""
    messages = validate_messages(list(messages))
    system = [m for m in messages if m["role"] == "system"]
    turns = split_turns([m for m in messages if m["role"] != "system"])
    reply_room = min(reply_room, budget // 2)
    for dropped in range(len(turns)):
        ids = encode(system + [m for turn in turns[dropped:] for m in turn], tokenizer)
        if len(ids) + reply_room <= budget:
            return dropped, ids
    if len(ids) < budget:
        return len(turns) - 1, ids
    return "overflow", None


WORDS = ["mountain", "river", "山", "东", "泰山", "你好", "的", "是", "?", "!", "。", "，", "<", ">", "AI", "用户",
         "\n", "  ", "😀", "é", "'", "1234", "Hi", "the", "ab", "<用", "户>", "\t", "ー"]


def random_conversation(rng, turns):
    def text():
        return "".join(rng.choice(WORDS) + rng.choice(["", " "]) for _ in range(rng.randint(0, 40)))

    messages = [{"role": "system", "content": text()}] if rng.random() < 0.3 else []
    for _ in range(turns):
        messages.append({"role": "user", "content": text()})
        for _ in range(rng.choice([0, 1, 1, 1, 2])):
            messages.append({"role": rng.choice(["assistant", "assistant", "system"]), "content": text()})
    messages.append({"role": "user", "content": text() + "?"})
    return messages


@pytest.fixture(scope="module", params=["tokenizer.model", "tokenizer.json"])
def any_tokenizer(request, tmp_path_factory):
    """Both upstream layouts: sentencepiece's tokenizer.model alone, and with tokenizer.json."""
    path = write_checkpoint(tmp_path_factory.mktemp("tok"), tokenizer_json=request.param == "tokenizer.json")
    return load_tokenizer(path)


def test_cut_gives_the_same_ids_as_the_full_rescan_on_random_conversations(any_tokenizer):
    rng = random.Random(9)
    checked = dropped = 0
    for _ in range(300):
        messages = random_conversation(rng, rng.randint(0, 12))
        full = len(encode(reference_messages(messages), any_tokenizer))
        budget = max(16, rng.randint(full // 4, full + 20))
        room = rng.choice([1, 8, 32, 128])
        expected = reference_build_prompt(messages, any_tokenizer, budget, room)
        if expected[0] == "overflow":
            with pytest.raises(ContextOverflow):
                build_prompt(messages, any_tokenizer, budget, room)
            continue
        prompt = build_prompt(messages, any_tokenizer, budget, room)
        assert (prompt.turns_dropped, prompt.ids) == expected, messages
        checked += 1
        dropped += prompt.turns_dropped > 0
    assert checked > 200 and dropped > 100  # the cases exercised cutting, not only "everything fits"


def reference_messages(messages):
    system = [m for m in messages if m["role"] == "system"]
    return system + [m for m in messages if m["role"] != "system"]


def test_length_bound_never_exceeds_the_real_token_count(any_tokenizer):
    bound = max_chars_per_token(any_tokenizer)
    assert bound == max(len(piece) for piece in any_tokenizer.get_vocab())
    rng = random.Random(3)
    for _ in range(300):
        text = "".join(rng.choice(WORDS + ["temperature", "tokenizer", "▁", "x" * 30]) for _ in range(rng.randint(1, 60)))
        tokens = len(any_tokenizer(text, add_special_tokens=False)["input_ids"])
        assert tokens >= -(-len(text) // bound), text


def test_huge_question_is_refused_by_its_length_without_tokenizing_it(tokenizer, monkeypatch):
    seen = spy_on_tokenizer(tokenizer, monkeypatch)
    with pytest.raises(ContextOverflow, match="at least .* tokens long but the limit is 4096") as caught:
        build_prompt([{"role": "user", "content": "x" * 7_000_000}], tokenizer, budget=4096)
    assert seen == [] and caught.value.details["limit"] == 4096


def spy_on_tokenizer(tokenizer, monkeypatch) -> list[int]:
    """Record the length of every text the tokenizer is asked to encode (it still encodes it)."""
    seen, call = [], type(tokenizer).__call__

    def recording(self, text, *args, **kwargs):
        seen.append(len(text))
        return call(self, text, *args, **kwargs)

    monkeypatch.setattr(type(tokenizer), "__call__", recording)
    return seen


def test_long_history_work_is_bounded_by_the_budget_not_the_history(tokenizer, monkeypatch):
    messages = []
    for i in range(499):
        messages += [{"role": "user", "content": f"question {i} " + "山 river " * 250},
                     {"role": "assistant", "content": "answer " * 285}]
    messages.append({"role": "user", "content": "the newest question"})
    history_chars = sum(len(m["content"]) for m in messages)
    assert len(messages) == 999 and history_chars > 1_900_000
    seen = spy_on_tokenizer(tokenizer, monkeypatch)
    prompt = build_prompt(messages, tokenizer, budget=4096)
    assert prompt.turns_dropped > 490 and len(prompt.ids) + 128 <= 4096
    assert sum(seen) < 3 * 4096 * max_chars_per_token(tokenizer) < history_chars / 10
    assert prompt.ids == encode(messages[2 * prompt.turns_dropped:], tokenizer)


def test_preparation_stops_once_cancelled(tokenizer, monkeypatch):
    seen = spy_on_tokenizer(tokenizer, monkeypatch)
    with pytest.raises(InvalidRequest, match="cancelled") as caught:
        build_prompt(conversation(50), tokenizer, budget=64, cancelled=lambda: len(seen) >= 3)
    assert caught.value.code == "cancelled" and len(seen) == 3


@pytest.mark.parametrize("content", ["\ud800", "ok \udfff", "\ude00\ud83d", "emoji half \ud83d"])
def test_lone_surrogates_are_invalid_requests_naming_the_message(tokenizer, content):
    messages = conversation(1)
    messages[1]["content"] = content
    with pytest.raises(InvalidRequest, match=r"messages\[1\]\.content is not valid Unicode text") as caught:
        build_prompt(messages, tokenizer, budget=4096)
    assert caught.value.param == "messages[1].content"


def test_a_proper_surrogate_pair_is_just_an_emoji(tokenizer):
    import json
    messages = [{"role": "user", "content": json.loads('"\\ud83d\\ude00 hi"')}]
    assert build_prompt(messages, tokenizer, budget=4096).ids == encode(messages, tokenizer)
