"""The engine on a real tiny model: streaming, stop markers, cancel, errors, budget, queue, cache,
sampling on each request's own RNG."""

import dataclasses
import threading
from collections import Counter

import pytest
import torch
from transformers import LogitsProcessor, LogitsProcessorList, TopPLogitsWarper

from minicpm_core.engine import RETRY_AFTER_MAX_S, Engine, _SampleWithGenerator, request_generator
from minicpm_core.errors import ContextOverflow, GenerationFailed, InvalidRequest, QueueFull
from minicpm_core.loader import load_model
from minicpm_core.params import GenerationParams
from minicpm_core.prefix_cache import PrefixCache
from minicpm_core.stats import ReplyStats

GREEDY = {"temperature": 0, "max_new_tokens": 24}
# Greedy decoding of "hello" on the random tiny model repeats one token, so the reply never ends on its
# own before a test cancels it (sampling could end it at any token, racing the cancel).
LONG = {"temperature": 0, "max_new_tokens": 2000}


@pytest.fixture(scope="module")
def lm(tiny_ckpt):
    return load_model(tiny_ckpt, device="cpu", dtype="float32")


@pytest.fixture()
def engine(lm):
    engine = Engine(lm)
    yield engine
    engine.close()


def ask(text):
    return [{"role": "user", "content": text}]


class ForceTokens(LogitsProcessor):
    """Makes the real model emit a chosen sequence (then EOS), so tests can steer the stream."""

    def __init__(self, ids, eos):
        self.ids, self.eos, self.start = list(ids), eos, None

    def __call__(self, input_ids, scores):
        self.start = input_ids.shape[1] if self.start is None else self.start
        step = input_ids.shape[1] - self.start
        forced = self.ids[step] if step < len(self.ids) else self.eos
        out = torch.full_like(scores, float("-inf"))
        out[:, forced] = 0.0
        return out


def force(engine, monkeypatch, ids):
    original = engine._generate_kwargs

    def with_forced_tokens(generation, cache):
        kwargs = original(generation, cache)
        kwargs["logits_processor"] = LogitsProcessorList([ForceTokens(ids, engine.tokenizer.eos_token_id)])
        return kwargs

    monkeypatch.setattr(engine, "_generate_kwargs", with_forced_tokens)


def token_ids(tokenizer, text):
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def test_deltas_concatenate_to_the_reply(engine):
    generation = engine.submit(ask("你好"), GREEDY)
    deltas = list(generation)
    assert "".join(deltas) == generation.text
    stats = generation.stats
    assert stats.completion_tokens > 0 and stats.prompt_tokens == len(generation.prompt.ids)
    assert stats.finish_reason in ("stop", "length") and stats.ttft_seconds > 0


def test_reply_text_matches_plain_decoding(engine, monkeypatch):
    text = "MiniCPM 说：你好，世界！Hello, world."
    force(engine, monkeypatch, token_ids(engine.tokenizer, text))
    generation = engine.submit(ask("hi"), GREEDY | {"max_new_tokens": 100})
    assert "".join(generation) == engine.tokenizer.decode(token_ids(engine.tokenizer, text))
    assert generation.stats.finish_reason == "stop"


def test_byte_fallback_characters_never_stream_half(engine, monkeypatch):
    text = "表情😀和生僻字龘"
    ids = token_ids(engine.tokenizer, text)
    assert any(engine.tokenizer.convert_ids_to_tokens(i).startswith("<0x") for i in ids)
    force(engine, monkeypatch, ids)
    deltas = list(engine.submit(ask("hi"), GREEDY | {"max_new_tokens": 100}))
    assert all("\ufffd" not in d for d in deltas)
    assert "".join(deltas).endswith("😀和生僻字龘")


def test_chinese_flows_without_waiting_for_a_space(engine, monkeypatch):
    text = "一二三四五六七八"
    force(engine, monkeypatch, token_ids(engine.tokenizer, text))
    deltas = [d for d in engine.submit(ask("hi"), GREEDY | {"max_new_tokens": 100})]
    assert len(deltas) >= 4


@pytest.mark.parametrize("marker", ["<用户>", "<AI>"])
def test_marker_split_across_tokens_ends_the_reply_and_never_shows(engine, monkeypatch, marker):
    ids = token_ids(engine.tokenizer, "好的。" + marker + "下一个问题")
    force(engine, monkeypatch, ids)
    generation = engine.submit(ask("hi"), GREEDY | {"max_new_tokens": 100})
    deltas = list(generation)
    assert "".join(deltas) == "好的。"
    assert not any("<" in d for d in deltas)
    assert generation.stats.finish_reason == "stop"
    assert generation.stats.completion_tokens < len(ids)  # stopped right at the marker


def test_the_stop_markers_are_the_loaded_models_familys(lm, monkeypatch):
    family = dataclasses.replace(lm.family, stop_markers=("STOP",))
    engine = Engine(dataclasses.replace(lm, family=family))
    try:
        force(engine, monkeypatch, token_ids(engine.tokenizer, "a<AI>b STOP c"))
        assert "".join(engine.submit(ask("hi"), GREEDY | {"max_new_tokens": 100})) == "a<AI>b "
    finally:
        engine.close()


def test_budget_ends_the_reply_with_length(engine):
    generation = engine.submit(ask("hello"), {"temperature": 0, "max_new_tokens": 3})
    generation.result()
    assert generation.stats.completion_tokens <= 3
    if generation.stats.completion_tokens == 3:
        assert generation.stats.finish_reason in ("length", "stop")


def test_max_length_counts_prompt_and_reply(engine):
    question = ask("hello " * 10)
    prompt_len = len(engine.prepare(question).ids)
    generation = engine.submit(question, {"temperature": 0, "max_length": prompt_len + 2})
    generation.result()
    assert generation.stats.completion_tokens <= 2


def test_greedy_with_integer_parameters(engine):
    params = {"temperature": 0, "top_p": 1, "repetition_penalty": 1, "max_new_tokens": 16}
    text, stats = engine.chat(ask("hello"), params)
    again, _ = engine.chat(ask("hello"), params)
    assert text == again and stats.finish_reason in ("stop", "length")


def test_same_seed_same_sampled_reply(engine):
    params = {"temperature": 1.5, "top_p": 1.0, "seed": 1234, "max_new_tokens": 16}
    assert engine.chat(ask("hello"), params)[0] == engine.chat(ask("hello"), params)[0]


def test_bad_parameters_raise_before_anything_is_queued(engine):
    with pytest.raises(InvalidRequest, match="temperature must be between 0.0 and 2.0"):
        engine.submit(ask("hi"), {"temperature": 3})
    with pytest.raises(InvalidRequest, match="Unknown parameter 'topp'"):
        engine.submit(ask("hi"), {"topp": 0.5})
    assert engine.queue_depth == 0 and engine.running == 0


def test_history_budget_drops_old_turns_and_reports_it(engine):
    messages = []
    for i in range(30):
        messages += [{"role": "user", "content": f"第{i}个问题 question {i}"},
                     {"role": "assistant", "content": f"answer number {i} 回答"}]
    messages.append({"role": "user", "content": "last"})
    generation = engine.submit(messages, {"temperature": 0, "max_length": 200, "max_new_tokens": 20})
    generation.result()
    assert generation.stats.turns_dropped > 0
    assert generation.stats.prompt_tokens + 20 <= 200


def test_question_longer_than_context_is_rejected(engine):
    with pytest.raises(ContextOverflow):
        engine.submit(ask("长" * 300), {"max_length": 64})


def stream_until_tokens(generation, n):
    it = iter(generation)
    with generation._cond:
        assert generation._cond.wait_for(lambda: len(generation._token_ids) >= n or generation.done, timeout=120)
    return it


def test_cancel_stops_within_one_step(engine):
    generation = engine.submit(ask("hello"), LONG)
    stream_until_tokens(generation, 3)
    seen = len(generation._token_ids)
    generation.cancel()
    assert generation.wait(10)
    assert generation.stats.finish_reason == "cancelled"
    assert generation.stats.completion_tokens <= seen + 2


def test_abandoned_iterators_leave_no_generation_running(engine):
    threads_before = threading.active_count()
    for _ in range(5):
        generation = engine.submit(ask("hello"), LONG)
        it = iter(generation)
        next(it, None)
        it.close()  # what a Streamlit rerun does to st.write_stream's generator
        assert generation.wait(10)
        assert generation.stats.finish_reason == "cancelled"
    assert engine.running == 0 and engine.queue_depth == 0
    assert threading.active_count() == threads_before


def test_cancel_while_waiting_in_the_queue(engine):
    first = engine.submit(ask("hello"), LONG)
    stream_until_tokens(first, 1)
    second = engine.submit(ask("hello"), GREEDY)
    assert second.position == 1
    second.cancel()
    assert second.wait(5) and second.stats.finish_reason == "cancelled" and second.stats.completion_tokens == 0
    first.cancel()
    assert first.wait(10)


def test_errors_in_the_worker_reach_the_consumer_and_the_engine_recovers(engine, monkeypatch):
    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(engine.model, "forward", out_of_memory)
    generation = engine.submit(ask("hi"), GREEDY)
    with pytest.raises(GenerationFailed, match="ran out of memory.*Lower max_length"):
        list(generation)
    assert generation.stats.finish_reason == "error"
    monkeypatch.undo()
    assert engine.chat(ask("hi"), GREEDY)[1].finish_reason in ("stop", "length")


def test_requests_are_served_first_come_first_served(engine):
    blocker = engine.submit(ask("hello"), LONG)
    stream_until_tokens(blocker, 1)
    waiting = [engine.submit(ask(f"question {i}"), GREEDY) for i in range(3)]
    assert [g.position for g in waiting] == [1, 2, 3]
    assert engine.queue_depth == 3
    blocker.cancel()
    finished = []
    for g in waiting:
        g.result()
        finished.append(g.stats.queue_seconds)
    assert finished == sorted(finished)


def test_concurrent_requests_get_only_their_own_tokens(lm):
    prompts = [f"问题 {i} question" for i in range(4)]
    solo = Engine(lm)
    expected = [solo.chat(ask(p), GREEDY)[0] for p in prompts]
    solo.close()
    shared = Engine(lm, max_concurrent=2, prefix_cache=PrefixCache(max_entries=0))
    generations = [shared.submit(ask(p), GREEDY) for p in prompts]
    results = [None] * 4
    threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, generations[i].result())) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    shared.close()
    assert results == expected


def multi_turn(engine, turns=4):
    messages, replies, cached = [], [], []
    for i in range(turns):
        messages.append({"role": "user", "content": f"第{i}轮 turn {i}: tell me more"})
        text, stats = engine.chat(messages, GREEDY)
        messages.append({"role": "assistant", "content": text})
        replies.append(text)
        cached.append(stats.cached_tokens)
    return replies, cached


def test_prefix_cache_reuse_gives_identical_greedy_output(lm):
    with_cache = Engine(lm)
    without_cache = Engine(lm, prefix_cache=PrefixCache(max_entries=0))
    replies_cached, cached = multi_turn(with_cache)
    replies_plain, not_cached = multi_turn(without_cache)
    with_cache.close()
    without_cache.close()
    assert replies_cached == replies_plain
    assert cached[0] == 0 and all(c > 0 for c in cached[1:])
    assert not any(not_cached)


def test_prefix_cache_matches_by_tokens_not_by_session(engine):
    history = [{"role": "user", "content": "the same long question about MiniCPM models"}]
    first, _ = engine.chat(history, GREEDY)
    # a different client resending the whole history
    follow_up = history + [{"role": "assistant", "content": first}, {"role": "user", "content": "and?"}]
    _, stats = engine.chat(follow_up, GREEDY)
    assert stats.cached_tokens >= len(engine.prepare(history).ids) - 1


def test_prefix_cache_is_bounded(lm):
    cache = PrefixCache(max_entries=2)
    engine = Engine(lm, prefix_cache=cache)
    for i in range(5):
        engine.chat(ask(f"distinct question number {i} 不同的问题"), GREEDY)
    assert len(cache) <= 2
    engine.close()
    tiny = PrefixCache(max_bytes=1)
    engine = Engine(lm, prefix_cache=tiny)
    engine.chat(ask("a question long enough to cache"), GREEDY)
    assert len(tiny) == 0 and tiny.total_bytes() == 0
    engine.close()


# --- sampling on the request's own RNG --------------------------------------------------------------

SAMPLED = {"temperature": 1.5, "top_p": 1.0, "max_new_tokens": 24}


def test_seed_does_not_touch_the_global_rng(engine):
    state = torch.get_rng_state()
    engine.chat(ask("hello"), SAMPLED | {"seed": 7})
    engine.chat(ask("hello"), SAMPLED)
    assert torch.equal(torch.get_rng_state(), state)


def test_seeded_reply_is_the_same_while_another_request_samples(lm):
    seeded = SAMPLED | {"seed": 1234}
    alone = Engine(lm, prefix_cache=PrefixCache(max_entries=0))
    expected = alone.chat(ask("hello"), seeded)[0]
    alone.close()
    shared = Engine(lm, max_concurrent=2, prefix_cache=PrefixCache(max_entries=0))
    for _ in range(2):
        # sampling too; seed 100 makes it run past 600 tokens, so it samples for all of `mine`
        other = shared.submit(ask("another user"), SAMPLED | {"seed": 100, "max_new_tokens": 600})
        stream_until_tokens(other, 1)
        mine = shared.submit(ask("hello"), seeded)
        assert mine.result() == expected
        assert not other.done  # it really sampled alongside, all the time
        other.cancel()
        assert other.wait(10)
    shared.close()


def test_different_seeds_give_different_replies(engine):
    replies = {engine.chat(ask("hello"), SAMPLED | {"seed": seed})[0] for seed in (1, 2, 3)}
    assert len(replies) == 3


def test_an_unseeded_request_gets_a_fresh_seed():
    params = GenerationParams.parse(SAMPLED)
    seeds = {request_generator(params, torch.device("cpu")).initial_seed() for _ in range(3)}
    assert len(seeds) == 3
    assert request_generator(GenerationParams.parse(SAMPLED | {"seed": 5}), torch.device("cpu")).initial_seed() == 5


def test_greedy_reply_equals_plain_generate(engine):
    params = {"temperature": 0, "repetition_penalty": 1.1, "max_new_tokens": 20}
    generation = engine.submit(ask("你好 hello"), params)
    generation.result()
    ids = torch.tensor([generation.prompt.ids])
    plain = engine.model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, temperature=None,
                                  top_p=None, top_k=None, repetition_penalty=1.1, max_new_tokens=20)
    assert generation._token_ids == plain[0, ids.shape[1]:].tolist()


class RecordScores(LogitsProcessor):
    """Keeps the scores each step hands to the sampler (after generate's own repetition penalty)."""

    def __init__(self):
        self.steps = []

    def __call__(self, input_ids, scores):
        self.steps.append(scores[0].clone())
        return scores


def sample_with_recorder(engine, monkeypatch, params):
    recorder = RecordScores()
    original = engine._generate_kwargs

    def with_recorder(generation, cache):
        kwargs = original(generation, cache)
        kwargs["logits_processor"].insert(0, recorder)
        return kwargs

    monkeypatch.setattr(engine, "_generate_kwargs", with_recorder)
    generation = engine.submit(ask("hello"), params)
    generation.result()
    assert len(recorder.steps) == len(generation._token_ids) > 0
    return recorder.steps, generation._token_ids


def test_top_k_is_honoured(engine, monkeypatch):
    steps, tokens = sample_with_recorder(engine, monkeypatch, {"temperature": 2.0, "top_p": 1.0, "top_k": 3,
                                                               "seed": 11, "max_new_tokens": 40})
    ranks = [int((scores > scores[token]).sum()) for scores, token in zip(steps, tokens)]
    assert max(ranks) < 3  # never outside the 3 most likely
    assert any(rank > 0 for rank in ranks)  # and really sampled, not greedy


def test_top_p_is_honoured(engine, monkeypatch):
    params = {"temperature": 2.0, "top_p": 0.3, "seed": 3, "max_new_tokens": 40}
    steps, tokens = sample_with_recorder(engine, monkeypatch, params)
    nucleus = TopPLogitsWarper(0.3)
    for scores, token in zip(steps, tokens):
        allowed = torch.isfinite(nucleus(None, (scores / 2.0)[None]))[0]
        assert allowed[token]
    assert any(int((scores > scores[token]).sum()) > 0 for scores, token in zip(steps, tokens))


def test_sampler_draws_from_the_warped_distribution():
    scores = torch.tensor([[2.0, 1.5, 1.0, 0.0, -1.0, -3.0]])
    params = GenerationParams.parse({"temperature": 0.7, "top_k": 4, "top_p": 1.0, "seed": 0})
    sampler = _SampleWithGenerator(params, request_generator(params, torch.device("cpu")))
    draws = 4000
    counts = Counter(int(sampler(None, scores.clone()).argmax()) for _ in range(draws))
    expected = torch.softmax(scores[0, :4] / 0.7, dim=-1)
    assert set(counts) <= {0, 1, 2, 3}
    for token in range(4):
        assert abs(counts[token] / draws - float(expected[token])) < 0.03


# --- the bounded queue --------------------------------------------------------------------------------

def test_a_full_queue_refuses_until_a_place_frees(lm):
    engine = Engine(lm, max_queue=2)
    blocker = engine.submit(ask("hello"), LONG)
    stream_until_tokens(blocker, 1)
    waiting = [engine.submit(ask(f"question {i}"), LONG) for i in range(2)]
    with pytest.raises(QueueFull, match=r"queue is full \(2 waiting at most\)") as refused:
        engine.submit(ask("one too many"), GREEDY)
    assert refused.value.code == "queue_full" and 1 <= refused.value.retry_after <= RETRY_AFTER_MAX_S
    assert engine.queue_depth == 2
    blocker.cancel()  # its slot frees: the first waiting request starts, one place in the queue frees
    stream_until_tokens(waiting[0], 1)
    accepted = engine.submit(ask("now there is room"), GREEDY)
    assert accepted.position == 2
    for generation in waiting:
        generation.cancel()
    assert accepted.result() is not None and accepted.stats.finish_reason in ("stop", "length")
    engine.close()


def test_max_queue_zero_serves_only_free_slots(lm):
    engine = Engine(lm, max_queue=0)
    running = engine.submit(ask("hello"), LONG)  # a free slot: accepted
    stream_until_tokens(running, 1)
    with pytest.raises(QueueFull):
        engine.submit(ask("would have to wait"), GREEDY)
    running.cancel()
    assert running.wait(10)
    engine.close()


def test_retry_after_follows_recent_reply_times(engine):
    assert engine.retry_after() >= 1
    for _ in range(3):
        engine.recent.append(ReplyStats(prompt_tokens=5, completion_tokens=50, cached_tokens=0, turns_dropped=0,
                                        queue_seconds=4.0, ttft_seconds=0.1, tokens_per_second=5.0,
                                        total_seconds=34.0, finish_reason="stop"))
    assert engine.retry_after() == 30  # generation time, queueing excluded, one slot


def test_negative_max_queue_is_refused(lm):
    with pytest.raises(InvalidRequest, match="max_queue"):
        Engine(lm, max_queue=-1)
