"""With no password on an address beyond loopback, the app asks for the access token it made at start.

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


def at_login(at: AppTest) -> bool:
    return any(title.value == EN["auth_title"] for title in at.title) and not at.chat_input


@pytest.mark.parametrize("address, loopback", [
    ("127.0.0.1", True), ("127.0.0.2", True), ("localhost", True), ("::1", True), ("[::1]", True),
    ("0.0.0.0", False), ("", False), ("::", False), ("192.168.1.5", False), ("example.com", False),
])
def test_only_loopback_addresses_count_as_local(address, loopback):
    assert auth.is_loopback(address) is loopback


def test_a_token_is_needed_beyond_loopback_unless_a_password_or_the_opt_out_replaces_it(server, monkeypatch):
    assert auth.uses_token() and auth.required_secret() == auth.access_token()
    server(enableCORS=True, enableXsrfProtection=True)  # cross-site checks on or off: the port is open
    assert auth.uses_token()
    server(address="127.0.0.1")
    assert not auth.uses_token() and auth.required_secret() is None
    server()
    monkeypatch.setenv(ALLOW_OPEN_ENV, "1")
    assert not auth.uses_token() and auth.required_secret() is None
    monkeypatch.setenv(ALLOW_OPEN_ENV, "0")
    assert auth.uses_token()
    monkeypatch.setenv(auth.PASSWORD_ENV, "secret")
    assert not auth.uses_token() and auth.required_secret() == "secret"


def test_the_token_is_one_per_process_and_printed_as_a_link_and_on_its_own(server, capsys):
    token = auth.access_token()
    assert auth.access_token() == token and len(token) >= 32
    auth._announce(token)
    printed = capsys.readouterr().out
    port = config.get_option("server.port")
    assert f"http://localhost:{port}/?token={token}" in printed
    assert f"  {token}\n" in printed


def test_the_bare_address_shows_the_login_form_and_no_page_not_even_by_direct_link(app_env, server):
    at = ok(AppTest.from_file(str(APP), default_timeout=TIMEOUT).run())
    assert at_login(at) and at.text_input(key="password").label == EN["auth_token"]
    assert not at.sidebar.button
    at = ok(at.switch_page("app_pages/compare.py").run())
    assert at_login(at) and not at.text_area


def test_the_token_link_logs_in_and_leaves_the_address_bar(app_env, server):
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.query_params[auth.TOKEN_PARAM] = auth.access_token()
    at = ok(at.run())
    assert at.chat_input(key="chat_input")
    assert auth.TOKEN_PARAM not in at.query_params
    assert auth.cookie_is_valid(at.session_state[auth.REMEMBER_COOKIE], auth.access_token())


def test_a_wrong_token_link_shows_the_form_and_counts_as_a_wrong_try(app_env, server):
    auth.FAILED_LOGINS.reset()
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.query_params[auth.TOKEN_PARAM] = "guess"
    at = ok(at.run())
    assert at_login(at) and auth.TOKEN_PARAM not in at.query_params
    assert at.error[0].value == EN["auth_wrong_token"]
    at.text_input(key="password").input(auth.access_token())
    assert ok(at.button(key="login_submit").click().run()).chat_input(key="chat_input")  # the form still works


def test_a_password_replaces_the_token(app_env, server, monkeypatch):
    monkeypatch.setenv(auth.PASSWORD_ENV, "secret")
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.query_params[auth.TOKEN_PARAM] = auth.access_token()
    at = ok(at.run())
    assert at_login(at) and at.text_input(key="password").label == EN["auth_password"]


def test_on_loopback_the_chat_opens(app_env, server):
    server(address="127.0.0.1")
    at = ok(AppTest.from_file(str(APP), default_timeout=TIMEOUT).run())
    assert at.chat_input
