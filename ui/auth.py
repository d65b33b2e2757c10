"""An optional shared password in front of the whole app.

Set MINICPM_PASSWORD (or `password` in .streamlit/secrets.toml) and every browser must enter it.
One password gates the app: it does not separate users' conversations (everyone who knows it sees
the same list).

- Guessing is slowed down: after FREE_FAILURES wrong tries in a session, or GLOBAL_FREE_FAILURES in
  the whole process (a new tab is a new session), each further try must wait, the wait doubling up
  to MAX_WAIT_S. Nothing sleeps: the form refuses until then and says how long.
- A correct login is remembered for LOGIN_REMEMBER_S in a cookie, `<expiry>.<HMAC>`, signed with a
  key made at process start from the password, so a reload or a new tab does not ask again; a
  changed password or a restarted server does. The cookie is written by a tiny script in a hidden
  component (Streamlit has no API to set one) and read back with `st.context.cookies`.
- No password, an address beyond loopback (0.0.0.0) and Streamlit's CORS/XSRF checks off (config.toml, for
  AutoDL's proxy): any web page a visitor opens could drive the app, so it refuses to serve
  (`refuses_open_network`) until a password is set, it binds 127.0.0.1, or MINICPM_ALLOW_OPEN=1.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import streamlit as st
import streamlit.components.v1 as components

from ui.backend import ALLOW_OPEN_ENV, allow_open
from ui.i18n import t

PASSWORD_ENV = "MINICPM_PASSWORD"
AUTHENTICATED = "_authenticated"
LOGIN_SESSION = "_login_session"  # this session's key in FAILED_LOGINS
REMEMBER_COOKIE = "_remember_login"  # the cookie value this session's login should leave in the browser

FREE_FAILURES = 5  # wrong tries per session before any wait
GLOBAL_FREE_FAILURES = 20  # wrong tries across all sessions before everyone waits
FIRST_WAIT_S = 2.0  # then 2, 4, 8, ... seconds
MAX_WAIT_S = 300.0
FORGET_FAILURES_S = 3600.0  # a key with no failure for this long starts again from zero
EVERYONE = "*"

COOKIE_NAME = "minicpm_login"
LOGIN_REMEMBER_S = 7 * 24 * 3600
_PROCESS_KEY = secrets.token_bytes(32)


@dataclass
class _Failures:
    count: int = 0
    last: float = 0.0
    until: float = 0.0


class FailedLogins:
    """Wrong passwords per session and for everyone; how long a session must wait before its next try.

    Shared by every session of the process, so it takes a lock; `clock` is monotonic seconds.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self._lock = threading.Lock()
        self._keys: dict[str, _Failures] = {}

    def wait_s(self, session: str) -> float:
        """Seconds until `session` may try again (0: now)."""
        now = self.clock()
        with self._lock:
            return max([0.0, *(self._keys[key].until - now for key in (session, EVERYONE) if key in self._keys)])

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
        with self._lock:
            self._keys.pop(session, None)
            self._keys.pop(EVERYONE, None)

    def reset(self) -> None:
        with self._lock:
            self._keys.clear()


FAILED_LOGINS = FailedLogins()


def required_password() -> str | None:
    """The configured password, or None when the app is open."""
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


# --- the login cookie -------------------------------------------------------------------------------

def _signature(expires: int, password: str) -> str:
    key = hmac.new(_PROCESS_KEY, password.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()
    return hmac.new(key, str(expires).encode(), hashlib.sha256).hexdigest()


def login_cookie(password: str, now: float | None = None) -> str:
    """The cookie value that proves a login with `password`, valid for LOGIN_REMEMBER_S."""
    expires = int(time.time() if now is None else now) + LOGIN_REMEMBER_S
    return f"{expires}.{_signature(expires, password)}"


def cookie_is_valid(value: str | None, password: str, now: float | None = None) -> bool:
    """True for a cookie this process signed for `password` that has not expired."""
    if not isinstance(value, str):
        return False
    expires, dot, signature = value.partition(".")
    if not dot or not expires.isdigit() or len(expires) > 12:
        return False
    if int(expires) <= (time.time() if now is None else now):
        return False
    return hmac.compare_digest(signature.encode(), _signature(int(expires), password).encode())


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

def is_authenticated() -> bool:
    """True if no password is set, this session has entered it, or the browser holds a valid cookie."""
    expected = required_password()
    if expected is None:
        return True
    if not st.session_state.get(AUTHENTICATED) and cookie_is_valid(_browser_cookie(), expected):
        st.session_state[AUTHENTICATED] = True
    if not st.session_state.get(AUTHENTICATED):
        return False
    if REMEMBER_COOKIE in st.session_state:  # drawn on every run: a rerun must not cut the script short
        _remember_in_browser(st.session_state[REMEMBER_COOKIE])
    return True


def logged_in() -> bool:
    """Whether this session has passed the gate (no password, or it logged in), without drawing anything:
    for actions that need it again after the gate (switching models)."""
    return required_password() is None or bool(st.session_state.get(AUTHENTICATED))


def _session_key() -> str:
    if LOGIN_SESSION not in st.session_state:
        st.session_state[LOGIN_SESSION] = secrets.token_hex(8)
    return st.session_state[LOGIN_SESSION]


def login_page() -> None:
    """The password form; wrong tries slow down, and on success the session (and browser) is remembered."""
    expected = required_password()
    session = _session_key()
    st.title(t("auth_title"))
    with st.form("login", border=False):
        given = st.text_input(t("auth_password"), type="password", key="password")
        submitted = st.form_submit_button(t("auth_submit"), type="primary", key="login_submit")
    if not submitted:
        return
    wait = FAILED_LOGINS.wait_s(session)
    if wait > 0:  # not even checked: a guess during the wait tells nothing
        st.warning(t("auth_wait", seconds=math.ceil(wait)))
        return
    if expected is None or password_matches(given, expected):
        FAILED_LOGINS.succeeded(session)
        st.session_state[AUTHENTICATED] = True
        if expected is not None:
            st.session_state[REMEMBER_COOKIE] = login_cookie(expected)
        st.rerun()
    FAILED_LOGINS.failed(session)
    wait = FAILED_LOGINS.wait_s(session)
    st.error(t("auth_wrong") + (" " + t("auth_wait", seconds=math.ceil(wait)) if wait > 0 else ""))


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


def cross_site_checks_off() -> bool:
    return not st.get_option("server.enableCORS") or not st.get_option("server.enableXsrfProtection")


def refuses_open_network() -> bool:
    """True when anyone who can reach the port, and any web page they open, could use the app."""
    return (required_password() is None and cross_site_checks_off()
            and not is_loopback(str(st.get_option("server.address") or "")) and not allow_open())


def open_network_page() -> None:
    """Shown instead of any page while refuses_open_network(): why, and the three ways on."""
    address = str(st.get_option("server.address") or "0.0.0.0")  # noqa: S104 - "" binds every interface
    st.title(t("open_title"))
    st.error(t("open_why", address=address), icon=":material/public:")
    st.markdown(t("open_what"))
    st.code(f"{PASSWORD_ENV}=... streamlit run chat_app.py\n"
            "streamlit run chat_app.py --server.address 127.0.0.1\n"
            f"{ALLOW_OPEN_ENV}=1 streamlit run chat_app.py", language="bash")
