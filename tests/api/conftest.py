"""Fixtures for the HTTP API tests: engines on the tests' own checkpoints and live uvicorn servers.

- `m2b_demo_engine`: the MiniCPM-2B demo model (answers DEMO_QA readably, stops at EOS), two replies at once.
- `tiny_engine`: random tiny MiniCPM-2B weights; greedy replies never reach EOS, so they are long enough to cut.
Each has a live server on 127.0.0.1 (a free port, uvicorn in a thread) and a TestClient, named after it:
`m2b_demo_server`, `m2b_demo_client`, `tiny_server`, `tiny_client`; and so has tests/conftest.py's MiniCPM5
demo engine: `m5_demo_server`, `m5_demo_client`.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from minicpm_core.api import create_app
from minicpm_core.engine import Engine
from minicpm_core.loader import load_model

from .support import LiveServer, wait_until


def _engine(path, max_concurrent: int = 1):
    return Engine(load_model(path, device="cpu", dtype="float32"), max_concurrent=max_concurrent)


@pytest.fixture(scope="session")
def m2b_demo_engine(demo_ckpt):
    engine = _engine(demo_ckpt, max_concurrent=2)
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def tiny_engine(tiny_ckpt):
    engine = _engine(tiny_ckpt)
    yield engine
    engine.close()


def _live_server(engine, name: str):
    """A live uvicorn server (a thread on a free port) over `engine`, for a fixture to yield from."""
    server = LiveServer(create_app(engine, model_name=name)).start()
    yield server
    server.stop()


def _test_client(engine, name: str):
    """An in-process TestClient over `engine`, for a fixture to yield from."""
    with TestClient(create_app(engine, model_name=name)) as client:
        yield client


@pytest.fixture(scope="session")
def m2b_demo_server(m2b_demo_engine):
    yield from _live_server(m2b_demo_engine, "minicpm-demo")


@pytest.fixture(scope="session")
def m2b_demo_client(m2b_demo_engine):
    yield from _test_client(m2b_demo_engine, "minicpm-demo")


@pytest.fixture(scope="session")
def tiny_server(tiny_engine):
    yield from _live_server(tiny_engine, "minicpm-tiny")


@pytest.fixture(scope="session")
def tiny_client(tiny_engine):
    yield from _test_client(tiny_engine, "minicpm-tiny")


@pytest.fixture(scope="session")
def m5_demo_server(m5_demo_engine):
    yield from _live_server(m5_demo_engine, "m5-demo")


@pytest.fixture(scope="session")
def m5_demo_client(m5_demo_engine):
    yield from _test_client(m5_demo_engine, "m5-demo")


@pytest.fixture()
def idle_tiny_engine(tiny_engine):
    """The tiny engine with nothing running and a clean `recent`, so a test can read its own stats."""
    wait_until(lambda: tiny_engine.running == 0 and tiny_engine.queue_depth == 0, what="an idle engine")
    tiny_engine.recent.clear()
    return tiny_engine
