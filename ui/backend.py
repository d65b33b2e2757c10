"""What the app talks to for replies: the in-process engine or an OpenAI-compatible server.

The pages code against the `Backend` contract (minicpm_core.backend), which the Engine and the
RemoteBackend implement themselves, so `streamlit run chat_app.py -- --backend openai --base-url URL`
drives a remote server with the same pages. The model lives in a `ModelSlot` (minicpm_core.slot), one
per process and start options (`st.cache_resource`): every browser session shares one model and one
queue, and a switch on the Model page changes it for all of them. The conversation store is likewise
one per process and data file.

The local model loads in a background thread (torch and transformers alone take seconds to
import), so the first page is drawn at once: until the load is done (also while a switch loads the
next model), `get_backend` returns a PendingBackend, whose calls that need the model wait for it,
showing how long it has taken.

Apart from that wait line, this module draws nothing; errors propagate as MiniCPMError.
"""

from __future__ import annotations

import functools
import itertools
import sys
import time
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import streamlit as st

from minicpm_core.backend import Backend, KvBudget, template_thinking_default
from minicpm_core.errors import InvalidRequest
from minicpm_core.families import DEFAULT_FAMILY, ModelFamily, by_name
from minicpm_core.settings import (
    ALLOW_OPEN_ENV,  # noqa: F401 - ui.auth and the tests read it here
    AccessSettings,
    AppSettings,
    ModelSettings,
    resolve,
)
from minicpm_core.slot import ModelSlot
from minicpm_core.stats import ReplyStats
from minicpm_core.store import ConversationStore, default_db_path
from ui.i18n import t

WAIT_TICK_S = 0.5  # how often a wait for the model updates its line (and lets a newer run take over)


def parse_app_options(argv: Sequence[str] | None) -> AppSettings:
    """Flags after `--` on `streamlit run chat_app.py -- ...`, each falling back to its environment
    variable (minicpm_core.settings.AppSettings). Other flags are ignored; a bad value raises
    InvalidRequest, never SystemExit inside a Streamlit run."""
    return AppSettings.parse(list(argv or []), ignore_unknown=True)


def allow_open() -> bool:
    """The user's explicit opt-out of the access token (ui.auth.uses_token). A value that is not a
    yes/no counts as no: the token stays."""
    try:
        return resolve(AccessSettings).allow_open
    except InvalidRequest:
        return False


def script_argv(script: str) -> list[str]:
    """sys.argv[1:] when `script` is what `streamlit run` started, else [] (e.g. under pytest)."""
    if sys.argv and Path(sys.argv[0]).resolve() == Path(script).resolve():
        return sys.argv[1:]
    return []


def build_backend(options: AppSettings, model: ModelSettings) -> Backend:
    """The RemoteBackend the options name, else the Engine of `model` (the start options' model, or the
    one a switch chose): each is a Backend itself."""
    from minicpm_core.remote import make_remote_backend

    remote = make_remote_backend(options.remote)
    if remote is not None:
        return remote
    from minicpm_core.engine import load_engine

    return load_engine(model)


@st.cache_resource(show_spinner=False)
def _slot_for(options: AppSettings) -> ModelSlot:
    return ModelSlot(options.model, functools.partial(build_backend, options))


_failed: set[AppSettings] = set()  # options whose last load failed


def get_slot(options: AppSettings) -> ModelSlot:
    """The process's model slot for these start options: what every session runs, and its switches."""
    return _slot_for(options)


def get_backend(options: AppSettings) -> Backend:
    """The process's backend for these options, or a PendingBackend while the local model loads.

    A failed first load (ModelNotFound, ...) is raised here and not kept, so fixing the cause and
    rerunning tries again. That retry, and the remote backend (it needs no model), run within the
    run, as the setup page and its download button must be drawn by every run until the load works.
    (A failed switch never gets here: the slot puts the previous model back.)
    """
    slot = _slot_for(options)
    if not slot.load.done.is_set() and options.remote.backend != "openai" and options not in _failed:
        return PendingBackend(slot)
    try:
        backend = wait_for(slot)
    except Exception:
        _failed.add(options)
        _slot_for.clear(options)
        raise
    _failed.discard(options)
    return backend


def wait_for(slot: ModelSlot) -> Backend:
    """The slot's model once loaded (or its load's error), starting the load if no session has yet.
    Meanwhile a line says how long it has taken; each update is also where Streamlit can stop this run
    for a newer one (a click, a question) instead of holding it."""
    line: list[Any] = []  # the caption's place, made at the first tick

    def tick(load) -> None:
        if not line:
            line.append(st.empty())
        line[0].caption(t("loading_model_for", seconds=time.monotonic() - (load.started or time.monotonic())))

    backend = slot.wait(tick=tick, tick_s=WAIT_TICK_S)
    if line:
        line[0].empty()
    return backend


def forget_backend() -> None:
    """Drop every loaded or failed backend, so the next run loads anew (e.g. after a download)."""
    _slot_for.clear()


def model_label(backend: Backend) -> str:
    """What the pages call the model: its family's label, the default family's while unknown."""
    return (backend.family or DEFAULT_FAMILY).label


def identity(backend: Backend) -> int:
    """A number for this backend object, never reused in the process (unlike id(), whose value a
    switched-away model's successor may get): the key of what is asked once per model."""
    if backend not in _IDENTITIES:
        _IDENTITIES[backend] = next(_SERIALS)
    return _IDENTITIES[backend]


_IDENTITIES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_SERIALS = itertools.count(1)


def thinking_default(backend: Backend) -> bool | None:
    """What the checkpoint's chat template does when enable_thinking is not passed: True or False if
    its prompt for one question is the one it builds with that value, None if neither (the model
    decides, as in MiniCPM5's template). Asked once per backend."""
    key = identity(backend)
    if key not in _THINKING_DEFAULT:
        _THINKING_DEFAULT[key] = template_thinking_default(backend)
    return _THINKING_DEFAULT[key]


_THINKING_DEFAULT: dict[int, bool | None] = {}


def kv_budget_of(backend: Backend) -> KvBudget | None:
    """`Backend.kv_budget()` of a loaded local model (asked once per model: it measures free memory), else None."""
    if not backend.ready:
        return None
    key = identity(backend)
    if key not in _KV_BUDGETS:
        _KV_BUDGETS[key] = backend.kv_budget()
    return _KV_BUDGETS[key]


_KV_BUDGETS: dict[int, KvBudget | None] = {}


class PendingBackend:
    """The local backend before its model is loaded (first, or after a switch). Drawing a page never
    waits: `prepare` gives None (no context meter yet) and the queue is empty. `submit` and `info`
    wait for the model.

    The first load begins at the first wait (at the latest at the end of the first run, see chat_app),
    not before: its imports hold the GIL for long stretches and would slow drawing the page."""

    ready = False
    gpu_problem = None  # known once loaded: the next run shows its banner
    ignored_controls: tuple[str, ...] = ()
    context_length = None
    queue_depth = running = 0
    recent: tuple[ReplyStats, ...] = ()
    # known once loaded
    model_id = None
    loaded_path = None
    base_url = None  # a remote backend needs no load, so it never waits behind this stand-in

    def __init__(self, slot: ModelSlot):
        self.slot = slot
        self.demo = slot.settings.demo

    @property
    def model_name(self) -> str:
        return self.slot.settings.name

    @property
    def family(self) -> ModelFamily | None:
        """A demo's family is known before it loads (its sliders are drawn with its defaults); others' not."""
        if not self.slot.settings.demo:
            return None
        return by_name(self.slot.settings.demo_family)

    def kv_budget(self) -> None:
        return None  # no model in memory yet

    def wait(self) -> Backend:
        return wait_for(self.slot)

    def retire(self, successor: str, drain_s: float) -> None:
        """Nothing to retire: the slot retires the backend it loaded, never this stand-in."""

    def submit(self, messages, params=None, *, cancelled=None, options=None):
        return self.wait().submit(messages, params, cancelled=cancelled, options=options)

    def prepare(self, messages, params=None, cancelled=None, *, options=None):
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


_ACTIVE_SLOT = "_slot"


def activate(backend: Backend, slot: ModelSlot) -> None:
    """Called by the entrypoint each run, so pages get the backend (and the slot it comes from, which
    the Model page switches) without re-parsing options."""
    st.session_state[_ACTIVE] = backend
    st.session_state[_ACTIVE_SLOT] = slot


def active_backend() -> Backend:
    return st.session_state[_ACTIVE]


def active_slot() -> ModelSlot:
    return st.session_state[_ACTIVE_SLOT]
