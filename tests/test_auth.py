"""The password gate: wrong tries slow down the guesser (per session, and once everyone has failed
enough, every session that guessed wrong), never a visitor who has not guessed wrong; the login cookie
is signed, expires, and a malformed one is just not valid. AppTest for the form; the cookie in a real browser is in test_security_browser.py.
"""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from ui import auth

from test_app import APP, TIMEOUT, app_env, ok  # noqa: F401 - app_env is a fixture


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    clock = Clock()
    auth.FAILED_LOGINS.reset()
    monkeypatch.setattr(auth.FAILED_LOGINS, "clock", clock)
    yield clock
    auth.FAILED_LOGINS.reset()


def test_a_session_waits_after_its_free_failures_and_the_wait_doubles(clock):
    limiter = auth.FailedLogins(clock)
    for _ in range(auth.FREE_FAILURES - 1):
        limiter.failed("s")
    assert limiter.wait_s("s") == 0
    limiter.failed("s")
    assert limiter.wait_s("s") == auth.FIRST_WAIT_S
    limiter.failed("s")
    assert limiter.wait_s("s") == 2 * auth.FIRST_WAIT_S
    assert limiter.wait_s("other") == 0  # below the global count, another session is not held up


def test_past_the_global_count_a_fresh_session_gets_one_try_and_the_wait_is_capped(clock):
    limiter = auth.FailedLogins(clock)
    for i in range(auth.GLOBAL_FREE_FAILURES):
        limiter.failed(f"session {i}")  # one try per fresh tab
    assert limiter.wait_s("brand new") == 0  # has not guessed wrong: checked at once
    limiter.failed("brand new")
    assert limiter.wait_s("brand new") == 2 * auth.FIRST_WAIT_S  # its one wrong try: it waits as everyone's
    for i in range(100):
        limiter.failed(f"more {i}")
    assert limiter.wait_s("brand new") == auth.MAX_WAIT_S
    assert limiter.wait_s("a visitor") == 0
    limiter.succeeded("brand new")
    assert limiter.wait_s("brand new") == 0


def test_failures_are_forgotten_after_a_quiet_hour(clock):
    limiter = auth.FailedLogins(clock)
    for _ in range(auth.FREE_FAILURES):
        limiter.failed("s")
    clock.now += auth.FORGET_FAILURES_S + 1
    limiter.failed("s")
    assert limiter.wait_s("s") == 0


def test_login_cookie_is_valid_until_it_expires_and_only_for_its_password():
    cookie = auth.login_cookie("pw", now=1_000_000)
    assert auth.cookie_is_valid(cookie, "pw", now=1_000_000 + auth.LOGIN_REMEMBER_S - 1)
    assert not auth.cookie_is_valid(cookie, "pw", now=1_000_000 + auth.LOGIN_REMEMBER_S)
    assert not auth.cookie_is_valid(cookie, "another password", now=1_000_001)
    expires, signature = cookie.split(".")
    later = f"{int(expires) + 10**6}.{signature}"  # a longer life, same signature
    flipped = f"{expires}.{signature[:-1]}{'0' if signature[-1] != '0' else '1'}"
    for forged in (later, flipped, "", "abc", ".", f"{expires}.", "9" * 40 + "." + signature, None,
                   "\xb2.abc", "١٢٣.abc", f"{expires}.\udc80", f"{expires}.é"):  # not ASCII digits: no int()
        assert not auth.cookie_is_valid(forged, "pw", now=1_000_001)


def login(at: AppTest, password: str) -> AppTest:
    at.text_input(key="password").input(password)
    return ok(at.button(key="login_submit").click().run())


def test_wrong_passwords_make_the_form_wait_and_say_so(app_env, monkeypatch, clock):
    monkeypatch.setenv("MINICPM_PASSWORD", "s3cret")
    at = ok(AppTest.from_file(str(APP), default_timeout=TIMEOUT).run())
    for _ in range(auth.FREE_FAILURES - 1):
        assert "Wrong password." == login(at, "guess").error[0].value
    assert "wait 2 s" in login(at, "guess").error[0].value
    assert "wait 2 s" in login(at, "s3cret").warning[0].value  # refused unchecked during the wait
    assert not at.chat_input
    clock.now += auth.FIRST_WAIT_S
    assert "wait 4 s" in login(at, "guess again").error[0].value
    clock.now += 4 * auth.FIRST_WAIT_S
    assert login(at, "s3cret").chat_input(key="chat_input")
    assert auth.FAILED_LOGINS.wait_s(at.session_state[auth.LOGIN_SESSION]) == 0


def test_strangers_wrong_guesses_do_not_lock_out_a_visitor_with_the_password(app_env, monkeypatch, clock):
    """The issue's row: 25 wrong passwords, one per fresh session; then a new visitor with the right one."""
    monkeypatch.setenv("MINICPM_PASSWORD", "s3cret")
    for _ in range(25):
        stranger = ok(AppTest.from_file(str(APP), default_timeout=TIMEOUT).run())
        assert not login(stranger, "guess").chat_input
    assert "wait" in login(stranger, "s3cret").warning[0].value  # the guesser is slowed
    visitor = ok(AppTest.from_file(str(APP), default_timeout=TIMEOUT).run())
    assert login(visitor, "s3cret").chat_input(key="chat_input")
