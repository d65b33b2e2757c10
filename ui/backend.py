"""What the app talks to for replies: the in-process engine or an OpenAI-compatible server.

The pages code against the `Backend` contract (minicpm_core.backend), which the Engine and the
RemoteBackend implement themselves, so `streamlit run chat_app.py -- --backend openai --base-url URL`
drives a remote server with the same pages. `get_backend` builds it once per process
(`st.cache_resource`): every browser session shares one model and one queue. The conversation store is likewise one per process and data file.

The local model loads in a background thread (torch and transformers alone take seconds to
import), so the first page is drawn at once: until the load is done, `get_backend` returns a
PendingBackend, whose calls that need the model wait for it, showing how long it has taken.

Apart from that wait line, this module draws nothing; errors propagate as MiniCPMError.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import streamlit as st

from minicpm_core.backend import Backend, template_thinking_default
from minicpm_core.errors import InvalidRequest
from minicpm_core.settings import ALLOW_OPEN_ENV  # noqa: F401 - ui.auth and the tests read it here
from minicpm_core.settings import AccessSettings, AppSettings, resolve
from minicpm_core.store import ConversationStore, default_db_path
from ui.i18n import t

WAIT_TICK_S = 0.5  # how often a wait for the model updates its line (and lets a newer run take over)


def parse_app_options(argv: Sequence[str] | None) -> AppSettings:
    """Flags after `--` on `streamlit run chat_app.py -- ...`, each falling back to its environment
    variable (minicpm_core.settings.AppSettings). Other flags are ignored; a bad value raises
    InvalidRequest, never SystemExit inside a Streamlit run."""
    return AppSettings.parse(list(argv or []), ignore_unknown=True)


def allow_open() -> bool:
    """The user's explicit opt-out of the refusal in ui.auth.refuses_open_network. A value that is not
    a yes/no counts as no: the refusal page then says what to set."""
    try:
        return resolve(AccessSettings).allow_open
    except InvalidRequest:
        return False


def script_argv(script: str) -> list[str]:
    """sys.argv[1:] when `script` is what `streamlit run` started, else [] (e.g. under pytest)."""
    if sys.argv and Path(sys.argv[0]).resolve() == Path(script).resolve():
        return sys.argv[1:]
    return []


class _Load(threading.Thread):
    """Building the backend for one set of options, once per process, whichever session started it."""

    def __init__(self, options: AppSettings):
        super().__init__(name="load model", daemon=True)
        self.options = options
        self.started: float | None = None
        self._start_lock = threading.Lock()
        self.backend: Backend | None = None
        self.error: BaseException | None = None
        self.done = threading.Event()

    def begin(self) -> None:
        """Start loading unless already started (by any session)."""
        with self._start_lock:
            if self.started is None:
                self.started = time.monotonic()
                self.start()

    def run(self) -> None:
        try:
            self.backend = build_backend(self.options)
        except BaseException as exc:  # noqa: BLE001 - handed to the sessions, raised there
            self.error = exc
        finally:
            self.done.set()

    def result(self) -> Backend:
        if self.error is not None:
            raise self.error
        return self.backend


def build_backend(options: AppSettings) -> Backend:
    """The Engine, or the RemoteBackend the options name: each is a Backend itself."""
    from minicpm_core.remote import make_remote_backend

    remote = make_remote_backend(options.remote)
    if remote is not None:
        return remote
    from minicpm_core.engine import load_engine

    return load_engine(options.model)


@st.cache_resource(show_spinner=False)
def _load_for(options: AppSettings) -> _Load:
    return _Load(options)


_failed: set[AppSettings] = set()  # options whose last load failed


def get_backend(options: AppSettings) -> Backend:
    """The process's backend for these options, or a PendingBackend while the local model loads.

    A failed load (ModelNotFound, ...) is raised here and not kept, so fixing the cause and
    rerunning tries again. That retry, and the remote backend (it needs no model), run within the
    run, as the setup page and its download button must be drawn by every run until the load works.
    """
    load = _load_for(options)
    if not load.done.is_set() and options.remote.backend != "openai" and options not in _failed:
        return PendingBackend(load)
    try:
        backend = wait_for(load)
    except BaseException:
        _failed.add(options)
        _load_for.clear(options)
        raise
    _failed.discard(options)
    return backend


def wait_for(load: _Load) -> Backend:
    """The loaded backend (or the load's error), starting the load if no session has yet. Meanwhile
    a line says how long it has taken; each update is also where Streamlit can stop this run for a
    newer one (a click, a question) instead of holding it."""
    load.begin()
    if not load.done.is_set():
        line = st.empty()
        while not load.done.wait(WAIT_TICK_S):
            line.caption(t("loading_model_for", seconds=time.monotonic() - load.started))
        line.empty()
    return load.result()


def forget_backend() -> None:
    """Drop every loaded or failed backend, so the next run loads anew (e.g. after a download)."""
    _load_for.clear()


def model_label(backend) -> str:
    """What the pages call the model: its family's label, the default family's while unknown."""
    from minicpm_core.families import DEFAULT_FAMILY

    return (family_of(backend) or DEFAULT_FAMILY).label


def family_of(backend):
    """The loaded model's family (families.ModelFamily); a demo still loading: its demo's family;
    None when unknown (a remote server, a model still loading)."""
    lm = getattr(backend, "lm", None)
    if lm is not None:
        return lm.family
    load = getattr(backend, "_load", None)
    if load is not None and load.options.model.demo:
        from minicpm_core.families import by_name

        return by_name(load.options.model.demo_family)
    return None


def thinking_default(backend) -> bool | None:
    """What the checkpoint's chat template does when enable_thinking is not passed: True or False if
    its prompt for one question is the one it builds with that value, None if neither (the model
    decides, as in MiniCPM5's template). Asked once per backend."""
    key = id(backend)
    if key not in _THINKING_DEFAULT:
        _THINKING_DEFAULT[key] = template_thinking_default(backend)
    return _THINKING_DEFAULT[key]


_THINKING_DEFAULT: dict[int, bool | None] = {}


def kv_budget_of(backend):
    """engine.kv_budget of a loaded local model (asked once per model), else None."""
    lm = getattr(backend, "lm", None)
    if lm is None:
        return None
    if id(lm) not in _KV_BUDGETS:
        from minicpm_core.engine import kv_budget

        _KV_BUDGETS[id(lm)] = kv_budget(lm)
    return _KV_BUDGETS[id(lm)]


_KV_BUDGETS: dict[int, Any] = {}


class PendingBackend:
    """The local backend before its model is loaded. Drawing a page never waits: `prepare` gives
    None (no context meter yet) and the queue is empty. `submit` and `info` wait for the model.

    The load begins at the first wait (at the latest at the end of the first run, see chat_app),
    not before: its imports hold the GIL for long stretches and would slow drawing the page."""

    ready = False
    gpu_problem = None  # known once loaded: the next run shows its banner
    ignored_controls = ()
    context_length = None
    queue_depth = running = 0
    recent = ()

    def __init__(self, load: _Load):
        self._load = load
        self.demo = load.options.model.demo

    def wait(self) -> Backend:
        return wait_for(self._load)

    def submit(self, messages, params=None, *, cancelled=None, enable_thinking=None):
        return self.wait().submit(messages, params, cancelled=cancelled, enable_thinking=enable_thinking)

    def prepare(self, messages, params=None, cancelled=None, *, enable_thinking=None):
        return None

    def budget(self, params):
        return params.max_length

    def info(self) -> dict[str, Any]:
        return self.wait().info()


@st.cache_resource(show_spinner=False)
def _open_store(path: str) -> ConversationStore:
    return ConversationStore(path)


def get_store() -> ConversationStore:
    """The process's conversation store for the current data dir (MINICPM_DATA_DIR)."""
    return _open_store(str(default_db_path()))


_ACTIVE = "_backend"


def activate(backend: Backend) -> None:
    """Called by the entrypoint each run, so pages get the backend without re-parsing options."""
    st.session_state[_ACTIVE] = backend


def active_backend() -> Backend:
    return st.session_state[_ACTIVE]
