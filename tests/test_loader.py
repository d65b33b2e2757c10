"""The loader: MiniCPM-2B on transformers' Granite classes, checked against the published formulas."""

import json
import logging
import math
import shutil

import pytest
import torch
from safetensors.torch import load_file

from minicpm_core import loader
from minicpm_core.families.minicpm2b import MINICPM_2B
from minicpm_core.errors import InvalidRequest, ModelNotFound
from minicpm_core.loader import choose_dtype, load_model


def read_state_dict(path):
    if (path / "model.safetensors").exists():
        return {k: v.float() for k, v in load_file(path / "model.safetensors").items()}
    return {k: v.float() for k, v in torch.load(path / "pytorch_model.bin", weights_only=True).items()}


def rms_norm(x, weight, eps):
    return weight * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)


def rope(x, positions, theta=10000.0):
    half = x.shape[-1] // 2
    inv_freq = 1.0 / theta ** (torch.arange(0, half, dtype=torch.float64) * 2 / x.shape[-1])
    angles = positions[:, None].double() * inv_freq[None, :]
    cos, sin = torch.cat([angles.cos()] * 2, -1).float(), torch.cat([angles.sin()] * 2, -1).float()
    rotated = torch.cat([-x[..., half:], x[..., :half]], -1)
    return x * cos + rotated * sin


def reference_logits(path, ids):
    """MiniCPM-2B's forward written from the published formulas, independent of transformers."""
    cfg = json.loads((path / "config.json").read_text())
    w = read_state_dict(path)
    hidden, layers, heads = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["num_attention_heads"]
    head_dim, eps = hidden // heads, cfg.get("rms_norm_eps", 1e-5)
    branch_scale = cfg["scale_depth"] / math.sqrt(layers)
    seq = len(ids)
    x = w["model.embed_tokens.weight"][ids] * cfg["scale_emb"]
    positions = torch.arange(seq)
    mask = torch.full((seq, seq), float("-inf")).triu(1)
    for i in range(layers):
        p = f"model.layers.{i}."
        h = rms_norm(x, w[p + "input_layernorm.weight"], eps)
        q, k, v = (h @ w[p + f"self_attn.{n}_proj.weight"].T for n in "qkv")
        q, k, v = (t.view(seq, heads, head_dim).transpose(0, 1) for t in (q, k, v))
        q, k = rope(q, positions), rope(k, positions)
        attn = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(head_dim) + mask, -1) @ v
        attn = attn.transpose(0, 1).reshape(seq, hidden) @ w[p + "self_attn.o_proj.weight"].T
        x = x + branch_scale * attn
        h = rms_norm(x, w[p + "post_attention_layernorm.weight"], eps)
        mlp = (torch.nn.functional.silu(h @ w[p + "mlp.gate_proj.weight"].T) * (h @ w[p + "mlp.up_proj.weight"].T))
        x = x + branch_scale * (mlp @ w[p + "mlp.down_proj.weight"].T)
    x = rms_norm(x, w["model.norm.weight"], eps) / (hidden / cfg["dim_model_base"])
    return x @ w["model.embed_tokens.weight"].T  # tied lm_head


@pytest.mark.parametrize("fixture", ["tiny_ckpt", "tiny_ckpt_bin"])
def test_logits_match_reference_forward(fixture, request):
    path = request.getfixturevalue(fixture)
    lm = load_model(path, device="cpu", dtype="float32")
    ids = lm.tokenizer("<用户>你好, MiniCPM!<AI>")["input_ids"]
    with torch.no_grad():
        ours = lm.model(torch.tensor([ids])).logits[0].float()
    assert (ours - reference_logits(path, ids)).abs().max().item() <= 1e-4


def test_loaded_model_reports_what_a_status_page_needs(tiny_ckpt):
    lm = load_model(tiny_ckpt, device="cpu", dtype="float32")
    assert not lm.model.training
    assert lm.device.type == "cpu" and lm.dtype == torch.float32 and lm.dtype_name == "float32"
    assert lm.attn_implementation == "sdpa"
    assert lm.num_parameters == sum(p.numel() for p in lm.model.parameters())
    assert lm.memory_bytes == lm.num_parameters * 4
    assert lm.load_seconds > 0 and lm.context_length == 4096 and lm.path == tiny_ckpt
    assert lm.model.lm_head.weight is lm.model.model.embed_tokens.weight
    assert lm.tokenizer.bos_token_id == 1 and lm.tokenizer.eos_token_id == 2


def test_checkpoint_code_is_never_executed(tiny_ckpt):
    # the fixture's modeling_minicpm.py and configuration_minicpm.py raise on import
    assert (tiny_ckpt / "modeling_minicpm.py").exists()
    lm = load_model(tiny_ckpt, device="cpu", dtype="float32")
    assert type(lm.model).__name__ == "GraniteForCausalLM"


def test_trust_remote_code_is_explicit_and_does_run_it(tiny_ckpt):
    with pytest.raises(Exception, match="remote code was executed"):
        load_model(tiny_ckpt, device="cpu", dtype="float32", trust_remote_code=True)


@pytest.mark.parametrize("dtype, expected", [("bfloat16", torch.bfloat16), ("float16", torch.float16),
                                             ("float32", torch.float32)])
def test_explicit_dtype_is_honoured(tiny_ckpt_bin, dtype, expected):
    lm = load_model(tiny_ckpt_bin, device="cpu", dtype=dtype)
    assert {p.dtype for p in lm.model.parameters()} == {expected}


def test_bf16_and_fp32_weights_give_the_same_model(tiny_ckpt):
    as_bf16 = load_model(tiny_ckpt, device="cpu", dtype="bfloat16")
    as_fp32 = load_model(tiny_ckpt, device="cpu", dtype="float32")
    for (name, a), (_, b) in zip(as_bf16.model.named_parameters(), as_fp32.model.named_parameters()):
        assert torch.equal(a.float(), b), name


def test_auto_dtype_on_bf16_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert choose_dtype("auto", torch.device("cuda")) == torch.bfloat16


def test_auto_dtype_on_old_gpu_warns_and_uses_fp16(monkeypatch, caplog):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    with caplog.at_level(logging.WARNING):
        assert choose_dtype("auto", torch.device("cuda")) == torch.float16
    assert "trained in bf16" in caplog.text


@pytest.mark.parametrize("native_bf16, expected", [(True, torch.bfloat16), (False, torch.float32)])
def test_auto_dtype_on_cpu_depends_on_native_bf16(monkeypatch, native_bf16, expected):
    monkeypatch.setattr(loader, "cpu_supports_bf16", lambda: native_bf16)
    assert choose_dtype("auto", torch.device("cpu")) == expected


def test_unknown_dtype_and_device_are_clear_errors():
    with pytest.raises(InvalidRequest, match="dtype must be"):
        choose_dtype("int8", torch.device("cpu"))
    with pytest.raises(InvalidRequest, match="device must be"):
        loader.choose_device("tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_cuda_without_gpu_is_a_clear_error():
    with pytest.raises(InvalidRequest, match="no CUDA GPU"):
        loader.choose_device("cuda")


def test_an_unusable_nvidia_gpu_is_explained_not_silently_skipped(tiny_ckpt, monkeypatch, caplog):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(loader, "nvidia_gpu_present", lambda: True)  # e.g. a driver older than torch's CUDA
    with caplog.at_level(logging.WARNING, logger="minicpm_core.loader"):
        lm = load_model(tiny_ckpt, device="auto")
    assert lm.device.type == "cpu" and lm.gpu_problem
    assert f"PyTorch {torch.__version__}" in lm.gpu_problem and "pip install 'torch>=2.6'" in lm.gpu_problem
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [lm.gpu_problem]
    with pytest.raises(InvalidRequest, match="has an NVIDIA GPU, but PyTorch"):
        load_model(tiny_ckpt, device="cuda")
    assert load_model(tiny_ckpt, device="cpu").gpu_problem is None  # CPU by choice: nothing to explain


def test_no_gpu_at_all_is_not_a_problem(tiny_ckpt, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(loader, "nvidia_gpu_present", lambda: False)
    assert loader.gpu_problem() is None and load_model(tiny_ckpt).gpu_problem is None


def test_flash_attention_falls_back_to_sdpa_with_one_log_line(tiny_ckpt, caplog):
    with caplog.at_level(logging.WARNING, logger="minicpm_core.loader"):
        lm = load_model(tiny_ckpt, device="cpu", dtype="float32", attn_implementation="flash_attention_2")
    assert lm.attn_implementation == "sdpa"
    assert len([r for r in caplog.records if "falling back to sdpa" in r.getMessage()]) == 1


def test_legacy_config_gets_the_real_context(tiny_ckpt, tmp_path):
    legacy = tmp_path / "legacy"
    shutil.copytree(tiny_ckpt, legacy)
    cfg = json.loads((legacy / "config.json").read_text())
    cfg.pop("model_type", None)
    cfg["max_position_embeddings"] = 2048
    (legacy / "config.json").write_text(json.dumps(cfg))
    assert load_model(legacy, device="cpu", dtype="float32").context_length == 4096


def test_config_mapping_matches_minicpm_scalars():
    raw = dict(hidden_size=2304, num_hidden_layers=40, num_attention_heads=36, vocab_size=122753,
               intermediate_size=5760, scale_emb=12, scale_depth=1.4, dim_model_base=256)
    cfg = MINICPM_2B.transformers_config(raw)
    assert cfg.embedding_multiplier == 12
    assert cfg.residual_multiplier == pytest.approx(1.4 / math.sqrt(40))
    assert cfg.logits_scaling == pytest.approx(9.0)
    assert cfg.attention_multiplier == pytest.approx(1 / 8)
    assert cfg.tie_word_embeddings and cfg.rms_norm_eps == 1e-5


def test_missing_tensor_is_reported_as_incomplete_download(tiny_ckpt, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_ckpt, broken)
    from safetensors.torch import save_file
    weights = load_file(broken / "model.safetensors")
    weights.pop("model.norm.weight")
    save_file(weights, broken / "model.safetensors")
    with pytest.raises(ModelNotFound, match="lack 1 tensors.*model.norm.weight"):
        load_model(broken, device="cpu", dtype="float32")


def test_truncated_bin_is_a_clear_error(tiny_ckpt_bin, tmp_path):
    broken = tmp_path / "truncated"
    shutil.copytree(tiny_ckpt_bin, broken)
    data = (broken / "pytorch_model.bin").read_bytes()
    (broken / "pytorch_model.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelNotFound, match="truncated"):
        load_model(broken, device="cpu", dtype="float32")


def test_sharded_safetensors_load_like_a_single_file(tiny_ckpt, tmp_path):
    from safetensors.torch import save_file
    sharded = tmp_path / "sharded"
    shutil.copytree(tiny_ckpt, sharded)
    weights = load_file(sharded / "model.safetensors")
    (sharded / "model.safetensors").unlink()
    names = sorted(weights)
    halves = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    for file, keys in halves.items():
        save_file({k: weights[k] for k in keys}, sharded / file)
    index = {"weight_map": {k: file for file, keys in halves.items() for k in keys}}
    (sharded / "model.safetensors.index.json").write_text(json.dumps(index))
    a = load_model(tiny_ckpt, device="cpu", dtype="float32").model.state_dict()
    b = load_model(sharded, device="cpu", dtype="float32").model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
