"""Incremental detokenization: complete characters only, concatenation equals plain decoding."""

import random

import pytest

from minicpm_core.detok import IncrementalDecoder, StopMarkerWatch
from minicpm_core.loader import load_tokenizer

TEXTS = ["Hello, world! 你好，世界。", "表情😀🎉 和生僻字龘靐", "def f(x):\n    return x ** 2\n", "  leading spaces  ",
         "混合 mixed text, 数字 123 and punctuation：「引号」！"]


@pytest.fixture(scope="module")
def tokenizer(tiny_ckpt):
    return load_tokenizer(tiny_ckpt)


def stream(tokenizer, ids, step=1):
    decoder = IncrementalDecoder(tokenizer)
    deltas = [decoder.push(ids[i:i + step]) for i in range(0, len(ids), step)]
    return deltas + [decoder.flush()]


@pytest.mark.parametrize("text", TEXTS)
@pytest.mark.parametrize("step", [1, 3])
def test_deltas_concatenate_to_plain_decoding(tokenizer, text, step):
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    deltas = stream(tokenizer, ids, step)
    assert "".join(deltas) == tokenizer.decode(ids)
    assert not any("\ufffd" in d for d in deltas)


def test_random_token_sequences_concatenate_exactly(tokenizer):
    # any sequence of whole-character pieces (byte pieces only make sense in valid UTF-8 runs)
    pieces = [i for i in range(3, len(tokenizer)) if not tokenizer.convert_ids_to_tokens(i).startswith("<0x")]
    rng = random.Random(0)
    for _ in range(50):
        ids = [rng.choice(pieces) for _ in range(rng.randrange(1, 40))]
        assert "".join(stream(tokenizer, ids)) == tokenizer.decode(ids)


def test_multibyte_character_is_held_until_complete(tokenizer):
    ids = tokenizer("😀", add_special_tokens=False)["input_ids"]
    pieces = tokenizer.convert_ids_to_tokens(ids)
    byte_ids = [i for i, p in zip(ids, pieces) if p.startswith("<0x")]
    assert len(byte_ids) == 4  # U+1F600 is four UTF-8 bytes, all byte-fallback tokens
    deltas = stream(tokenizer, ids)
    assert [d for d in deltas if d].pop().endswith("😀")
    assert deltas[ids.index(byte_ids[-1])].endswith("😀")
    assert all(d == "" for d in deltas[ids.index(byte_ids[0]):ids.index(byte_ids[-1])])


def test_special_tokens_are_not_shown(tokenizer):
    ids = tokenizer("hi", add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    assert "".join(stream(tokenizer, ids)) == "hi"


# --- StopMarkerWatch: the worker's per-token marker check ------------------------------------------

MARKERS = ("<用户>", "<AI>")


def first_marker_step(tokenizer, ids):
    """The index of the token after which plain decoding first contains a marker, else None."""
    for i in range(len(ids)):
        if any(m in tokenizer.decode(ids[:i + 1], skip_special_tokens=True) for m in MARKERS):
            return i
    return None


def watch_step(watch, ids):
    for i in range(len(ids)):
        if ids[i] in watch.closers and watch.has_marker(ids[max(0, i + 1 - watch.window):i + 1]):
            return i
    return None


def test_marker_watch_stops_at_the_token_that_completes_a_marker(tokenizer):
    watch = StopMarkerWatch(tokenizer, MARKERS)
    rng = random.Random(1)
    fillers = ["好的。", "表情😀", "a < b > c", "<用", "AI", "<A", "龘", " x "]
    for _ in range(60):
        parts = [rng.choice(fillers) for _ in range(rng.randrange(0, 5))]
        if rng.random() < 0.7:
            parts.insert(rng.randrange(len(parts) + 1), rng.choice(MARKERS))
        ids = tokenizer("".join(parts), add_special_tokens=False)["input_ids"]
        assert watch_step(watch, ids) == first_marker_step(tokenizer, ids), "".join(parts)


def test_marker_watch_needs_no_decoding_for_most_tokens(tokenizer):
    watch = StopMarkerWatch(tokenizer, MARKERS)
    assert tokenizer("<AI>", add_special_tokens=False)["input_ids"][-1] in watch.closers
    assert len(watch.closers) < len(tokenizer) // 4


def test_a_character_cut_off_at_the_end_is_dropped_not_shown(tokenizer):
    ids = tokenizer("好的😀", add_special_tokens=False)["input_ids"]
    decoder = IncrementalDecoder(tokenizer)
    text = decoder.push(ids[:-2]) + decoder.flush()  # the emoji's last two bytes never came
    assert text == "好的"
