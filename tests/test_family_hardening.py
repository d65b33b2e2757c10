"""The family seam, hardened (issue 18): MiniCPM-2B claims no config of another model type even with
muP scalars, KV bytes per token come from the family (explicit head_dim, GQA), and how a rendered
template becomes ids is the family's (one BOS either way)."""

from __future__ import annotations

import json
import shutil

import pytest
from transformers import AutoTokenizer

from minicpm_core.errors import ModelNotFound
from minicpm_core.families import detect
from minicpm_core.families.minicpm2b import MINICPM_2B
from minicpm_core.families.minicpm5 import MINICPM5
from minicpm_core.loader import load_model
from minicpm_core.prompt import encode
from testkit.minicpm5 import write_checkpoint

# MiniCPM3-4B's config.json, as published: MLA attention, ChatML, and the muP scalars MiniCPM-2B has too.
MINICPM3 = {"architectures": ["MiniCPM3ForCausalLM"], "model_type": "minicpm3", "hidden_size": 2560,
            "num_hidden_layers": 62, "num_attention_heads": 40, "num_key_value_heads": 40, "vocab_size": 73448,
            "intermediate_size": 6400, "scale_emb": 12, "scale_depth": 1.4, "dim_model_base": 256,
            "q_lora_rank": 768, "kv_lora_rank": 256, "qk_nope_head_dim": 64, "qk_rope_head_dim": 32}


def test_minicpm3_with_mup_scalars_is_not_claimed_by_minicpm_2b(tiny_ckpt, tmp_path):
    target = tmp_path / "MiniCPM3-4B"
    shutil.copytree(tiny_ckpt, target)
    (target / "config.json").write_text(json.dumps(MINICPM3), encoding="utf-8")
    assert MINICPM_2B.mismatch(MINICPM3, target) == ("its model_type is 'minicpm3', not MiniCPM-2B's ('minicpm', "
                                                     "or none in old uploads)")
    with pytest.raises(ModelNotFound, match="not MiniCPM-2B: its model_type is 'minicpm3'"):
        detect(target)
    with pytest.raises(ModelNotFound):
        load_model(target, device="cpu")


def test_kv_bytes_per_token_honour_gqa_and_an_explicit_head_dim():
    two_b = {"num_hidden_layers": 40, "hidden_size": 2304, "num_attention_heads": 36, "num_key_value_heads": 36}
    assert MINICPM_2B.kv_bytes_per_token(two_b, 2) == 2 * 40 * 36 * 64 * 2  # ~0.35 MiB, as the facts say
    five = {"num_hidden_layers": 24, "hidden_size": 1536, "num_attention_heads": 16, "num_key_value_heads": 2,
            "head_dim": 128}
    assert MINICPM5.kv_bytes_per_token(five, 2) == 2 * 24 * 2 * 128 * 2  # not 1536 / 16 = 96, not 16 heads


def test_one_bos_whoever_writes_it(tiny_ckpt, tmp_path):
    five = write_checkpoint(tmp_path / "m5")
    for path, family in ((tiny_ckpt, MINICPM_2B), (five, MINICPM5)):
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
        ids = encode([{"role": "user", "content": "hi"}], tok, family)
        assert ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == 1, family
