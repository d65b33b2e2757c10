"""Session-wide checkpoints that the tests build for themselves (no downloads, no user cache).

- `tiny_ckpt`: random tiny MiniCPM-2B in the upstream layout, bf16 `model.safetensors`, plus
  `configuration_minicpm.py`/`modeling_minicpm.py` that raise if anyone executes them.
- `tiny_ckpt_bin`: the same shape as fp32 `pytorch_model.bin` (the seed's -sft-fp32 format), with the
  same trap files.
- `demo_ckpt`: the tiny model trained to answer `testkit.checkpoint.DEMO_QA` under greedy
  decoding, trained afresh (15-45 s, once per session, only when a test asks for it) so that
  tests/test_checkpoint.py can compare it with the shipped one the app's `--demo` loads.
- `m5_ckpt`: random tiny MiniCPM5 (testkit.minicpm5) in OpenBMB's layout. Copy it before changing it.
- `m5_demo_engine`: an Engine on the shipped MiniCPM5 demo (`--demo-family minicpm5`: thinks, then
  answers `testkit.minicpm5.demo_qa()`), on the CPU in fp32, one reply at a time.
(tests/api/conftest.py adds engines and servers on the MiniCPM-2B checkpoints: `m2b_demo_engine`, `tiny_engine`.)

`MINICPM_ALLOW_OPEN=1` for every test: AppTest reads .streamlit/config.toml (0.0.0.0), where the app
asks for its generated access token without a password; tests/test_open_network.py lifts it.

Tests run torch on one thread: the models are tiny, and on a shared 2-core machine a second thread
spends its time waiting for a busy core (generation measured 5-10x slower with two).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from minicpm_core.engine import Engine
from minicpm_core.loader import load_model
from testkit import minicpm5
from testkit.checkpoint import write_checkpoint, write_demo_checkpoint
from ui.backend import ALLOW_OPEN_ENV


def pytest_configure(config: pytest.Config) -> None:
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def allow_open_network(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ALLOW_OPEN_ENV, "1")


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("tiny_ckpt"), remote_code_trap=True)


@pytest.fixture(scope="session")
def tiny_ckpt_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("tiny_ckpt_bin"), weights="bin", remote_code_trap=True)


@pytest.fixture(scope="session")
def demo_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_demo_checkpoint(tmp_path_factory.mktemp("demo_ckpt"))


@pytest.fixture(scope="session")
def m5_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return minicpm5.write_checkpoint(tmp_path_factory.mktemp("m5_ckpt"))


@pytest.fixture(scope="session")
def m5_demo_engine() -> Iterator[Engine]:
    engine = Engine(load_model(minicpm5.DEMO_MODEL_DIR, device="cpu", dtype="float32"))
    yield engine
    engine.close()


@pytest.fixture
def use_local_model(monkeypatch: pytest.MonkeyPatch):
    """`use_local_model(model_dir, data_dir)` sets the app's environment for an AppTest: that model on
    the CPU in fp32, its store in `data_dir`, none of the user's own settings (password, demo, remote
    backend, concurrency, queue)."""
    def use(model_dir: Path, data_dir: Path) -> None:
        monkeypatch.setenv("MINICPM_MODEL", str(model_dir))
        monkeypatch.setenv("MINICPM_DEVICE", "cpu")
        monkeypatch.setenv("MINICPM_DTYPE", "float32")
        monkeypatch.setenv("MINICPM_DATA_DIR", str(data_dir))
        for name in ("MINICPM_PASSWORD", "MINICPM_DEMO", "MINICPM_DEMO_FAMILY", "MINICPM_BACKEND", "MINICPM_BASE_URL",
                     "MINICPM_MAX_CONCURRENT", "MINICPM_MAX_QUEUE"):
            monkeypatch.delenv(name, raising=False)
    return use
