"""MiniCPM5: the checkpoint factory writes the upstream layout, the family recognises it from its files,
and plain transformers (no remote code) on the checkpoint's own template gives the demo's thinking replies,
which the reasoning splitter separates, streamed or not."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from transformers import AutoTokenizer, LlamaForCausalLM

from minicpm_core.detok import IncrementalDecoder
from minicpm_core.errors import ModelNotFound
from minicpm_core.families.minicpm5 import MINICPM5, require_chat_template, shipped_chat_template
from minicpm_core.reasoning import ReasoningSplitter, Split, opens_reasoning, split_reasoning
from testkit import minicpm5
from testkit.minicpm5 import (
    CHAT_TEMPLATE, DEMO_MODEL_DIR, DEMO_REGENERATE_COMMAND, INDEX_NAME, SHARD_NAME, demo_qa, make_config,
    tensor_shapes, write_demo_checkpoint,
)

QUESTION = [{"role": "user", "content": "你好"}]
STALE = f"the shipped MiniCPM5 demo is stale: regenerate it with `{DEMO_REGENERATE_COMMAND}`"


@pytest.fixture(scope="module")
def m5_demo_fresh(tmp_path_factory) -> Path:
    """The demo trained afresh (about half a minute), to compare with the shipped one."""
    return write_demo_checkpoint(tmp_path_factory.mktemp("m5_demo"))


def read_json(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


def tokenizer(path: Path):
    return AutoTokenizer.from_pretrained(path, trust_remote_code=False)


def render(tok, messages, **kwargs) -> str:
    return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **kwargs)


def thinking_kwargs(mode: bool | None) -> dict:
    return {} if mode is None else {"enable_thinking": mode}


# --- the checkpoint files ----------------------------------------------------------------------------

def test_config_is_a_plain_llama_config_with_gqa(m5_ckpt):
    config = read_json(m5_ckpt / "config.json")
    assert (config["model_type"], config["architectures"]) == ("llama", ["LlamaForCausalLM"])
    assert "auto_map" not in config
    assert config["num_key_value_heads"] < config["num_attention_heads"]
    assert config["num_attention_heads"] // config["num_key_value_heads"] == 8  # 16:2 as upstream
    assert config["head_dim"] != config["hidden_size"] // config["num_attention_heads"]  # given, as in the 1B
    assert config["max_position_embeddings"] == 131072
    assert config["tie_word_embeddings"] is False
    tok = tokenizer(m5_ckpt)
    assert config["eos_token_id"] == [1, tok.convert_tokens_to_ids("<|im_end|>")]


@pytest.mark.parametrize("size, params, non_embedding", [
    ("1b", 1_080_632_832, 679_552_512),  # MiniCPM5-1B's model card
    ("2b", 2_516_756_480, 1_981_982_720),  # 5,033,512,960 bf16 bytes, as published for 5-2B
])
def test_full_size_shapes_give_the_published_parameter_counts(size, params, non_embedding):
    shapes = dict(tensor_shapes(make_config(size=size)))
    total = sum(math.prod(shape) for shape in shapes.values())
    embeddings = math.prod(shapes["model.embed_tokens.weight"]) + math.prod(shapes["lm_head.weight"])
    assert (total, total - embeddings) == (params, non_embedding)


@pytest.mark.parametrize("size", ["tiny", "1b", "2b"])
def test_tensor_shapes_are_llamas_own(size):
    from transformers import LlamaConfig

    config = make_config(size=size)
    with torch.device("meta"):  # shapes only: no memory for a full-size model
        model = LlamaForCausalLM(LlamaConfig.from_dict(config))
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == dict(tensor_shapes(config))


def test_weights_are_one_zero_numbered_shard_with_its_index(m5_ckpt):
    index = read_json(m5_ckpt / INDEX_NAME)
    config = read_json(m5_ckpt / "config.json")
    assert set(index["weight_map"].values()) == {SHARD_NAME} == {"model-00000-of-00001.safetensors"}
    with safe_open(m5_ckpt / SHARD_NAME, framework="pt") as f:
        found = {k: (f.get_slice(k).get_dtype(), tuple(f.get_slice(k).get_shape())) for k in f.keys()}
    assert found == {name: ("BF16", shape) for name, shape in tensor_shapes(config)}
    assert "lm_head.weight" in found and set(found) == set(index["weight_map"])
    assert index["metadata"]["total_size"] == sum(math.prod(s) * 2 for _, s in found.values())


def test_the_chat_template_ships_as_chat_template_jinja(m5_ckpt):
    assert (m5_ckpt / "chat_template.jinja").read_text(encoding="utf-8") == CHAT_TEMPLATE
    assert tokenizer(m5_ckpt).chat_template == CHAT_TEMPLATE


# --- the tokenizer -----------------------------------------------------------------------------------

@pytest.mark.parametrize("token", ["<|im_start|>", "<|im_end|>", "<think>", "</think>"])
def test_chat_and_think_tags_are_single_added_tokens(m5_ckpt, token):
    tok = tokenizer(m5_ckpt)
    assert len(tok(token, add_special_tokens=False).input_ids) == 1


def test_decoding_hides_chatml_tags_but_keeps_think_tags(m5_ckpt):
    tok = tokenizer(m5_ckpt)
    ids = tok("<|im_start|>assistant\n<think>\nhm\n</think>\n\nHi<|im_end|>").input_ids
    assert tok.decode(ids, skip_special_tokens=True) == "assistant\n<think>\nhm\n</think>\n\nHi"


@pytest.mark.parametrize("text", ["你好，世界！", "Hello world", "emoji 😊 and rare 龘", "a < b\n\n```x```"])
def test_tokenizer_round_trips_and_adds_no_bos(m5_ckpt, text):
    tok = tokenizer(m5_ckpt)
    ids = tok(text).input_ids
    assert tok.bos_token_id == 0 and ids[0] != 0  # the template writes BOS, the tokenizer does not
    assert tok.decode(ids, skip_special_tokens=True) == text


# --- the chat template -------------------------------------------------------------------------------

@pytest.mark.parametrize("mode, tail", [
    (True, "<|im_start|>assistant\n<think>\n"),
    (False, "<|im_start|>assistant\n<think>\n\n</think>\n\n"),
    (None, "<|im_start|>assistant\n"),
])
def test_generation_prompt_follows_enable_thinking(m5_ckpt, mode, tail):
    prompt = render(tokenizer(m5_ckpt), QUESTION, **thinking_kwargs(mode))
    assert prompt == "<s><|im_start|>user\n你好<|im_end|>\n" + tail
    assert opens_reasoning(prompt) is (mode is True)


def test_system_prompt_is_a_chatml_turn(m5_ckpt):
    prompt = render(tokenizer(m5_ckpt), [{"role": "system", "content": "Be brief."}, *QUESTION], enable_thinking=False)
    assert prompt.startswith("<s><|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n你好<|im_end|>\n")


def test_earlier_turns_reasoning_is_not_sent_back(m5_ckpt):
    messages = [
        {"role": "user", "content": "q1"},
        {"role": "assistant", "content": "<think>\nsecret plan\n</think>\n\nA1"},
        {"role": "user", "content": "q2"},
        {"role": "assistant", "content": "A2", "reasoning_content": "another secret"},
        {"role": "user", "content": "q3"},
    ]
    prompt = render(tokenizer(m5_ckpt), messages, enable_thinking=True)
    assert "secret" not in prompt
    assert ("<|im_start|>assistant\n<think>\n\n</think>\n\nA1<|im_end|>\n<|im_start|>user\nq2<|im_end|>\n"
            "<|im_start|>assistant\n<think>\n\n</think>\n\nA2<|im_end|>\n") in prompt


# --- the family --------------------------------------------------------------------------------------

def test_family_recognises_the_checkpoint_from_its_files(m5_ckpt, tmp_path):
    renamed = shutil.copytree(m5_ckpt, tmp_path / "MiniCPM-2B-sft-bf16")  # the name says nothing
    assert MINICPM5.recognises(read_json(renamed / "config.json"), renamed)


def test_family_does_not_take_minicpm_2b(tiny_ckpt):
    reason = MINICPM5.mismatch(read_json(tiny_ckpt / "config.json"), tiny_ckpt)
    assert reason is not None and "not a Llama config" in reason


def test_family_does_not_take_a_llama_without_chatml(m5_ckpt, tmp_path):
    plain = shutil.copytree(m5_ckpt, tmp_path / "MiniCPM5-2B")
    (plain / "chat_template.jinja").write_text("{% for m in messages %}{{ m.content }}{% endfor %}", encoding="utf-8")
    assert "not ChatML" in MINICPM5.mismatch(read_json(plain / "config.json"), plain)
    (plain / "chat_template.jinja").unlink()
    assert MINICPM5.mismatch(read_json(plain / "config.json"), plain) == "it ships no chat template"
    with pytest.raises(ModelNotFound, match="no chat template"):
        require_chat_template(plain)


def test_a_template_in_tokenizer_config_counts_too(m5_ckpt, tmp_path):
    moved = shutil.copytree(m5_ckpt, tmp_path / "moved")
    (moved / "chat_template.jinja").unlink()
    config = read_json(moved / "tokenizer_config.json")
    config["chat_template"] = [{"name": "default", "template": CHAT_TEMPLATE}]
    (moved / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    assert shipped_chat_template(moved) == CHAT_TEMPLATE
    assert MINICPM5.recognises(read_json(moved / "config.json"), moved)


def test_family_values():
    assert (MINICPM5.name, MINICPM5.context_length, MINICPM5.thinking) == ("minicpm5", 131072, True)
    assert (MINICPM5.stop_tokens, MINICPM5.stop_markers, MINICPM5.fallback_chat_template) == (("<|im_end|>",), (), None)
    assert MINICPM5.model_class is LlamaForCausalLM
    assert MINICPM5.known_models[0].id == "OpenBMB/MiniCPM5-2B"
    assert dict(MINICPM5.defaults_for("OpenBMB/MiniCPM5-2B", True)) == {
        "temperature": 1.0, "top_p": 0.95, "min_p": 0.0, "repetition_penalty": 1.0}
    assert MINICPM5.defaults_for("OpenBMB/MiniCPM5-1B", True)["temperature"] == 0.9
    assert MINICPM5.defaults_for("OpenBMB/MiniCPM5-1B", False)["temperature"] == 0.7


def test_transformers_config_loads_the_weights_strictly(m5_ckpt):
    config = MINICPM5.transformers_config(read_json(m5_ckpt / "config.json"))
    assert (config.head_dim, config.num_key_value_heads, config.tie_word_embeddings) == (8, 2, False)
    model = MINICPM5.model_class(config)
    with safe_open(m5_ckpt / SHARD_NAME, framework="pt") as f:
        model.load_state_dict({name: f.get_tensor(name).float() for name in f.keys()}, strict=True)
    ids = tokenizer(m5_ckpt)(render(tokenizer(m5_ckpt), QUESTION), return_tensors="pt").input_ids
    assert torch.isfinite(model(input_ids=ids).logits).all()


# --- the demo, through plain transformers ------------------------------------------------------------

def greedy(model, tok, prompt: str, max_new_tokens: int = 160) -> list[int]:
    ids = tok(prompt, return_tensors="pt").input_ids
    out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=max_new_tokens)
    return out[0, ids.shape[1]:].tolist()


@pytest.fixture(scope="module", params=[torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def demo_model(request):
    return LlamaForCausalLM.from_pretrained(DEMO_MODEL_DIR, dtype=request.param).eval(), tokenizer(DEMO_MODEL_DIR)


@pytest.mark.parametrize("mode", [True, None], ids=["thinking-on", "thinking-not-given"])
def test_demo_thinks_then_answers(demo_model, mode):
    model, tok = demo_model
    for question, reasoning, answer in demo_qa():
        prompt = render(tok, [{"role": "user", "content": question}], **thinking_kwargs(mode))
        reply = greedy(model, tok, prompt)
        assert reply[-1] == tok.convert_tokens_to_ids("<|im_end|>"), f"{question!r}: {STALE}"
        text = tok.decode(reply, skip_special_tokens=True)
        assert "<|im" not in text and "<s>" not in text
        assert split_reasoning(text, opened=opens_reasoning(prompt)) == Split(reasoning, answer, False), STALE


def test_demo_answers_directly_with_thinking_off(demo_model):
    model, tok = demo_model
    for question, _, answer in demo_qa():
        prompt = render(tok, [{"role": "user", "content": question}], enable_thinking=False)
        reply = greedy(model, tok, prompt)
        assert reply[-1] == tok.convert_tokens_to_ids("<|im_end|>")
        text = tok.decode(reply, skip_special_tokens=True)
        assert text == answer, STALE
        assert split_reasoning(text, opened=opens_reasoning(prompt)) == Split("", answer, False)


def test_demo_reply_streamed_token_by_token_splits_like_the_whole(demo_model):
    model, tok = demo_model
    for question, reasoning, answer in demo_qa():
        prompt = render(tok, [{"role": "user", "content": question}])
        decoder, splitter = IncrementalDecoder(tok), ReasoningSplitter(opened=opens_reasoning(prompt))
        for token in greedy(model, tok, prompt):
            splitter.feed(decoder.push([token]))
        splitter.feed(decoder.flush())
        splitter.finish()
        assert (splitter.reasoning, splitter.content, splitter.ended_in_reasoning) == (reasoning, answer, False)


def test_demo_cut_inside_its_reasoning_says_so(demo_model):
    model, tok = demo_model
    prompt = render(tok, QUESTION, enable_thinking=True)
    text = tok.decode(greedy(model, tok, prompt, max_new_tokens=5), skip_special_tokens=True)
    split = split_reasoning(text, opened=True)
    assert split.ended_in_reasoning and split.content == "" and split.reasoning


# --- the shipped demo is what the trainer writes -----------------------------------------------------

@pytest.mark.parametrize("name", ["config.json", "generation_config.json", "tokenizer_config.json",
                                  "chat_template.jinja", INDEX_NAME])
def test_shipped_demo_files_are_what_the_trainer_writes(m5_demo_fresh, name):
    assert (DEMO_MODEL_DIR / name).read_bytes() == (m5_demo_fresh / name).read_bytes(), f"{name}: {STALE}"


def test_shipped_demo_tokenizer_is_what_the_trainer_writes(m5_demo_fresh):
    def vocabulary(path: Path):  # the trained content, whatever the tokenizers version's JSON layout
        spec = read_json(path / "tokenizer.json")
        return spec["model"]["vocab"], spec["model"]["merges"], [(t["id"], t["content"], t["special"])
                                                                 for t in spec["added_tokens"]]
    assert vocabulary(DEMO_MODEL_DIR) == vocabulary(m5_demo_fresh), STALE


def test_shipped_demo_weights_have_the_trainers_names_shapes_and_dtype(m5_demo_fresh):
    def layout(path: Path):
        with safe_open(path / SHARD_NAME, framework="pt") as f:
            return {k: (f.get_slice(k).get_dtype(), tuple(f.get_slice(k).get_shape())) for k in f.keys()}
    assert layout(DEMO_MODEL_DIR) == layout(m5_demo_fresh), STALE
    assert sorted(p.name for p in DEMO_MODEL_DIR.iterdir()) == sorted(p.name for p in m5_demo_fresh.iterdir())


def test_freshly_trained_demo_answers_too(m5_demo_fresh):
    model, tok = LlamaForCausalLM.from_pretrained(m5_demo_fresh).eval(), tokenizer(m5_demo_fresh)
    question, reasoning, answer = demo_qa()[0]
    prompt = render(tok, [{"role": "user", "content": question}], enable_thinking=True)
    text = tok.decode(greedy(model, tok, prompt), skip_special_tokens=True)
    assert split_reasoning(text, opened=True) == Split(reasoning, answer, False)


def test_shipped_demo_is_small():
    assert sum(p.stat().st_size for p in DEMO_MODEL_DIR.iterdir()) < 1_000_000


def test_cli_prints_what_it_wrote(tmp_path, capsys):
    assert minicpm5.main([str(tmp_path), "--layers", "3"]) == 0
    out = capsys.readouterr().out
    assert str(tmp_path) in out and "3 layers" in out and SHARD_NAME in out


def test_cli_demo_takes_no_other_option(tmp_path):
    with pytest.raises(SystemExit):
        minicpm5.main([str(tmp_path), "--demo", "--size", "2b"])
