"""What Streamlit's own endpoints may do, whoever calls them: the one place that patches Streamlit's internals.

Streamlit serves more than our pages, and it answers before our script runs: a websocket BackMsg, an
upload (`PUT /_stcore/upload_file/<session>/<id>`), a file under `/media/`. A client that skips the
browser can send any of them. `install()`, called once per process by chat_app.py, makes them safe:

- `clear_cache` (the BackMsg behind the developer menu's "Clear cache" and its `c` key) is ignored: it
  would drop every `st.cache_resource`, so the next run would load a second copy of the model, leave
  the first one in memory, and forget a model switch. The model is one per process, whatever a client
  sends.
- Uploads are capped at the import limit (store.MAX_IMPORT_BYTES) on the server, not only in the
  browser, and a file sent for a session that has not logged in (ui.auth.LOGGED_IN) is dropped.
- An upload its client aborts half way is not logged as a traceback (uvicorn logs Starlette's
  ClientDisconnect as "Exception in ASGI application"): a hang-up is no server error.
- A session's uploads and media (exports offered by st.download_button) are freed as soon as its
  websocket closes. Streamlit keeps a closed session 2 minutes for a reconnect and then drops it without
  freeing them (its storage's expiry never shuts the session down); a reconnecting page reruns and
  offers its downloads again. The socket can close while the session's script still runs (a slow run, a
  loaded machine): media that run adds afterwards is freed as it is added, since its session is gone.

Each patch names the Streamlit attribute it replaces; `missing_internals()` lists those that moved, and
install() raises InternalsMoved rather than serve unguarded (tests/test_server_guard.py checks it on
every Streamlit CI installs).
"""

from __future__ import annotations

import functools
import logging
import math
import threading
from collections.abc import Callable
from typing import Any

from minicpm_core.store import MAX_IMPORT_BYTES
from ui import auth

MAX_UPLOAD_MB = math.ceil(MAX_IMPORT_BYTES / (1024 * 1024))  # server.maxUploadSize is in MiB
_LOG = logging.getLogger(__name__)
_installed = threading.Lock()
_done: list[bool] = []


class InternalsMoved(RuntimeError):
    """A Streamlit internal this module patches is not where it was: serving on would be unguarded."""


def _targets() -> dict[str, tuple[Any, str]]:
    """Each Streamlit attribute this module replaces or calls, by a name for messages: (owner, attribute)."""
    from streamlit.runtime import Runtime
    from streamlit.runtime.app_session import AppSession
    from streamlit.runtime.media_file_manager import MediaFileManager
    from streamlit.runtime.memory_uploaded_file_manager import MemoryUploadedFileManager
    from streamlit.runtime.websocket_session_manager import WebsocketSessionManager

    return {
        "AppSession._handle_clear_cache_request": (AppSession, "_handle_clear_cache_request"),
        "MemoryUploadedFileManager.add_file": (MemoryUploadedFileManager, "add_file"),
        "MemoryUploadedFileManager.remove_session_files": (MemoryUploadedFileManager, "remove_session_files"),
        "WebsocketSessionManager.disconnect_session": (WebsocketSessionManager, "disconnect_session"),
        # used, not replaced
        "MediaFileManager.add": (MediaFileManager, "add"),
        "MediaFileManager.clear_session_refs": (MediaFileManager, "clear_session_refs"),
        "MediaFileManager.remove_orphaned_files": (MediaFileManager, "remove_orphaned_files"),
        "Runtime.exists": (Runtime, "exists"),
        "Runtime.instance": (Runtime, "instance"),
        "Runtime.is_active_session": (Runtime, "is_active_session"),
    }


def missing_internals() -> list[str]:
    """The patched attributes this Streamlit lacks (empty: all there)."""
    try:
        targets = _targets()
    except ImportError as exc:
        return [f"a module ({exc})"]
    return [name for name, (owner, attribute) in targets.items() if not callable(getattr(owner, attribute, None))]


def install() -> None:
    """Apply every guard, once per process (later calls do nothing)."""
    with _installed:
        if _done:
            return
        missing = missing_internals()
        if missing:
            raise InternalsMoved("Streamlit changed where these are, so ui/server_guard.py cannot guard them: "
                                 + ", ".join(missing) + ". Use a Streamlit release within requirements.txt's bounds.")
        _cap_uploads()
        logging.getLogger("uvicorn.error").addFilter(_no_hang_up_tracebacks)
        targets = _targets()
        _wrap(*targets["AppSession._handle_clear_cache_request"], _ignore_clear_cache)
        _wrap(*targets["MemoryUploadedFileManager.add_file"], _only_logged_in_uploads)
        _wrap(*targets["WebsocketSessionManager.disconnect_session"], _free_on_disconnect)
        _wrap(*targets["MediaFileManager.add"], _no_media_for_closed_sessions)
        _done.append(True)


def _wrap(owner: Any, attribute: str, guard: Callable[..., Any]) -> None:
    original = getattr(owner, attribute)

    @functools.wraps(original)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        return guard(original, *args, **kwargs)

    setattr(owner, attribute, guarded)


def _cap_uploads() -> None:
    """server.maxUploadSize (read by the upload endpoint on every request) at most the import limit,
    whatever config.toml or a flag said."""
    from streamlit import config

    if config.get_option("server.maxUploadSize") > MAX_UPLOAD_MB:
        config.set_option("server.maxUploadSize", MAX_UPLOAD_MB)


def _no_hang_up_tracebacks(record: logging.LogRecord) -> bool:
    """False (drop) for the record of a request whose client hung up (an aborted upload). Starlette's
    ClientDisconnect is known by name: Starlette is Streamlit's server, not a requirement of ours."""
    error = record.exc_info[1] if record.exc_info else None
    return not (error is not None and type(error).__name__ == "ClientDisconnect"
                and type(error).__module__.startswith("starlette"))


def _ignore_clear_cache(original: Callable[..., Any], session: Any) -> None:
    _LOG.warning("Ignored a clear_cache message from session %s: the model is one per process.",
                 getattr(session, "id", "?"))


def _only_logged_in_uploads(original: Callable[..., Any], manager: Any, session_id: str, file: Any) -> None:
    """Keep the file only for a logged-in session. (Its size is server.maxUploadSize's to refuse, with a 413
    before the body is read; the import then says what is wrong with a file it cannot take.)"""
    if session_id not in auth.LOGGED_IN:
        _LOG.warning("Dropped an upload of %d bytes for session %s, which has not logged in.",
                     len(getattr(file, "data", b"")), session_id)
        return
    original(manager, session_id, file)


def _free_on_disconnect(original: Callable[..., Any], manager: Any, session_id: str) -> None:
    original(manager, session_id)
    auth.LOGGED_IN.discard(session_id)
    free_session(session_id)


def _no_media_for_closed_sessions(original: Callable[..., Any], manager: Any, *args: Any, **kwargs: Any) -> str:
    """Add the file; if its session's socket has closed meanwhile (the run went on after the disconnect
    freed the session's files), free it again at once: the URL goes to a page that is gone."""
    from streamlit.runtime import Runtime
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    url = original(manager, *args, **kwargs)
    ctx = get_script_run_ctx()
    if ctx is not None and Runtime.exists() and not Runtime.instance().is_active_session(ctx.session_id):
        free_session(ctx.session_id)
    return url


def free_session(session_id: str) -> None:
    """Give back what a closed session holds: its uploads and its media files (exports)."""
    from streamlit.runtime import Runtime

    if not Runtime.exists():
        return
    runtime = Runtime.instance()
    runtime.uploaded_file_mgr.remove_session_files(session_id)
    media = runtime.media_file_mgr
    media.clear_session_refs(session_id)
    # Twice: the first pass only marks an unreferenced download (st.download_button's file) for deletion,
    # so that a click during its own session's rerun still finds it; the second deletes it. Without it an
    # export stayed served until some other session's run ended.
    media.remove_orphaned_files()
    media.remove_orphaned_files()
