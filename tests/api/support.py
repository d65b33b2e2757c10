"""Helpers for the API tests: a live uvicorn server in a thread, waiting on a condition, messages."""

from __future__ import annotations

import threading
import time

import uvicorn

GREEDY = {"temperature": 0}


def wait_until(condition, timeout: float = 30.0, what: str = "condition") -> None:
    """Poll a condition that no event announces (engine.running, engine.recent)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def ask(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


class LiveServer(uvicorn.Server):
    """uvicorn in a daemon thread; `url` is valid once start() returns."""

    def __init__(self, app, **config):
        super().__init__(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                        timeout_graceful_shutdown=5, **config))
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self.run, name="api-test-server", daemon=True)

    async def startup(self, sockets=None) -> None:
        try:
            await super().startup(sockets)
        finally:
            self._ready.set()

    def start(self) -> LiveServer:
        self._thread.start()
        assert self._ready.wait(30) and self.started, "uvicorn did not start"
        port = self.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def stop(self) -> None:
        self.should_exit = True
        self._thread.join(30)


def served(path, name: str):
    """(engine, entered TestClient) of the checkpoint at `path` on the CPU in fp32, served as `name`; the
    caller exits the client and closes the engine."""
    from fastapi.testclient import TestClient

    from minicpm_core.api import create_app
    from minicpm_core.engine import Engine
    from minicpm_core.loader import load_model

    engine = Engine(load_model(path, device="cpu", dtype="float32"))
    client = TestClient(create_app(engine, model_name=name))
    client.__enter__()
    return engine, client
