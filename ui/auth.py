"""Who may use the app: a password, or else a generated access token, in front of the whole app.

Set MINICPM_PASSWORD (or `password` in .streamlit/secrets.toml) and every browser must enter it.
Without one, on an address beyond loopback (0.0.0.0, AutoDL's default), the app makes an access token
at start, as Jupyter does (`access_token`), and prints it in the terminal: as a `?token=` link for the
local address, and on its own, to paste into the login form of a public link. The right token (in the
link or the form) logs the browser in exactly as the password does; it is then taken out of the
address bar. On loopback no gate is needed; MINICPM_ALLOW_OPEN=1 opts out of the token anywhere.
One secret gates the app: it does not separate users' conversations.

- Guessing is slowed down, and it slows the guesser, not others: a session's own wrong tries beyond
  FREE_FAILURES make it wait, doubling up to MAX_WAIT_S. Once GLOBAL_FREE_FAILURES wrong tries have
  been made in the whole process, a session that has guessed wrong once waits as well (so opening a
  fresh tab buys one try, no more), while a session that has not guessed wrong is still checked at
  once: a stranger's guesses never lock out someone who knows the secret. Nothing sleeps: the form
  refuses until then and says how long. README (Security) has the arithmetic.
- A correct login is remembered for LOGIN_REMEMBER_S in a cookie, `<expiry>.<HMAC>`, signed with a
  key made at process start from the secret, so a reload or a new tab does not ask again; a changed
  password or a restarted server does. The cookie is written by a tiny script in a hidden component
  (Streamlit has no API to set one) and read back with `st.context.cookies`.
- The sessions that have logged in are listed (`LOGGED_IN`) for ui/server_guard.py, which refuses
  uploads from any other session.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import os
import re
import secrets
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import streamlit as st
import streamlit.components.v1 as components

from ui.backend import allow_open
from ui.i18n import t

PASSWORD_ENV = "MINICPM_PASSWORD"
AUTHENTICATED = "_authenticated"
LOGIN_SESSION = "_login_session"  # this session's key in FAILED_LOGINS
REMEMBER_COOKIE = "_remember_login"  # the cookie value this session's login should leave in the browser
WRONG_LINK = "_wrong_token_link"  # set when ?token= was wrong: the form says so
TOKEN_PARAM = "token"  # ?token=... in the printed link

FREE_FAILURES = 5  # wrong tries per session before any wait
GLOBAL_FREE_FAILURES = 20  # wrong tries across all sessions before every session that guessed wrong waits
FIRST_WAIT_S = 2.0  # then 2, 4, 8, ... seconds
MAX_WAIT_S = 300.0
FORGET_FAILURES_S = 3600.0  # a key with no failure for this long starts again from zero
EVERYONE = "*"

COOKIE_NAME = "minicpm_login"
LOGIN_REMEMBER_S = 7 * 24 * 3600
TOKEN_BYTES = 24  # 192 random bits, 32 URL-safe characters
_PROCESS_KEY = secrets.token_bytes(32)
_EXPIRY = re.compile(r"[0-9]{1,12}")  # ASCII digits only: str.isdigit() also takes "²", which int() refuses


@dataclass
class _Failures:
    count: int = 0
    last: float = 0.0
    until: float = 0.0


class FailedLogins:
    """Wrong tries per session and for everyone; how long a session must wait before its next try.

    A session that has never guessed wrong never waits. Shared by every session of the process, so it
    takes a lock; `clock` is monotonic seconds.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self._lock = threading.Lock()
        self._keys: dict[str, _Failures] = {}

    def wait_s(self, session: str) -> float:
        """Seconds until `session` may try again (0: now)."""
        now = self.clock()
        with self._lock:
            mine = self._keys.get(session)
            if mine is None or now - mine.last > FORGET_FAILURES_S:
                return 0.0  # has not guessed wrong (lately): others' guesses do not hold it up
            everyone = self._keys.get(EVERYONE, _Failures())
            return max(0.0, mine.until - now, everyone.until - now)

    def failed(self, session: str) -> None:
        now = self.clock()
        with self._lock:
            for key, free in ((session, FREE_FAILURES), (EVERYONE, GLOBAL_FREE_FAILURES)):
                failures = self._keys.setdefault(key, _Failures())
                if now - failures.last > FORGET_FAILURES_S:
                    failures.count = 0
                failures.count += 1
                failures.last = now
                if failures.count >= free:
                    failures.until = now + min(MAX_WAIT_S, FIRST_WAIT_S * 2 ** (failures.count - free))

    def succeeded(self, session: str) -> None:
        """Forget this session's failures (not everyone's: a login says nothing of the other guessers)."""
        with self._lock:
            self._keys.pop(session, None)

    def reset(self) -> None:
        with self._lock:
            self._keys.clear()


FAILED_LOGINS = FailedLogins()


class LoggedInSessions:
    """The ids of the Streamlit sessions that have passed the gate (ui/server_guard.py asks)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids: set[str] = set()

    def add(self, session_id: str) -> None:
        with self._lock:
            self._ids.add(session_id)

    def discard(self, session_id: str) -> None:
        with self._lock:
            self._ids.discard(session_id)

    def __contains__(self, session_id: object) -> bool:
        with self._lock:
            return session_id in self._ids


LOGGED_IN = LoggedInSessions()


def required_password() -> str | None:
    """The configured password, or None when none is set."""
    password = os.environ.get(PASSWORD_ENV)
    if password:
        return password
    try:
        password = st.secrets.get("password")
    except Exception:  # noqa: BLE001 - no secrets.toml at all is the common case, not an error
        return None
    return str(password) if password else None


def password_matches(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass"))


# --- the generated access token -------------------------------------------------------------------

_token_lock = threading.Lock()
_token: list[str] = []  # made once per process, at the first session's first run


def access_token() -> str:
    """This server process's access token: the same for every session, printed once in the terminal."""
    with _token_lock:
        if not _token:
            _token.append(secrets.token_urlsafe(TOKEN_BYTES))
            _announce(_token[0])
        return _token[0]


def local_link(token: str) -> str:
    """The link that logs a browser on this machine in: Streamlit's port and base path, and the token."""
    port = st.get_option("server.port")
    base = str(st.get_option("server.baseUrlPath") or "").strip("/")
    return f"http://localhost:{port}/{base + '/' if base else ''}?{TOKEN_PARAM}={token}"


def _announce(token: str) -> None:
    """Where the user sees it: the terminal that runs the app (stdout, as Streamlit's own URLs)."""
    print(f"\n  No {PASSWORD_ENV} set and the app listens beyond this machine, so it made an access token.\n"
          f"  Open (on this machine):  {local_link(token)}\n"
          f"  Or paste the token into the login form of your public link:  {token}\n", flush=True)
    sys.stdout.flush()


def uses_token() -> bool:
    """True when the gate's secret is the generated token: no password, an address beyond loopback,
    and no MINICPM_ALLOW_OPEN=1."""
    return (required_password() is None and not is_loopback(str(st.get_option("server.address") or ""))
            and not allow_open())


def required_secret() -> str | None:
    """What a browser must present: the password, else the access token where one is needed, else None."""
    password = required_password()
    if password is not None:
        return password
    return access_token() if uses_token() else None


# --- the login cookie -------------------------------------------------------------------------------

def _signature(expires: int, secret: str) -> str:
    key = hmac.new(_PROCESS_KEY, secret.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()
    return hmac.new(key, str(expires).encode(), hashlib.sha256).hexdigest()


def login_cookie(secret: str, now: float | None = None) -> str:
    """The cookie value that proves a login with `secret`, valid for LOGIN_REMEMBER_S."""
    expires = int(time.time() if now is None else now) + LOGIN_REMEMBER_S
    return f"{expires}.{_signature(expires, secret)}"


def cookie_is_valid(value: str | None, secret: str, now: float | None = None) -> bool:
    """True for a cookie this process signed for `secret` that has not expired; False for anything else,
    malformed included."""
    if not isinstance(value, str):
        return False
    expires, dot, signature = value.partition(".")
    if not dot or not _EXPIRY.fullmatch(expires) or int(expires) <= (time.time() if now is None else now):
        return False
    return hmac.compare_digest(signature.encode("utf-8", "surrogatepass"),
                               _signature(int(expires), secret).encode())


def _browser_cookie() -> str | None:
    try:
        value = st.context.cookies.get(COOKIE_NAME)
    except Exception:  # noqa: BLE001 - outside a browser session (bare mode) there are no cookies
        return None
    return value if isinstance(value, str) else None


def _remember_in_browser(value: str) -> None:
    """Write the login cookie from a hidden component (same origin, so it reaches the app's cookies)."""
    with st.sidebar, st.container(key="login_cookie", height=1, border=False):
        components.html(
            "<script>const secure = parent.location.protocol === 'https:' ? '; Secure' : '';"
            f"parent.document.cookie = '{COOKIE_NAME}={value}; Max-Age={LOGIN_REMEMBER_S}; Path=/; "
            "SameSite=Strict' + secure;</script>",
            height=0,
        )


# --- the gate ------------------------------------------------------------------------------------------

def session_id() -> str | None:
    """Streamlit's id of the session this run belongs to (what its upload URLs carry)."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    return ctx.session_id if ctx is not None else None


def _log_in(secret: str) -> None:
    st.session_state[AUTHENTICATED] = True
    st.session_state[REMEMBER_COOKIE] = login_cookie(secret)


def is_authenticated() -> bool:
    """True if no secret is needed, this session has entered it (or opened the token link), or the
    browser holds a valid cookie."""
    expected = required_secret()
    if expected is None:
        _mark_logged_in()
        return True
    if not st.session_state.get(AUTHENTICATED):
        if cookie_is_valid(_browser_cookie(), expected):
            st.session_state[AUTHENTICATED] = True
        elif TOKEN_PARAM in st.query_params:
            _try_token_link(expected)
    if not st.session_state.get(AUTHENTICATED):
        return False
    if TOKEN_PARAM in st.query_params:  # the link opened again by a browser already logged in
        del st.query_params[TOKEN_PARAM]
    _mark_logged_in()
    if REMEMBER_COOKIE in st.session_state:  # drawn on every run: a rerun must not cut the script short
        _remember_in_browser(st.session_state[REMEMBER_COOKIE])
    return True


def _mark_logged_in() -> None:
    current = session_id()
    if current is not None:
        LOGGED_IN.add(current)


def _try_token_link(expected: str) -> None:
    """?token=... in the address: checked like the form (a wrong one counts as a wrong try), and taken
    out of the address bar either way, so it is not left in the history or shown on screen."""
    given = st.query_params.get(TOKEN_PARAM) or ""
    del st.query_params[TOKEN_PARAM]
    session = _session_key()
    if FAILED_LOGINS.wait_s(session) > 0:
        return
    if password_matches(given, expected):
        FAILED_LOGINS.succeeded(session)
        _log_in(expected)
    else:
        FAILED_LOGINS.failed(session)
        st.session_state[WRONG_LINK] = True


def logged_in() -> bool:
    """Whether this session has passed the gate (no secret needed, or it logged in), without drawing
    anything: for actions that need it again after the gate (switching models)."""
    return required_secret() is None or bool(st.session_state.get(AUTHENTICATED))


def _session_key() -> str:
    if LOGIN_SESSION not in st.session_state:
        st.session_state[LOGIN_SESSION] = secrets.token_hex(8)
    return st.session_state[LOGIN_SESSION]


def login_page() -> None:
    """The password (or token) form; wrong tries slow down, and on success the session (and browser)
    is remembered. It is all a session runs before it logs in: no model, no store."""
    expected = required_secret()
    token = required_password() is None
    session = _session_key()
    st.title(t("auth_title"))
    if token:
        st.caption(t("auth_token_help"))
    with st.form("login", border=False):
        given = st.text_input(t("auth_token" if token else "auth_password"), type="password", key="password")
        submitted = st.form_submit_button(t("auth_submit"), type="primary", key="login_submit")
    if st.session_state.pop(WRONG_LINK, False):
        st.error(t("auth_wrong_token"))
    if not submitted:
        return
    wait = FAILED_LOGINS.wait_s(session)
    if wait > 0:  # not even checked: a guess during the wait tells nothing
        st.warning(t("auth_wait", seconds=math.ceil(wait)))
        return
    if expected is None or password_matches(given, expected):
        FAILED_LOGINS.succeeded(session)
        if expected is not None:
            _log_in(expected)
        else:
            st.session_state[AUTHENTICATED] = True
        st.rerun()
    FAILED_LOGINS.failed(session)
    wait = FAILED_LOGINS.wait_s(session)
    st.error(t("auth_wrong_token" if token else "auth_wrong")
             + (" " + t("auth_wait", seconds=math.ceil(wait)) if wait > 0 else ""))


# --- open to the network ---------------------------------------------------------------------------

def is_loopback(address: str) -> bool:
    """True for 127.x.x.x, ::1 and localhost; "" (Streamlit's default: every interface) and 0.0.0.0 are not."""
    host = address.strip().strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # "", a host name or a LAN address: reachable from elsewhere
        return False
