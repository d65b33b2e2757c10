"""The checkpoint maker writes OpenBMB's layout exactly, and the demo model answers its questions."""

from __future__ import annotations

import json
import math
import runpy
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from transformers import AutoTokenizer, GraniteForCausalLM

from minicpm_core.families.minicpm2b import MINICPM_2B
from testkit import checkpoint
from testkit.checkpoint import (
    CHAT_TEMPLATE, DEMO_MODEL_DIR, DEMO_QA, demo_checkpoint_dir, make_config, tensor_shapes, write_checkpoint,
)

ROUND_TRIP_TEXTS = [
    "你好，世界！今天天气很好。",
    "Hello world, this is MiniCPM.",
    "中文 and English 混合 text",
    "emoji 😊🚀 and rare 龘 characters",
    "```python\ndef add(a, b):\n    return a + b\n```",
    "$$a^2 + b^2 = c^2$$",
]


def tokenizer(path: Path):
    return AutoTokenizer.from_pretrained(path, trust_remote_code=False)


def load_granite(path: Path, dtype: torch.dtype = torch.float32) -> GraniteForCausalLM:
    """Load a checkpoint the way the project does: config mapping + Granite, no remote code."""
    raw = json.loads((path / "config.json").read_text(encoding="utf-8"))
    model = GraniteForCausalLM(MINICPM_2B.transformers_config(raw))
    with safe_open(path / "model.safetensors", framework="pt") as f:
        state = {name: f.get_tensor(name).float() for name in f.keys()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert missing == ["lm_head.weight"] and not unexpected
    model.tie_weights()
    return model.to(dtype).eval()


def safetensors_keys(path: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    with safe_open(path, framework="pt") as f:
        return {k: (f.get_slice(k).get_dtype(), tuple(f.get_slice(k).get_shape())) for k in f.keys()}


# --- config.json -----------------------------------------------------------------------------------

def test_config_is_the_upstream_config(tiny_ckpt):
    config = json.loads((tiny_ckpt / "config.json").read_text(encoding="utf-8"))
    assert config["architectures"] == ["MiniCPMForCausalLM"]
    assert config["auto_map"]["AutoConfig"] == "configuration_minicpm.MiniCPMConfig"
    assert config["auto_map"]["AutoModelForCausalLM"] == "modeling_minicpm.MiniCPMForCausalLM"
    assert config["model_type"] == "minicpm"
    assert "tie_word_embeddings" not in config
    assert config["rope_scaling"] is None
    assert (config["max_position_embeddings"], config["bos_token_id"], config["eos_token_id"]) == (4096, 1, 2)
    assert (config["scale_emb"], config["scale_depth"], config["rms_norm_eps"]) == (12, 1.4, 1e-5)
    assert config["torch_dtype"] == "bfloat16"


def test_legacy_config_is_the_first_fp32_upload(tmp_path):
    write_checkpoint(tmp_path, weights="bin", legacy_config=True)
    config = json.loads((tmp_path / "config.json").read_text(encoding="utf-8"))
    assert "model_type" not in config
    assert config["max_position_embeddings"] == 2048
    assert config["torch_dtype"] == "float32"


def test_full_size_config_has_minicpm_2b_shape_and_parameter_count():
    config = make_config(full_size=True)
    assert (config["hidden_size"], config["num_hidden_layers"], config["num_attention_heads"],
            config["num_key_value_heads"], config["intermediate_size"], config["vocab_size"],
            config["dim_model_base"]) == (2304, 40, 36, 36, 5760, 122753, 256)
    params = sum(math.prod(shape) for _, shape in tensor_shapes(config))
    assert params == 2_724_880_896


def test_layers_can_be_overridden_at_full_width():
    config = make_config(full_size=True, num_layers=4)
    assert (config["hidden_size"], config["num_hidden_layers"]) == (2304, 4)


def test_generation_config_is_upstream(tiny_ckpt):
    generation = json.loads((tiny_ckpt / "generation_config.json").read_text(encoding="utf-8"))
    assert generation["do_sample"] is True
    assert (generation["top_p"], generation["temperature"]) == (0.8, 0.8)
    assert (generation["bos_token_id"], generation["eos_token_id"]) == (1, 2)


@pytest.mark.parametrize("name", ["configuration_minicpm.py", "modeling_minicpm.py"])
def test_remote_code_trap_raises_when_executed(tiny_ckpt, name):
    with pytest.raises(RuntimeError, match="remote code was executed"):
        runpy.run_path(str(tiny_ckpt / name))


# --- weights ---------------------------------------------------------------------------------------

def test_safetensors_has_llama_names_and_no_lm_head(tiny_ckpt):
    config = json.loads((tiny_ckpt / "config.json").read_text(encoding="utf-8"))
    keys = safetensors_keys(tiny_ckpt / "model.safetensors")
    assert keys == {name: ("BF16", shape) for name, shape in tensor_shapes(config)}
    assert "lm_head.weight" not in keys
    assert "model.layers.1.self_attn.q_proj.weight" in keys and "model.norm.weight" in keys


def test_random_weights_are_small_and_norms_are_one(tiny_ckpt):
    with safe_open(tiny_ckpt / "model.safetensors", framework="pt") as f:
        embed = f.get_tensor("model.embed_tokens.weight").float()
        norm = f.get_tensor("model.layers.0.input_layernorm.weight")
    assert 0.015 < embed.std().item() < 0.025
    assert torch.equal(norm, torch.ones_like(norm))


def test_bin_is_an_fp32_zip_torch_save(tiny_ckpt_bin):
    path = tiny_ckpt_bin / "pytorch_model.bin"
    assert zipfile.is_zipfile(path)
    state = torch.load(path, weights_only=True)
    config = json.loads((tiny_ckpt_bin / "config.json").read_text(encoding="utf-8"))
    assert {k: (v.dtype, tuple(v.shape)) for k, v in state.items()} == {
        name: (torch.float32, shape) for name, shape in tensor_shapes(config)}
    assert config["torch_dtype"] == "float32"


def test_sharded_safetensors_index_maps_every_tensor_to_its_shard(tmp_path):
    write_checkpoint(tmp_path, weights="sharded")
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text(encoding="utf-8"))
    shards = sorted(set(index["weight_map"].values()))
    assert shards == ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    found = {name: shard for shard in shards for name in safetensors_keys(tmp_path / shard)}
    assert found == index["weight_map"]
    assert index["metadata"]["total_size"] == sum(
        math.prod(shape) * 2 for _, (_, shape) in
        ((n, v) for shard in shards for n, v in safetensors_keys(tmp_path / shard).items()))
    assert not (tmp_path / "model.safetensors").exists()


def test_sharded_bin_index_maps_every_tensor_to_its_shard(tmp_path):
    write_checkpoint(tmp_path, weights="sharded-bin")
    index = json.loads((tmp_path / "pytorch_model.bin.index.json").read_text(encoding="utf-8"))
    found = {name: shard for shard in set(index["weight_map"].values())
             for name in torch.load(tmp_path / shard, weights_only=True)}
    assert found == index["weight_map"]


def test_same_seed_gives_same_weights_and_another_seed_does_not(tmp_path):
    paths = [write_checkpoint(tmp_path / str(i), seed=seed) for i, seed in enumerate((0, 0, 1))]
    data = [(p / "model.safetensors").read_bytes() for p in paths]
    assert data[0] == data[1] != data[2]


def test_tiny_checkpoint_runs_as_granite(tiny_ckpt):
    model = load_granite(tiny_ckpt)
    ids = tokenizer(tiny_ckpt)("你好 hello", return_tensors="pt").input_ids
    logits = model(input_ids=ids).logits
    assert logits.shape == (1, ids.shape[1], model.config.vocab_size)
    assert torch.isfinite(logits).all()


# --- tokenizer -------------------------------------------------------------------------------------

def test_tokenizer_loads_without_remote_code_and_adds_bos(tiny_ckpt):
    tok = tokenizer(tiny_ckpt)
    assert type(tok).__name__ == "LlamaTokenizer"
    assert (tok.unk_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 2)
    ids = tok("hello").input_ids
    assert ids[0] == 1 and 2 not in ids


@pytest.mark.parametrize("text", ROUND_TRIP_TEXTS)
def test_tokenizer_round_trips(tiny_ckpt, text):
    tok = tokenizer(tiny_ckpt)
    assert tok.decode(tok(text).input_ids, skip_special_tokens=True) == text


@pytest.mark.parametrize("tag", ["<用户>", "<AI>"])
def test_chat_tags_are_several_pieces(tiny_ckpt, tag):
    assert len(tokenizer(tiny_ckpt).tokenize(tag)) >= 3


def test_common_chinese_is_in_vocabulary(tiny_ckpt):
    pieces = tokenizer(tiny_ckpt).tokenize("你好，中国的首都是北京。")
    assert not any(p.startswith("<0x") for p in pieces)


@pytest.mark.parametrize("text", ["😊", "龘"])
def test_rare_characters_fall_back_to_bytes(tiny_ckpt, text):
    pieces = [p for p in tokenizer(tiny_ckpt).tokenize(text) if p != "▁"]
    assert pieces == [f"<0x{b:02X}>" for b in text.encode("utf-8")]


def test_chat_template_is_upstream_verbatim(tiny_ckpt):
    tok = tokenizer(tiny_ckpt)
    assert tok.chat_template == CHAT_TEMPLATE
    messages = [{"role": "user", "content": " 你好 "}, {"role": "assistant", "content": "hi "},
                {"role": "user", "content": "again"}]
    assert tok.apply_chat_template(messages, tokenize=False) == "<用户>你好<AI>hi<用户>again<AI>"


def test_tokenizer_json_encodes_like_tokenizer_model(tmp_path):
    with_json = write_checkpoint(tmp_path / "json", tokenizer_json=True)
    without = write_checkpoint(tmp_path / "model")
    assert (with_json / "tokenizer.json").is_file() and not (without / "tokenizer.json").exists()
    a, b = tokenizer(with_json), tokenizer(without)
    for text in ROUND_TRIP_TEXTS:
        assert a(text).input_ids == b(text).input_ids
        assert a.decode(a(text).input_ids, skip_special_tokens=True) == text


# --- the demo model --------------------------------------------------------------------------------

def greedy_reply(model, tok, question: str, max_new_tokens: int = 200) -> list[int]:
    prompt = tok.apply_chat_template([{"role": "user", "content": question}], tokenize=False)
    ids = tok(prompt, return_tensors="pt").input_ids  # BOS added, as upstream chat() does
    out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                         max_new_tokens=max_new_tokens, pad_token_id=2)
    return out[0, ids.shape[1]:].tolist()


def test_demo_answers_every_question_greedily(demo_ckpt):
    model, tok = load_granite(demo_ckpt), tokenizer(demo_ckpt)
    for question, answer in DEMO_QA:
        reply = greedy_reply(model, tok, question)
        assert reply[-1] == 2, question
        assert tok.decode(reply[:-1]) == answer


@pytest.mark.parametrize("question", ["你好", "hello", "Send me a smiley."])
def test_demo_answers_in_bf16_too(demo_ckpt, question):
    model, tok = load_granite(demo_ckpt, torch.bfloat16), tokenizer(demo_ckpt)
    reply = greedy_reply(model, tok, question)
    assert reply[-1] == 2 and tok.decode(reply[:-1]) == dict(DEMO_QA)[question]


def test_demo_data_covers_streaming_markdown_and_latex(tiny_ckpt):
    tok = tokenizer(tiny_ckpt)
    answers = [a for _, a in DEMO_QA]
    assert 15 <= len(DEMO_QA) <= 30
    assert max(len(tok.tokenize(a)) for a in answers) >= 60
    assert any("```" in a for a in answers) and any("$" in a for a in answers)
    assert any(p.startswith("<0x") for a in answers for p in tok.tokenize(a))


# The shipped demo model (demo_data/model/): what `--demo` loads, and what the trainer writes today.

STALE = f"the shipped demo model is stale: regenerate it with `{checkpoint.DEMO_REGENERATE_COMMAND}`"


def test_demo_uses_the_shipped_checkpoint_and_builds_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("MINICPM_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(checkpoint, "_train_demo", lambda: pytest.fail("--demo trained a model"))
    assert demo_checkpoint_dir() == DEMO_MODEL_DIR
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["config.json", "generation_config.json", "tokenizer.model",
                                  "tokenizer_config.json", "special_tokens_map.json"])
def test_shipped_demo_files_are_what_the_trainer_writes(demo_ckpt, name):
    assert (DEMO_MODEL_DIR / name).read_bytes() == (demo_ckpt / name).read_bytes(), f"{name}: {STALE}"


def test_shipped_demo_weights_have_the_trainers_names_shapes_and_dtype(demo_ckpt):
    assert safetensors_keys(DEMO_MODEL_DIR / "model.safetensors") == safetensors_keys(demo_ckpt / "model.safetensors"), STALE
    assert sorted(p.name for p in DEMO_MODEL_DIR.iterdir()) == sorted(p.name for p in demo_ckpt.iterdir()), STALE


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_shipped_demo_answers_every_question_greedily(dtype):
    model, tok = load_granite(DEMO_MODEL_DIR, dtype), tokenizer(DEMO_MODEL_DIR)
    for question, answer in DEMO_QA:
        reply = greedy_reply(model, tok, question)
        assert reply[-1] == 2 and tok.decode(reply[:-1]) == answer, f"{question!r}: {STALE}"


def test_cli_prints_what_it_wrote(tmp_path, capsys):
    assert checkpoint.main([str(tmp_path), "--weights", "sharded", "--layers", "3"]) == 0
    out = capsys.readouterr().out
    assert str(tmp_path) in out and "3 layers" in out
    assert "model.safetensors.index.json" in out and "tokenizer.model" in out
