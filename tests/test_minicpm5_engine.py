"""MiniCPM5 through our own loader and engine: the greedy reply equals a bare `LlamaForCausalLM.generate`
over the checkpoint's own chat template (thinking on, off and not given), the engine splits the reasoning
from the answer once for every consumer, `<|im_end|>` ends a reply and never shows, and MiniCPM-2B is
untouched (its reasoning is always empty)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import torch
from transformers import LlamaForCausalLM

from minicpm_core import loader
from minicpm_core.engine import Engine, hidden_token_ids
from minicpm_core.errors import ModelNotFound
from minicpm_core.families import FAMILIES, detect
from minicpm_core.families.minicpm2b import MINICPM_2B
from minicpm_core.families.minicpm5 import IM_END, MINICPM5
from minicpm_core.loader import load_model
from minicpm_core.params import GenerationParams
from minicpm_core.reasoning import THINK_CLOSE, THINK_OPEN, opens_reasoning, split_reasoning
from testkit.minicpm5 import DEMO_MODEL_DIR, demo_qa, demo_reply

from bare_reference import bare_greedy, load_bare

MODES = (True, False, None)
MODE_IDS = ("thinking-on", "thinking-off", "thinking-not-given")
REPLY_TOKENS = 24  # random weights never stop early: every reply runs this long
GREEDY = {"temperature": 0, "repetition_penalty": 1.0}
REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def m5_engine(m5_ckpt):
    engine = Engine(load_model(m5_ckpt, device="cpu", dtype="float32"))
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def bare():
    """`bare(model_dir)`: the plain transformers model and tokenizer, loaded once per directory."""
    loaded = {}

    def get(model_dir: Path):
        if model_dir not in loaded:
            loaded[model_dir] = load_bare(model_dir)
        return loaded[model_dir]
    return get


def ask(question: str) -> list[dict]:
    return [{"role": "user", "content": question}]


def engine_reply(engine, messages, mode, **params):
    generation = engine.submit(messages, GenerationParams.parse(GREEDY | params), enable_thinking=mode)
    parts = list(generation.parts())
    return generation, parts


# --- loading ---------------------------------------------------------------------------------------

def test_minicpm5_is_registered_after_the_default(m5_ckpt):
    assert FAMILIES == (MINICPM_2B, MINICPM5)
    assert detect(m5_ckpt) is MINICPM5


def test_loads_as_llama_through_our_fill_path_without_from_pretrained(m5_ckpt, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("from_pretrained reads the whole checkpoint; the loader streams it")

    monkeypatch.setattr(LlamaForCausalLM, "from_pretrained", refuse)
    lm = load_model(m5_ckpt, device="cpu", dtype="float32")
    assert lm.family is MINICPM5 and type(lm.model) is LlamaForCausalLM
    assert lm.context_length == MINICPM5.context_length
    assert lm.tokenizer.chat_template == (m5_ckpt / "chat_template.jinja").read_text(encoding="utf-8")
    untied = lm.model.lm_head.weight.data_ptr() != lm.model.model.embed_tokens.weight.data_ptr()
    assert untied and lm.model.lm_head.weight.device.type == "cpu"  # loaded from the file, not left on meta


def test_logits_equal_plain_transformers(m5_engine, m5_ckpt, bare):
    model, _ = bare(m5_ckpt)
    ids = torch.tensor([[0, 5, 100, 200, 1200]])
    with torch.no_grad():
        assert torch.equal(m5_engine.model(ids).logits, model(ids).logits)


def test_code_shipped_in_the_checkpoint_is_never_run(m5_ckpt, tmp_path):
    trapped = shutil.copytree(m5_ckpt, tmp_path / "trapped")
    (trapped / "modeling_minicpm5.py").write_text('raise RuntimeError("remote code was executed")\n', encoding="utf-8")
    config = json.loads((trapped / "config.json").read_text(encoding="utf-8"))
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_minicpm5.MiniCPM5ForCausalLM"}
    (trapped / "config.json").write_text(json.dumps(config), encoding="utf-8")
    assert load_model(trapped, device="cpu", dtype="float32").family is MINICPM5


def test_a_llama_that_is_not_chatml_is_refused_listing_the_families(m5_ckpt, tmp_path):
    other = shutil.copytree(m5_ckpt, tmp_path / "MiniCPM5-2B")  # the name misleads
    (other / "chat_template.jinja").write_text("{% for m in messages %}{{ m.content }}{% endfor %}", encoding="utf-8")
    with pytest.raises(ModelNotFound) as caught:
        load_model(other, device="cpu")
    message = str(caught.value)
    assert caught.value.code == "unsupported_family"
    assert "not MiniCPM5: its chat template is not ChatML" in message
    assert "Supported families: MiniCPM-2B (e.g. OpenBMB/MiniCPM-2B-sft-fp32" in message
    assert "MiniCPM5 (e.g. OpenBMB/MiniCPM5-2B" in message


def test_end_of_turn_ids_are_im_end_and_the_configs_eos(m5_engine):
    tok = m5_engine.tokenizer
    assert m5_engine.stop_token_ids == {tok.convert_tokens_to_ids(IM_END), tok.convert_tokens_to_ids("</s>")}
    assert set(m5_engine.model.generation_config.eos_token_id) == m5_engine.stop_token_ids


def test_a_family_without_stop_markers_watches_no_tokens(m5_engine):
    assert m5_engine.stop_markers == () and m5_engine._marker_watch.closers == frozenset()


def test_minicpm_2b_keeps_its_single_eos(tiny_ckpt):
    lm = load_model(tiny_ckpt, device="cpu", dtype="float32")
    assert lm.model.generation_config.eos_token_id == lm.tokenizer.eos_token_id
    assert lm.eos_token_ids == (lm.tokenizer.eos_token_id,)


def test_a_tokenizer_without_the_stop_token_is_a_clear_error(m5_engine):
    class NoImEnd(MINICPM5.__class__):
        pass

    family = NoImEnd(**{f: getattr(MINICPM5, f) for f in ("name", "label", "context_length", "model_class_name")},
                     stop_tokens=("<|no_such_token|>",), thinking=True)
    with pytest.raises(ModelNotFound, match="lacks <\\|no_such_token\\|>"):
        loader.end_of_turn_ids(m5_engine.tokenizer, family, {})


# --- fidelity: the engine equals bare generate --------------------------------------------------------

@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_greedy_reply_equals_bare_generate_on_random_weights(m5_engine, m5_ckpt, bare, mode):
    model, tok = bare(m5_ckpt)
    messages = [{"role": "system", "content": "Be brief."}, *ask("你好，介绍一下你自己")]
    prompt, expected = bare_greedy(model, tok, messages, mode, REPLY_TOKENS)
    generation, parts = engine_reply(m5_engine, messages, mode, max_new_tokens=REPLY_TOKENS)
    assert generation.prompt.ids == tok(prompt).input_ids
    assert generation._token_ids == expected
    split = split_reasoning(tok.decode(expected, skip_special_tokens=True), opened=opens_reasoning(prompt))
    assert (generation.reasoning, generation.text) == (split.reasoning, split.content)
    assert "".join(r for r, _ in parts) == generation.reasoning and "".join(c for _, c in parts) == generation.text
    assert generation.stats.finish_reason == "length"
    assert generation.stats.ended_in_reasoning is split.ended_in_reasoning


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_demo_replies_equal_bare_generate_and_split_into_reasoning_and_answer(m5_demo_engine, bare, mode):
    model, tok = bare(DEMO_MODEL_DIR)
    im_end = tok.convert_tokens_to_ids(IM_END)
    for question, reasoning, answer in demo_qa():
        prompt, expected = bare_greedy(model, tok, ask(question), mode, 200)
        generation, parts = engine_reply(m5_demo_engine, ask(question), mode)
        assert generation._token_ids == expected and expected[-1] == im_end  # <|im_end|> ended it
        assert generation.stats.finish_reason == "stop" and not generation.stats.ended_in_reasoning
        shown_reasoning = "" if mode is False else reasoning
        assert (generation.reasoning, generation.text) == (shown_reasoning, answer)
        thought = {True: f"{reasoning}\n", None: f"\n{reasoning}\n", False: ""}[mode]  # between the tags
        assert generation.stats.reasoning_tokens == len(tok(thought, add_special_tokens=False).input_ids)
        split = split_reasoning(tok.decode(expected, skip_special_tokens=True), opened=opens_reasoning(prompt))
        assert (split.reasoning, split.content) == (shown_reasoning, answer)
        streamed = "".join(r for r, _ in parts), "".join(c for _, c in parts)
        assert streamed == (shown_reasoning, answer)
        for piece in (*streamed, *(p for pair in parts for p in pair)):
            assert "<|im" not in piece and THINK_OPEN not in piece and THINK_CLOSE not in piece and "<s>" not in piece


@pytest.mark.parametrize("mode", [True, None], ids=["thinking-on", "thinking-not-given"])
def test_iterating_gives_only_the_answer_and_result_the_same(m5_demo_engine, mode):
    question, reasoning, answer = demo_qa()[1]
    generation = m5_demo_engine.submit(ask(question), GenerationParams.parse(GREEDY), enable_thinking=mode)
    assert "".join(generation) == answer == generation.text
    assert generation.reasoning == reasoning
    again = m5_demo_engine.submit(ask(question), GenerationParams.parse(GREEDY), enable_thinking=mode)
    assert again.result() == answer and again.reasoning == reasoning


@pytest.mark.parametrize("consume, mode", [(iter, False), (lambda g: iter(g.parts()), True)],
                         ids=["answer-deltas", "parts"])
def test_closing_either_iterator_cancels_the_generation(m5_engine, consume, mode):
    long_reply = GenerationParams.parse(GREEDY | {"max_new_tokens": 3000})  # random weights: minutes of text
    generation = m5_engine.submit(ask("你好"), long_reply, enable_thinking=mode)
    deltas = consume(generation)
    next(deltas)
    deltas.close()  # what a Streamlit rerun does to st.write_stream's generator
    assert generation.wait(60) and generation.stats.finish_reason == "cancelled"


def test_a_reply_cut_by_max_length_inside_think_says_so(m5_demo_engine):
    question, reasoning, _ = demo_qa()[0]
    generation, parts = engine_reply(m5_demo_engine, ask(question), True, max_new_tokens=4)
    assert generation.stats.finish_reason == "length" and generation.stats.ended_in_reasoning
    assert generation.stats.reasoning_tokens == generation.stats.completion_tokens == 4
    shown = generation.reasoning.rstrip("\ufffd")  # a cut inside a character ends in U+FFFD, as on MiniCPM-2B
    assert generation.text == "" and shown and reasoning.startswith(shown)
    assert all(content == "" for _, content in parts)


def test_a_reply_cut_after_think_closed_did_not_end_in_reasoning(m5_demo_engine, bare):
    question, reasoning, answer = demo_qa()[0]
    tok = bare(DEMO_MODEL_DIR)[1]
    full = tok(demo_reply(reasoning, answer, True), add_special_tokens=False).input_ids
    generation, _ = engine_reply(m5_demo_engine, ask(question), True, max_new_tokens=len(full) - 2)
    assert generation.stats.finish_reason == "length" and not generation.stats.ended_in_reasoning
    assert generation.reasoning == reasoning and answer.startswith(generation.text) and generation.text
    assert generation.stats.reasoning_tokens == len(tok(f"{reasoning}\n", add_special_tokens=False).input_ids)


def test_earlier_turns_reasoning_is_never_sent_back(m5_demo_engine):
    messages = [*ask("q1"), {"role": "assistant", "content": "<think>\nsecret plan\n</think>\n\nA1"}, *ask("q2")]
    for mode in MODES:
        prompt = m5_demo_engine.tokenizer.decode(m5_demo_engine.prepare(messages, enable_thinking=mode).ids)
        assert "secret" not in prompt
        assert "<|im_start|>assistant\n<think>\n\n</think>\n\nA1<|im_end|>\n<|im_start|>user\nq2<|im_end|>\n" in prompt


def test_enable_thinking_reaches_the_template_only_when_given(m5_demo_engine):
    tails = {mode: m5_demo_engine.tokenizer.decode(m5_demo_engine.prepare(ask("你好"), enable_thinking=mode).ids)
             for mode in MODES}
    assert tails[True].endswith("<|im_start|>assistant\n<think>\n")
    assert tails[False].endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert tails[None].endswith("<|im_start|>assistant\n")


# --- special tokens: hidden, except the think tags ------------------------------------------------------

def with_special_flags(source: Path, target: Path, flags: dict[str, bool]) -> Path:
    """A copy of `source` whose tokenizer marks the given added tokens special (True) or not (False).

    Its eos becomes `</s>`: transformers counts the eos token special whatever tokenizer.json says.
    """
    shutil.copytree(source, target)
    settings = json.loads((target / "tokenizer_config.json").read_text(encoding="utf-8"))
    (target / "tokenizer_config.json").write_text(json.dumps(settings | {"eos_token": "</s>"}), encoding="utf-8")
    spec = json.loads((target / "tokenizer.json").read_text(encoding="utf-8"))
    for token in spec["added_tokens"]:
        if token["content"] in flags:
            token["special"] = flags[token["content"]]
    (target / "tokenizer.json").write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
    return target


def test_the_shipped_tokenizer_needs_no_special_decoding(m5_demo_engine):
    assert hidden_token_ids(m5_demo_engine.tokenizer, m5_demo_engine.stop_token_ids) is None


@pytest.mark.parametrize("flags", [
    {THINK_OPEN: True, THINK_CLOSE: True},  # think tags marked special: skip_special_tokens would drop them
    {IM_END: False},  # a stop token not marked special: skip_special_tokens would show it
], ids=["special-think-tags", "plain-im-end"])
def test_the_split_and_the_hiding_hold_whatever_the_tokenizer_marks_special(tmp_path, flags):
    variant = with_special_flags(DEMO_MODEL_DIR, tmp_path / "variant", flags)
    engine = Engine(load_model(variant, device="cpu", dtype="float32"))
    try:
        hidden = hidden_token_ids(engine.tokenizer, engine.stop_token_ids)
        assert hidden is not None and engine.tokenizer.convert_tokens_to_ids(IM_END) in hidden
        assert not {engine.tokenizer.convert_tokens_to_ids(tag) for tag in (THINK_OPEN, THINK_CLOSE)} & hidden
        for question, reasoning, answer in demo_qa():
            for mode in (True, None):
                generation, parts = engine_reply(engine, ask(question), mode)
                assert (generation.reasoning, generation.text) == (reasoning, answer)
                assert generation.stats.finish_reason == "stop"
                assert not any("<|im" in p or "<s>" in p for pair in parts for p in pair)
    finally:
        engine.close()


# --- MiniCPM-2B: nothing changes -------------------------------------------------------------------------

def test_minicpm_2b_has_no_reasoning_and_ignores_enable_thinking(tiny_ckpt):
    engine = Engine(load_model(tiny_ckpt, device="cpu", dtype="float32"))
    try:
        assert engine._hidden_ids is None and engine._splitter(engine.prepare(ask("hi"))) is None
        assert engine.prepare(ask("hi"), enable_thinking=True).ids == engine.prepare(ask("hi")).ids
        generation = engine.submit(ask("hi"), GenerationParams.parse({"temperature": 0, "max_new_tokens": 8}),
                                   enable_thinking=True)
        parts = list(generation.parts())
        assert generation.reasoning == "" and all(r == "" for r, _ in parts)
        assert "".join(c for _, c in parts) == generation.text and not generation.stats.ended_in_reasoning
        assert generation.stats.reasoning_tokens == 0
    finally:
        engine.close()


# --- the HTTP API, unchanged, on a MiniCPM5 checkpoint ---------------------------------------------------

def test_the_api_serves_the_answer_on_minicpm5(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINICPM_")}
    env |= {"PYTHONUNBUFFERED": "1", "MINICPM_DATA_DIR": str(tmp_path), "PYTHONPATH": str(REPO_ROOT)}
    command = [sys.executable, "-m", "minicpm_core.api", "--model", str(DEMO_MODEL_DIR), "--device", "cpu",
               "--dtype", "float32", "--host", "127.0.0.1", "--port", str(port)]
    server = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO_ROOT)
    try:
        for line in server.stderr:  # ends if the server dies
            if "Uvicorn running on" in line:
                break
        assert server.poll() is None, "the server exited"
        question, _, answer = demo_qa()[0]
        reply = requests.post(f"http://127.0.0.1:{port}", json={
            "prompt": question, "temperature": 0, "repetition_penalty": 1.0, "max_length": 512}, timeout=120)
        assert reply.status_code == 200 and reply.json()["status"] == 200
        assert reply.json()["response"] == answer  # the template's default: the model thinks, the answer is shown
        completion = requests.post(f"http://127.0.0.1:{port}/v1/chat/completions", json={
            "model": "m", "messages": ask(question), "temperature": 0, "repetition_penalty": 1.0}, timeout=120)
        assert completion.status_code == 200
        assert completion.json()["choices"][0]["message"]["content"] == answer
        assert completion.json()["choices"][0]["finish_reason"] == "stop"
    finally:
        server.terminate()
        server.wait(30)
