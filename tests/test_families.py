"""The model families: recognised from a checkpoint's files, MiniCPM-2B the default, asked by the rest."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import LlamaConfig
from transformers.models.auto.configuration_auto import CONFIG_MAPPING

from minicpm_core import download, families, params, paths, prompt, remote, settings, store
from minicpm_core.errors import ModelNotFound
from minicpm_core.families import DEFAULT_FAMILY, FAMILIES, by_name, detect
from minicpm_core.families.minicpm2b import MINICPM_2B
from minicpm_core.loader import load_model
from minicpm_core.params import GenerationParams

LLAMA_CONFIG = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64,
                "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
                "intermediate_size": 128, "vocab_size": 1500, "max_position_embeddings": 131072}


def copy_with_config(source, target, config):
    shutil.copytree(source, target)
    (target / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return target


def test_minicpm_2b_is_the_default_and_first_family():
    assert DEFAULT_FAMILY is MINICPM_2B and FAMILIES[0] is MINICPM_2B
    assert by_name("minicpm-2b") is MINICPM_2B
    with pytest.raises(ValueError, match="known: minicpm-2b"):
        by_name("gpt-2")


def test_a_minicpm_2b_checkpoint_is_recognised_by_its_files(tiny_ckpt, tmp_path):
    assert detect(tiny_ckpt) is MINICPM_2B
    legacy = json.loads((tiny_ckpt / "config.json").read_text(encoding="utf-8"))
    del legacy["model_type"]  # the first fp32 upload
    renamed = copy_with_config(tiny_ckpt, tmp_path / "some-name", legacy)
    assert detect(renamed) is MINICPM_2B


def test_another_family_is_a_clear_error_listing_the_supported_ones(tiny_ckpt, tmp_path):
    llama = copy_with_config(tiny_ckpt, tmp_path / "MiniCPM-2B-sft-bf16", LLAMA_CONFIG)  # the name misleads
    with pytest.raises(ModelNotFound) as caught:
        load_model(llama, device="cpu")
    message = str(caught.value)
    assert "not MiniCPM-2B: it lacks scale_emb, scale_depth, dim_model_base" in message
    assert "Supported families: MiniCPM-2B (e.g. OpenBMB/MiniCPM-2B-sft-fp32" in message
    assert caught.value.code == "unsupported_family"


@pytest.mark.parametrize("text, error", [("{not json", "is not readable JSON"), ("[1, 2]", "is not a model config")])
def test_a_damaged_config_is_a_clear_error(tmp_path, text, error):
    (tmp_path / "config.json").write_text(text, encoding="utf-8")
    with pytest.raises(ModelNotFound, match=error):
        detect(tmp_path)


def test_model_type_minicpm_loads_through_our_mapping_whatever_transformers_registers(tiny_ckpt, monkeypatch):
    class SomeOtherMiniCPMConfig(LlamaConfig):  # e.g. a native MiniCPM4 landing in transformers
        model_type = "minicpm"

    expected = load_model(tiny_ckpt, device="cpu", dtype="float32")
    monkeypatch.setitem(CONFIG_MAPPING._extra_content, "minicpm", SomeOtherMiniCPMConfig)
    assert CONFIG_MAPPING["minicpm"] is SomeOtherMiniCPMConfig
    lm = load_model(tiny_ckpt, device="cpu", dtype="float32")
    assert lm.family is MINICPM_2B and type(lm.model) is MINICPM_2B.model_class
    ids = torch.tensor([[1, 100, 200, 300]])
    with torch.no_grad():
        assert torch.equal(lm.model(ids).logits, expected.model(ids).logits)


def test_the_loaded_model_carries_its_family_and_its_context(tiny_ckpt):
    lm = load_model(tiny_ckpt, device="cpu", dtype="float32")
    assert lm.family is MINICPM_2B
    assert lm.context_length == MINICPM_2B.context_length
    assert type(lm.model).__name__ == MINICPM_2B.model_class_name


def test_the_family_defaults_are_the_parameters_defaults():
    defaults = GenerationParams()
    assert {name: getattr(defaults, name) for name in MINICPM_2B.defaults} == dict(MINICPM_2B.defaults)
    assert set(MINICPM_2B.defaults) <= set(GenerationParams.model_fields)
    with pytest.raises(TypeError):
        MINICPM_2B.defaults["temperature"] = 1.0  # a family is frozen, its defaults too


def test_context_length_and_default_model_come_from_the_default_family():
    assert params.MODEL_CONTEXT == remote.DEFAULT_CONTEXT == DEFAULT_FAMILY.context_length
    assert GenerationParams().max_length == DEFAULT_FAMILY.context_length
    assert settings.ModelSettings().model == download.DEFAULT_MODEL_ID == DEFAULT_FAMILY.default_model.id
    assert download.known_model_ids()[0] == DEFAULT_FAMILY.default_model.id
    assert "OpenBMB/MiniCPM-1B-sft-bf16" in download.known_model_ids()  # the same architecture


def test_remote_replies_stop_on_the_default_familys_markers():
    assert remote.request_arguments(GenerationParams())["stop"] == list(DEFAULT_FAMILY.stop_markers)


def test_a_stored_conversation_has_the_limit_of_a_request():
    assert store.MAX_MESSAGES is prompt.MAX_MESSAGES


def test_the_data_directory_is_defined_once(monkeypatch, tmp_path):
    monkeypatch.setenv(paths.DATA_DIR_ENV, str(tmp_path))
    assert paths.data_dir() == tmp_path and store.default_db_path().parent == tmp_path
    monkeypatch.delenv(paths.DATA_DIR_ENV)
    assert paths.data_dir() == paths.DEFAULT_DATA_DIR.expanduser()
    assert store.default_db_path().parent == paths.data_dir()


def test_the_runtime_finds_the_shipped_demo_without_testkit():
    assert paths.demo_checkpoint_dir() == paths.DEMO_MODEL_DIR
    assert detect(paths.demo_checkpoint_dir()) is MINICPM_2B


def test_importing_the_families_loads_no_model_code():
    code = "import sys, minicpm_core.families, minicpm_core.prompt; print('torch' in sys.modules)"
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root).stdout
    assert out.strip() == "False"
    assert families.DEFAULT_FAMILY.name == "minicpm-2b"
