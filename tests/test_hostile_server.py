"""The issue's table, replayed against a live `streamlit run chat_app.py` by a client that skips the browser
(tests/streamlit_wire.py: Streamlit's websocket protocol and raw HTTP), as a stranger who has not logged in.

Each test says what the stranger sends and checks that it is refused or costs nothing that stays: the
server's own log says what it did with the message, and psutil reads its memory. The app runs with a
password on 127.0.0.1 (the issue's setup), the demo model on the CPU.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request

import psutil
import pytest

from minicpm_core.store import ConversationStore

from browser_utils import StreamlitServer
from streamlit_wire import WireSession, put_upload

PASSWORD = "s3cret"
MB = 1 << 20


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    work = tmp_path_factory.mktemp("hostile_server")
    env = {"MINICPM_PASSWORD": PASSWORD, "MINICPM_DEMO": "1", "MINICPM_DEVICE": "cpu",
           "MINICPM_DATA_DIR": str(work / "data")}
    with StreamlitServer(env, work / "app.log") as server:
        yield server


def rss_mb(server) -> float:
    return psutil.Process(server.process.pid).memory_info().rss / MB


def wait_for_log(server, text: str, count: int = 1, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while server.log().count(text) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} not logged {count} times within {timeout} s:\n{server.log()[-3000:]}")
        time.sleep(0.05)  # a log file announces nothing


def test_before_login_a_session_gets_the_login_form_and_nothing_else(server):
    with WireSession(server.url) as stranger:
        stranger.run()
        texts = stranger.texts()
    assert "MiniCPM-2B Chat" in texts  # the login page's title
    assert not any("demo" in text.lower() for text in texts)  # no banner: no model was asked for


def test_a_strangers_clear_cache_is_ignored(server):
    """Row 1: `BackMsg{clear_cache: true}` (bytes 28 01) no longer drops the cached model (see
    test_server_guard.py for the model staying one per process)."""
    before = server.log().count("Ignored a clear_cache message")
    with WireSession(server.url) as stranger:
        stranger.run()
        for _ in range(3):
            stranger.send_clear_cache()
        wait_for_log(server, "Ignored a clear_cache message", before + 3)
        stranger.run()  # the session still works
    assert "Traceback" not in server.log()


def test_a_strangers_uploads_are_refused_over_the_limit_and_dropped_under_it(server):
    """Row 2: 100 MB PUTs to a login page's session id got 204 and +100 MB each."""
    with WireSession(server.url) as stranger:
        stranger.run()
        idle = rss_mb(server)
        assert put_upload(stranger.host, stranger.port, stranger.session_id, 100 * MB) == 413
        dropped = server.log().count("Dropped an upload")
        for _ in range(10):  # 40 MB that would stay if kept
            assert put_upload(stranger.host, stranger.port, stranger.session_id, 4 * MB) == 204
        wait_for_log(server, "Dropped an upload", dropped + 10)
        grown = rss_mb(server) - idle
    print(f"\nserver RSS after a 100 MB and ten 4 MB uploads by a stranger: +{grown:.0f} MB")
    assert grown < 20


def test_an_aborted_upload_writes_no_traceback(server):
    with WireSession(server.url) as stranger:
        stranger.run()
        assert put_upload(stranger.host, stranger.port, stranger.session_id, 1 * MB, announce=4 * MB) is None
        # the next request is served only after the aborted one's handler has ended
        assert put_upload(stranger.host, stranger.port, stranger.session_id, 1 * MB) == 204
    assert "Traceback" not in server.log() and "Exception in ASGI application" not in server.log()


def test_wrong_cookies_of_every_shape_show_the_login_form(server):
    """Row 4: `minicpm_login=\\xb2.abc` raised int('²') in the cookie check: that browser got the error page."""
    for cookie in ("minicpm_login=\xb2.abc", "minicpm_login=1.", "minicpm_login=99999999999.abc",
                   "minicpm_login=" + "9" * 40 + ".x"):
        header = cookie.encode("utf-8").decode("latin-1")  # the raw bytes a client can send
        with WireSession(server.url, cookie=header) as stranger:
            stranger.run()
            assert "MiniCPM-2B Chat" in stranger.texts(), cookie
    assert "Traceback" not in server.log()


@pytest.fixture(scope="module")
def open_server(tmp_path_factory):
    """No password on 127.0.0.1: every session is logged in (the issue's second clear_cache setup). Its
    store holds one conversation, `server.conversation`."""
    work = tmp_path_factory.mktemp("open_server")
    store = ConversationStore(work / "data" / "conversations.sqlite3")
    conversation = store.import_json(b'[{"role": "user", "content": "secret question"}, '
                                     b'{"role": "assistant", "content": "secret answer"}]')
    store.close()
    env = {"MINICPM_DEMO": "1", "MINICPM_DEVICE": "cpu", "MINICPM_DATA_DIR": str(work / "data")}
    with StreamlitServer(env, work / "app.log") as server:
        server.conversation = conversation.id
        yield server


def export_urls(session: WireSession) -> list[str]:
    return [msg.delta.new_element.download_button.url for msg in session.received
            if msg.WhichOneof("type") == "delta" and msg.delta.WhichOneof("type") == "new_element"
            and msg.delta.new_element.WhichOneof("type") == "download_button"]


def http_get(server, path: str) -> int:
    try:
        with urllib.request.urlopen(server.url.rstrip("/") + path, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_an_export_is_not_served_once_its_session_has_ended(open_server):
    """Row 5: `GET /media/<hash>.json` of an export, still served 60 s after its session closed."""
    session = WireSession(open_server.url)
    session.run(query_string=f"c={open_server.conversation}")
    urls = export_urls(session)
    assert len(urls) == 2 and all(http_get(open_server, url) == 200 for url in urls)
    session.close()
    deadline = time.monotonic() + 30
    while any(http_get(open_server, url) == 200 for url in urls):
        assert time.monotonic() < deadline, "an export was still served 30 s after its session closed"
        time.sleep(0.1)  # nothing announces the session's end to another client


def test_a_logged_in_sessions_uploads_are_given_back_when_its_socket_closes(open_server):
    """Row 2's second half: memory not given back 3 minutes after the socket closed."""
    session = WireSession(open_server.url)
    session.run()
    idle = rss_mb(open_server)
    for _ in range(8):
        assert put_upload(session.host, session.port, session.session_id, 4 * MB) == 204
    held = rss_mb(open_server) - idle
    session.close()
    deadline = time.monotonic() + 30
    while rss_mb(open_server) - idle > held / 2 and time.monotonic() < deadline:
        time.sleep(0.1)  # nothing announces the memory's return
    after = rss_mb(open_server) - idle
    print(f"\n32 MB uploaded by a logged-in session: +{held:.0f} MB while open, +{after:.0f} MB once closed")
    assert held > 24 and after < held / 2
