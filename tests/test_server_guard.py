"""ui/server_guard.py: the Streamlit internals it patches are where it expects them (this fails loudly on a
Streamlit that moved them), and with the guard in place Streamlit's clear_cache handler leaves the one
model of the process alone. The same messages over a real websocket: tests/test_hostile_server.py.
"""

from __future__ import annotations

import os

import pytest
from streamlit import config
from streamlit.runtime.app_session import AppSession
from streamlit.testing.v1 import AppTest

from minicpm_core.store import MAX_IMPORT_BYTES
from ui import server_guard

from test_app import APP, TIMEOUT, ok


def test_every_patched_streamlit_internal_is_where_the_guard_expects_it():
    assert server_guard.missing_internals() == []


def test_a_moved_internal_stops_the_install_with_a_message(monkeypatch):
    monkeypatch.setattr(server_guard, "_done", [])
    monkeypatch.delattr(AppSession, "_handle_clear_cache_request")
    with pytest.raises(server_guard.InternalsMoved, match="AppSession._handle_clear_cache_request"):
        server_guard.install()


def test_the_upload_limit_is_the_import_limit_whatever_the_config_says(monkeypatch):
    saved = config.get_option("server.maxUploadSize")
    monkeypatch.setattr(server_guard, "_done", [])
    try:
        config.set_option("server.maxUploadSize", 200)  # Streamlit's default
        server_guard._cap_uploads()
        assert config.get_option("server.maxUploadSize") * 1024 * 1024 == MAX_IMPORT_BYTES
    finally:
        config.set_option("server.maxUploadSize", saved)


@pytest.fixture
def demo_app(monkeypatch, tmp_path):
    for name in [k for k in os.environ if k.startswith("MINICPM_") and k != "MINICPM_ALLOW_OPEN"]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("MINICPM_DEMO", "1")
    monkeypatch.setenv("MINICPM_DEVICE", "cpu")
    monkeypatch.setenv("MINICPM_DATA_DIR", str(tmp_path / "data"))


def test_clear_cache_leaves_the_model_the_slot_and_the_store_in_place(demo_app):
    at = ok(AppTest.from_file(str(APP), default_timeout=TIMEOUT).run())
    slot = at.session_state["_slot"]
    backend = slot.wait()
    server_guard.install()
    AppSession._handle_clear_cache_request(object())  # what a clear_cache BackMsg calls
    at = ok(at.run())
    assert at.session_state["_slot"] is slot
    assert at.session_state["_backend"] is backend and slot.wait() is backend  # no second load
