"""The app refuses to serve every interface with no password while Streamlit's cross-site checks are off.

The server options are set per test (not read from .streamlit/config.toml, which depends on the
working directory); the autouse opt-out of tests/conftest.py is lifted here.
"""

from __future__ import annotations

import pytest
from streamlit import config
from streamlit.testing.v1 import AppTest

from ui import auth
from ui.backend import ALLOW_OPEN_ENV
from ui.i18n import EN

from test_app import APP, TIMEOUT, app_env, ok  # noqa: F401 - app_env is a fixture

SHIPPED = {"server.address": "0.0.0.0", "server.enableCORS": False, "server.enableXsrfProtection": False}


@pytest.fixture
def server(monkeypatch):
    """Set Streamlit server options for one test (the shipped config.toml's by default), then restore them."""
    monkeypatch.delenv(ALLOW_OPEN_ENV, raising=False)
    monkeypatch.delenv(auth.PASSWORD_ENV, raising=False)
    saved = {name: config.get_option(name) for name in SHIPPED}

    def set_options(**overrides):
        for name, value in {**SHIPPED, **{f"server.{k}": v for k, v in overrides.items()}}.items():
            config.set_option(name, value)

    set_options()
    yield set_options
    for name, value in saved.items():
        config.set_option(name, value)


def refused(at: AppTest) -> bool:
    return any(title.value == EN["open_title"] for title in at.title)


@pytest.mark.parametrize("address, loopback", [
    ("127.0.0.1", True), ("127.0.0.2", True), ("localhost", True), ("::1", True), ("[::1]", True),
    ("0.0.0.0", False), ("", False), ("::", False), ("192.168.1.5", False), ("example.com", False),
])
def test_only_loopback_addresses_count_as_local(address, loopback):
    assert auth.is_loopback(address) is loopback


def test_shipped_config_without_password_is_refused_and_each_way_out_lifts_it(server, monkeypatch):
    assert auth.refuses_open_network()
    server(address="127.0.0.1")
    assert not auth.refuses_open_network()
    server(enableCORS=True, enableXsrfProtection=True)
    assert not auth.refuses_open_network()
    server(enableXsrfProtection=True)  # one check off is enough to be open to other sites
    assert auth.refuses_open_network()
    monkeypatch.setenv(ALLOW_OPEN_ENV, "1")
    assert not auth.refuses_open_network()
    monkeypatch.setenv(ALLOW_OPEN_ENV, "0")
    assert auth.refuses_open_network()
    monkeypatch.setenv(auth.PASSWORD_ENV, "secret")
    assert not auth.refuses_open_network()


def test_the_app_says_why_and_serves_no_page_not_even_by_direct_link(app_env, server):
    at = ok(AppTest.from_file(str(APP), default_timeout=TIMEOUT).run())
    assert refused(at)
    assert "0.0.0.0" in at.error[0].value and ALLOW_OPEN_ENV in at.code[0].value
    assert not at.chat_input and not at.sidebar.button
    at = ok(at.switch_page("app_pages/compare.py").run())
    assert refused(at) and not at.chat_input and not at.text_area


def test_a_password_shows_the_login_instead(app_env, server, monkeypatch):
    monkeypatch.setenv(auth.PASSWORD_ENV, "secret")
    at = ok(AppTest.from_file(str(APP), default_timeout=TIMEOUT).run())
    assert not refused(at)
    assert at.title[0].value == EN["auth_title"] and not at.chat_input


def test_on_loopback_the_chat_opens(app_env, server):
    server(address="127.0.0.1")
    at = ok(AppTest.from_file(str(APP), default_timeout=TIMEOUT).run())
    assert not refused(at) and at.chat_input
