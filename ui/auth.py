"""An optional shared password in front of the whole app.

Set MINICPM_PASSWORD (or `password` in .streamlit/secrets.toml) and every browser session must
enter it once; the session remembers it. One password gates the app: it does not separate users'
conversations (everyone who knows it sees the same list).
"""

from __future__ import annotations

import hmac
import os

import streamlit as st

from ui.i18n import t

PASSWORD_ENV = "MINICPM_PASSWORD"
AUTHENTICATED = "_authenticated"


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
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def is_authenticated() -> bool:
    """True if no password is set or this session has entered it."""
    return required_password() is None or bool(st.session_state.get(AUTHENTICATED))


def login_page() -> None:
    """The password form; on success the session is remembered and the app reruns."""
    expected = required_password()
    st.title(t("auth_title"))
    with st.form("login", border=False):
        given = st.text_input(t("auth_password"), type="password", key="password")
        submitted = st.form_submit_button(t("auth_submit"), type="primary", key="login_submit")
    if submitted:
        if expected is None or password_matches(given, expected):
            st.session_state[AUTHENTICATED] = True
            st.rerun()
        st.error(t("auth_wrong"))
