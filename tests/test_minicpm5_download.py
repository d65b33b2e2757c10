"""`--model OpenBMB/MiniCPM5-2B` downloads through ModelScope like the MiniCPM-2B ids, and a MiniCPM5
download is complete only with its tokenizer.json, its chat template and every shard its index lists.
ModelScope is stood in for (no network) by a snapshot_download that writes the upstream layout."""

from __future__ import annotations

import shutil
import sys
import types
from pathlib import Path

import pytest

from minicpm_core import download
from minicpm_core.download import check_model_dir, download_model, missing_files, resolve_source
from minicpm_core.errors import ModelNotFound
from minicpm_core.families.minicpm5 import MINICPM5
from minicpm_core.loader import load_model
from testkit.minicpm5 import INDEX_NAME, SHARD_NAME

MODEL_ID = "OpenBMB/MiniCPM5-2B"


def fake_modelscope(monkeypatch, snapshot_download):
    monkeypatch.setitem(sys.modules, "modelscope", types.SimpleNamespace(snapshot_download=snapshot_download))


def test_the_minicpm5_ids_are_known_models():
    ids = download.known_model_ids()
    assert ids[0] == download.DEFAULT_MODEL_ID  # MiniCPM-2B stays the default
    assert {model.id for model in MINICPM5.known_models} <= set(ids) and MODEL_ID in ids


def test_download_puts_minicpm5_in_cache_owner_name_and_it_loads(monkeypatch, tmp_path, m5_ckpt):
    calls = []

    def snapshot_download(model_id, *, cache_dir, revision, local_dir):
        calls.append((model_id, cache_dir, revision, local_dir))
        shutil.copytree(m5_ckpt, local_dir, dirs_exist_ok=True)
        return local_dir

    fake_modelscope(monkeypatch, snapshot_download)
    assert download.main([MODEL_ID, "--cache-dir", str(tmp_path)]) == 0
    path = tmp_path / "OpenBMB" / "MiniCPM5-2B"
    assert calls == [(MODEL_ID, str(tmp_path), "master", str(path))]
    assert resolve_source(MODEL_ID, tmp_path) == path
    lm = load_model(MODEL_ID, device="cpu", dtype="float32", cache_dir=tmp_path)
    assert lm.family is MINICPM5 and lm.path == path


def test_the_shipped_layout_is_complete(m5_ckpt):
    assert missing_files(m5_ckpt) == []
    assert sorted(p.name for p in m5_ckpt.iterdir()) == [
        "chat_template.jinja", "config.json", "generation_config.json", SHARD_NAME, INDEX_NAME,
        "tokenizer.json", "tokenizer_config.json"]


@pytest.mark.parametrize("remove, named", [
    ([SHARD_NAME], f"weight shard {SHARD_NAME} (listed in {INDEX_NAME})"),
    ([SHARD_NAME, INDEX_NAME], "weights"),
    (["tokenizer.json"], "tokenizer"),
    (["chat_template.jinja"], "chat template (chat_template.jinja, or chat_template in tokenizer_config.json)"),
])
def test_an_incomplete_minicpm5_download_names_what_is_missing(m5_ckpt, tmp_path, remove, named):
    ckpt = shutil.copytree(m5_ckpt, tmp_path / "OpenBMB" / "MiniCPM5-2B")
    for name in remove:
        (ckpt / name).unlink()
    with pytest.raises(ModelNotFound) as err:
        check_model_dir(ckpt)
    message = str(err.value)
    assert f"  - {named}" in message and message.count("\n  - ") == 1  # only what is actually missing
    assert f"python -m minicpm_core.download {MODEL_ID} --cache-dir {tmp_path}" in message
    with pytest.raises(ModelNotFound, match="has not been downloaded|is incomplete"):
        resolve_source(MODEL_ID, tmp_path)


def test_a_partial_download_is_resumed_by_running_the_command_again(monkeypatch, tmp_path, m5_ckpt):
    def snapshot_download(model_id, *, cache_dir, revision, local_dir):  # modelscope skips what is there
        for source in m5_ckpt.iterdir():
            if not (Path(local_dir) / source.name).exists():
                shutil.copy(source, local_dir)
        return local_dir

    target = shutil.copytree(m5_ckpt, tmp_path / "OpenBMB" / "MiniCPM5-2B")
    (target / "chat_template.jinja").unlink()
    assert missing_files(target)
    fake_modelscope(monkeypatch, snapshot_download)
    assert download_model(MODEL_ID, tmp_path) == target and missing_files(target) == []
