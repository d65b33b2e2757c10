"""The `<think>` splitter: any chunking gives the one-shot split, and no tag ever leaks."""

from __future__ import annotations

import random

import pytest

from minicpm_core.reasoning import (
    THINK_CLOSE, THINK_OPEN, ReasoningSplitter, Split, opens_reasoning, split_reasoning, tag_prefix_len,
)

# (reply text, opened by the prompt, expected split)
REPLIES = [
    pytest.param("<think>\nThe user greets me.\nI greet back.\n</think>\n\nHello! 你好。", False,
                 Split("The user greets me.\nI greet back.", "Hello! 你好。", False), id="think-then-answer"),
    pytest.param("用户问首都。\n\n北京是首都。\n</think>\n\n中国的首都是北京。", True,
                 Split("用户问首都。\n\n北京是首都。", "中国的首都是北京。", False),
                 id="opened-by-prompt"),
    pytest.param("A direct answer: a < b and a<b, <th is not <think", False,
                 Split("", "A direct answer: a < b and a<b, <th is not <think", False), id="no-think-block"),
    pytest.param("<think>\n\n</think>\n\nJust the answer.\n", False,
                 Split("", "Just the answer.\n", False), id="empty-think-block"),
    pytest.param("\n\nHi there", False, Split("", "Hi there", False), id="leading-newlines"),
    pytest.param("<think>\nStill thinking about 😊 and\n", False,
                 Split("Still thinking about 😊 and", "", True), id="cut-inside-think"),
    pytest.param("Thinking <think>nested</think> more\n\n</think>\n\nAnswer </think> and <think> end", True,
                 Split("Thinking nested", " more\n\n\n\nAnswer  and  end", False), id="stray-tags-dropped"),
    pytest.param("<think>x</think>", False, Split("x", "", False), id="nothing-after-think"),
    pytest.param("", True, Split("", "", True), id="empty-reply-opened"),
]


def stream(chunks: list[str], opened: bool) -> tuple[list[tuple[str, str]], ReasoningSplitter]:
    splitter = ReasoningSplitter(opened)
    deltas = [splitter.feed(chunk) for chunk in chunks]
    deltas.append(splitter.finish())
    return deltas, splitter


def joined(deltas: list[tuple[str, str]]) -> Split | tuple[str, str]:
    return "".join(r for r, _ in deltas), "".join(c for _, c in deltas)


def cut(text: str, points: list[int]) -> list[str]:
    bounds = [0, *sorted(points), len(text)]
    return [text[a:b] for a, b in zip(bounds, bounds[1:])]


@pytest.mark.parametrize("text, opened, expected", REPLIES)
def test_one_shot_split(text, opened, expected):
    assert split_reasoning(text, opened) == expected


@pytest.mark.parametrize("text, opened, expected", REPLIES)
def test_every_two_way_split_gives_the_one_shot_split(text, opened, expected):
    for i in range(len(text) + 1):
        deltas, splitter = stream(cut(text, [i]), opened)
        assert joined(deltas) == (expected.reasoning, expected.content), f"split at {i}"
        assert splitter.ended_in_reasoning == expected.ended_in_reasoning


@pytest.mark.parametrize("text, opened, expected", REPLIES)
def test_random_n_way_splits_give_the_one_shot_split(text, opened, expected):
    rng = random.Random(f"{text}-{opened}")  # fixed per reply: the same cases every run
    for _ in range(200):
        points = [rng.randint(0, len(text)) for _ in range(rng.randint(2, 12))]
        deltas, splitter = stream(cut(text, points), opened)
        assert joined(deltas) == (expected.reasoning, expected.content), f"cuts at {sorted(points)}"
        assert splitter.ended_in_reasoning == expected.ended_in_reasoning


@pytest.mark.parametrize("text, opened, expected", REPLIES)
def test_one_character_at_a_time_gives_the_one_shot_split(text, opened, expected):
    deltas, splitter = stream(list(text), opened)
    assert joined(deltas) == (expected.reasoning, expected.content)
    assert (splitter.reasoning, splitter.content) == (expected.reasoning, expected.content)


TAG_ONLY_REPLIES = [  # the only "<" in these texts belong to tags: no delta may ever hold one
    ("<think>\nabc\n</think>\n\nxyz", False),
    ("abc</think>xyz", True),
    ("<think></think>xyz</think><think>", False),
    ("<think>\n\n</think>\n\n", False),
]


@pytest.mark.parametrize("text, opened", TAG_ONLY_REPLIES)
def test_no_tag_or_tag_prefix_ever_leaks_into_a_delta(text, opened):
    for i in range(len(text) + 1):
        for j in range(i, len(text) + 1):
            deltas, _ = stream(cut(text, [i, j]), opened)
            for reasoning, content in deltas:
                assert "<" not in reasoning and "<" not in content, (i, j, deltas)


def test_a_split_tag_is_held_back_until_decided():
    splitter = ReasoningSplitter(opened=True)
    assert splitter.feed("plan</th") == ("plan", "")
    assert splitter.feed("ink>\n") == ("", "")
    assert not splitter.in_reasoning
    assert splitter.feed("\nanswer") == ("", "answer")


def test_a_tag_prefix_that_is_not_a_tag_is_released_as_text():
    splitter = ReasoningSplitter()
    assert splitter.feed("x <thi") == ("", "x ")
    assert splitter.feed("s is fine") == ("", "<this is fine")


def test_a_held_tag_prefix_at_the_end_is_flushed_by_finish():
    splitter = ReasoningSplitter()
    assert splitter.feed("a <thin") == ("", "a ")
    assert splitter.finish() == ("", "<thin")


def test_newlines_inside_the_reasoning_are_kept_and_framing_newlines_dropped():
    splitter = ReasoningSplitter(opened=True)
    assert splitter.feed("\none\n") == ("one", "")
    assert splitter.feed("\ntwo\n") == ("\n\ntwo", "")
    assert splitter.feed("</think>") == ("", "")


def test_reasoning_cut_by_max_length_is_flagged():
    splitter = ReasoningSplitter(opened=True)
    splitter.feed("thinking and thinking")
    assert splitter.in_reasoning and not splitter.ended_in_reasoning  # not over yet
    splitter.finish()
    assert splitter.ended_in_reasoning
    assert split_reasoning("<think>\nhalf a thou").ended_in_reasoning
    assert not split_reasoning("<think>a</think>b").ended_in_reasoning
    assert not split_reasoning("just an answer").ended_in_reasoning


def test_feed_after_finish_is_refused():
    splitter = ReasoningSplitter()
    splitter.finish()
    with pytest.raises(RuntimeError):
        splitter.feed("more")
    assert splitter.finish() == ("", "")


@pytest.mark.parametrize("prompt, expected", [
    ("<|im_start|>assistant\n<think>\n", True),
    ("<|im_start|>assistant\n<think>\n\n</think>\n\n", False),
    ("<|im_start|>assistant\n", False),
])
def test_opens_reasoning_reads_the_prompt_end(prompt, expected):
    assert opens_reasoning(prompt) is expected


def test_tag_prefix_len():
    assert tag_prefix_len("abc") == 0
    assert tag_prefix_len("abc<") == 1
    assert tag_prefix_len("abc</thi") == 5
    assert tag_prefix_len("abc<think") == 6
    assert tag_prefix_len(THINK_OPEN) == 0 and tag_prefix_len(THINK_CLOSE) == 0  # a whole tag is no prefix
