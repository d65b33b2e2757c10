"""Checkpoint directories are checked before use, and a failed download is one clear message."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import types
from pathlib import Path

import pytest

from minicpm_core import download
from testkit.checkpoint import write_checkpoint
from minicpm_core.download import (
    check_model_dir, default_model_dir, download_model, resolve_source, validate_model_id,
)
from minicpm_core.errors import InvalidRequest, ModelNotFound

REPO_ROOT = Path(__file__).resolve().parents[1]


def copy_ckpt(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_default_model_dir_is_cache_owner_name():
    assert default_model_dir("OpenBMB/MiniCPM-2B-sft-bf16", "/data") == Path("/data/OpenBMB/MiniCPM-2B-sft-bf16")


def test_no_cache_dir_means_the_seed_tutorials():
    assert default_model_dir("OpenBMB/MiniCPM-2B-sft-fp32", None) == Path(
        "/root/autodl-tmp/OpenBMB/MiniCPM-2B-sft-fp32")


@pytest.mark.parametrize("bad", ["MiniCPM-2B-sft-fp32", "a/b/c", "", "/OpenBMB/x", "OpenBMB/", "Open BMB/x"])
def test_bad_model_id_is_rejected_with_the_expected_form(bad):
    with pytest.raises(InvalidRequest, match="Owner/Name"):
        validate_model_id(bad)


def test_missing_dir_names_path_and_download_command(tmp_path):
    target = tmp_path / "OpenBMB" / "MiniCPM-2B-sft-bf16"
    with pytest.raises(ModelNotFound) as err:
        check_model_dir(target)
    message = str(err.value)
    assert str(target) in message and "does not exist" in message
    assert f"python -m minicpm_core.download OpenBMB/MiniCPM-2B-sft-bf16 --cache-dir {tmp_path}" in message


@pytest.mark.parametrize("remove, named", [
    (["config.json"], "config.json"),
    (["model.safetensors"], "weights"),
    (["tokenizer.model"], "tokenizer"),
])
def test_incomplete_dir_names_each_missing_piece(tiny_ckpt, tmp_path, remove, named):
    ckpt = copy_ckpt(tiny_ckpt, tmp_path / "OpenBMB" / "MiniCPM-2B-sft-fp32")
    for name in remove:
        (ckpt / name).unlink()
    with pytest.raises(ModelNotFound) as err:
        check_model_dir(ckpt)
    message = str(err.value)
    assert str(ckpt) in message and f"- {named}" in message
    assert message.count("\n  - ") == 1  # only what is actually missing
    assert f"--cache-dir {tmp_path}" in message


def test_empty_dir_lists_all_three_pieces(tmp_path):
    with pytest.raises(ModelNotFound) as err:
        check_model_dir(tmp_path)
    assert [line.split()[1] for line in str(err.value).splitlines() if line.startswith("  - ")] == [
        "config.json", "weights", "tokenizer"]


def test_sharded_index_with_a_missing_shard_names_the_shard(tmp_path):
    ckpt = write_checkpoint(tmp_path / "ckpt", weights="sharded")
    (ckpt / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(ModelNotFound, match=r"weight shard model-00002-of-00002\.safetensors"):
        check_model_dir(ckpt)


@pytest.mark.parametrize("weights", ["sharded", "sharded-bin"])
def test_complete_sharded_checkpoint_passes(tmp_path, weights):
    check_model_dir(write_checkpoint(tmp_path, weights=weights))


def test_complete_checkpoints_pass(tiny_ckpt, tiny_ckpt_bin):
    check_model_dir(tiny_ckpt)
    check_model_dir(tiny_ckpt_bin)


def test_resolve_source_uses_an_existing_dir(tiny_ckpt):
    assert resolve_source(str(tiny_ckpt), "/nonexistent") == tiny_ckpt


def test_resolve_source_finds_a_downloaded_model_id(tiny_ckpt, tmp_path):
    copy_ckpt(tiny_ckpt, tmp_path / "OpenBMB" / "MiniCPM-2B-sft-bf16")
    assert resolve_source("OpenBMB/MiniCPM-2B-sft-bf16", tmp_path) == tmp_path / "OpenBMB" / "MiniCPM-2B-sft-bf16"


def test_resolve_source_of_an_undownloaded_id_gives_the_command(tmp_path):
    with pytest.raises(ModelNotFound) as err:
        resolve_source("OpenBMB/MiniCPM-2B-dpo-bf16", tmp_path)
    assert f"python -m minicpm_core.download OpenBMB/MiniCPM-2B-dpo-bf16 --cache-dir {tmp_path}" in str(err.value)


def test_resolve_source_of_a_missing_path_says_it_does_not_exist(tmp_path):
    with pytest.raises(ModelNotFound, match="does not exist"):
        resolve_source(str(tmp_path / "nowhere"), tmp_path)


# --- download_model with a stand-in modelscope ----------------------------------------------------

def fake_modelscope(monkeypatch, snapshot_download):
    monkeypatch.setitem(sys.modules, "modelscope", types.SimpleNamespace(snapshot_download=snapshot_download))


def test_download_puts_files_in_cache_owner_name(monkeypatch, tmp_path):
    calls = []

    def snapshot_download(model_id, *, cache_dir, revision, local_dir):
        calls.append((model_id, cache_dir, revision, local_dir))
        write_checkpoint(local_dir)
        return local_dir

    fake_modelscope(monkeypatch, snapshot_download)
    path = download_model("OpenBMB/MiniCPM-2B-sft-fp32", tmp_path)
    assert path == tmp_path / "OpenBMB" / "MiniCPM-2B-sft-fp32"
    assert calls == [("OpenBMB/MiniCPM-2B-sft-fp32", str(tmp_path), "master", str(path))]


def test_failed_download_names_target_and_retry_and_leaves_no_empty_dirs(monkeypatch, tmp_path):
    def snapshot_download(model_id, *, cache_dir, revision, local_dir):
        os.makedirs(local_dir)
        try:
            raise OSError("[Errno -2] Name or service not known")
        except OSError as exc:
            raise ConnectionError("Max retries exceeded") from exc

    fake_modelscope(monkeypatch, snapshot_download)
    cache = tmp_path / "cache"
    with pytest.raises(ModelNotFound) as err:
        download_model("OpenBMB/MiniCPM-2B-sft-fp32", cache)
    message = str(err.value)
    assert str(cache / "OpenBMB" / "MiniCPM-2B-sft-fp32") in message
    assert "Name or service not known" in message and "proxy" in message
    assert f"python -m minicpm_core.download OpenBMB/MiniCPM-2B-sft-fp32 --cache-dir {cache}" in message
    assert not cache.exists()


# --- the CLI ---------------------------------------------------------------------------------------

def unused_local_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cli_network_failure_exits_nonzero_with_one_message(tmp_path):
    # ModelScope is pointed at a closed local port, so this fails the same way with or without network.
    env = dict(os.environ, MODELSCOPE_ENDPOINT=f"http://127.0.0.1:{unused_local_port()}",
               MODELSCOPE_API_MAX_RETRIES="1", MODELSCOPE_REPO_TREE_PAGE_MAX_ATTEMPTS="1",
               NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost", PYTHONPATH=str(REPO_ROOT))
    result = subprocess.run(
        [sys.executable, "-m", "minicpm_core.download", "OpenBMB/MiniCPM-2B-sft-fp32", "--cache-dir", str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert str(tmp_path / "OpenBMB" / "MiniCPM-2B-sft-fp32") in result.stderr
    assert f"python -m minicpm_core.download OpenBMB/MiniCPM-2B-sft-fp32 --cache-dir {tmp_path}" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_cli_bad_model_id_exits_2(capsys):
    assert download.main(["not-a-model-id"]) == 2
    assert "Owner/Name" in capsys.readouterr().err


# --- downloads in the background (the app's buttons) ------------------------------------------------

def test_a_background_download_is_followed_not_repeated_and_reports_its_progress(monkeypatch, tmp_path):
    from minicpm_core.download import latest_download, start_or_follow

    halfway, finish, calls = threading.Event(), threading.Event(), []

    def snapshot_download(model_id, *, cache_dir, revision, local_dir):  # half the files, then the rest
        calls.append(model_id)
        Path(local_dir).mkdir(parents=True)
        (Path(local_dir) / "part").write_bytes(b"x" * 1000)
        halfway.set()
        finish.wait(30)
        write_checkpoint(local_dir)
        return local_dir

    fake_modelscope(monkeypatch, snapshot_download)
    model = "OpenBMB/MiniCPM-2B-sft-bf16"
    job = start_or_follow(model, tmp_path)
    assert halfway.wait(30) and job.bytes_on_disk() == 1000, "what is on disk so far"
    assert start_or_follow(model, tmp_path) is job, "a second click follows the first download"
    finish.set()
    job.join(60)
    assert latest_download(model, tmp_path) is job and job.error is None and job.path == job.target
    assert job.bytes_on_disk() > 1000 and calls == [model]
    assert latest_download("OpenBMB/MiniCPM5-1B", tmp_path) is None


def test_a_failed_background_download_keeps_its_error_for_the_page(monkeypatch, tmp_path):
    from minicpm_core.download import start_or_follow

    def snapshot_download(model_id, *, cache_dir, revision, local_dir):
        raise ConnectionError("Name or service not known")

    fake_modelscope(monkeypatch, snapshot_download)
    job = start_or_follow("OpenBMB/MiniCPM5-1B", tmp_path)
    job.join(60)
    assert isinstance(job.error, ModelNotFound) and "Name or service not known" in str(job.error)
