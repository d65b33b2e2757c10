"""The one model a server runs: loaded in the background, and switched for another while it serves.

A `ModelSlot` holds the load of its current model (a `BackgroundLoad`, so a page can be drawn while
it runs) and, on `switch(settings, name)`, replaces it in this order:
1. the slot names the new load at once, so every caller from then on waits for the new model;
2. the old engine retires (`Engine.retire`): it refuses new requests, the replies under way get
   DRAIN_S to finish, the rest are cancelled with a note naming the new model, and the memory of
   its weights is freed;
3. only then does the new model load, so two models never share the device's memory;
4. a load that fails puts the previous model back, and the switch's record says why.

Every switch is numbered and recorded (`switches`), so each session can show its one notice.
Whoever waits for the model waits for the slot's CURRENT load (`wait`): a load replaced meanwhile
(a switch, or a failed switch's way back) is never the one a caller ends up with.
Nothing here imports Streamlit: the app keeps one slot per start options (ui/backend.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .backend import Backend
from .errors import InvalidRequest, MiniCPMError
from .settings import ModelSettings

DRAIN_S = 20.0  # how long replies under way may go on once a switch is asked for; then they are cancelled

Build = Callable[[ModelSettings], Backend]


class BackgroundLoad(threading.Thread):
    """Building the backend for one model's settings, once, whichever caller starts it.

    `begin()` starts it; the build itself waits for `gate`, which a switch opens only once the
    previous model's memory is free (a first load's gate is open from the start)."""

    def __init__(self, settings: ModelSettings, build: Build, gate_open: bool = True):
        super().__init__(name="load model", daemon=True)
        self.settings = settings
        self._build = build
        self.gate = threading.Event()
        if gate_open:
            self.gate.set()
        self.started: float | None = None
        self.seconds: float | None = None  # from begin() to ready, what the Model page calls its load time
        self._start_lock = threading.Lock()
        self.backend: Backend | None = None
        self.error: BaseException | None = None
        self.on_failure: Callable[[BaseException], None] | None = None
        self.done = threading.Event()

    def begin(self) -> None:
        """Start loading unless already started (by anyone)."""
        with self._start_lock:
            if self.started is None:
                self.started = time.monotonic()
                self.start()

    def run(self) -> None:
        try:
            self.gate.wait()
            self.backend = self._build(self.settings)
            self.seconds = time.monotonic() - (self.started or time.monotonic())
        except BaseException as exc:  # noqa: BLE001 - handed to the callers, raised there
            self.error = exc
            if self.on_failure is not None:
                self.on_failure(exc)  # before `done`: whoever wakes then finds what replaces this load
        finally:
            self.done.set()

    def cancel_unstarted(self) -> bool:
        """Make sure this load never starts; False if it already has."""
        with self._start_lock:
            if self.started is not None:
                return False
            self.started = time.monotonic()
        self.done.set()
        return True

    def result(self) -> Backend:
        if self.error is not None:
            raise self.error
        if self.backend is None:  # cancelled before it began: the slot has a newer load to hand out
            raise RuntimeError(f"the load of {self.settings.name} was cancelled before it began")
        return self.backend


@dataclass
class Switch:
    """One switch of the slot's model, as the notices show it."""

    number: int           # 1 for the slot's first switch, and so on
    source: str           # the model switched from (its name)
    target: str           # the model switched to
    asked_at: float = field(default_factory=time.time)
    state: str = "switching"  # "switching" -> "done" | "failed"
    error: str | None = None  # why a failed switch failed (the previous model is back)
    finished: threading.Event = field(default_factory=threading.Event, repr=False)

    def end(self, state: str, error: str | None = None) -> None:
        self.state, self.error = state, error
        self.finished.set()


class ModelSlot:
    """The model one server process runs (see the module docstring)."""

    def __init__(self, settings: ModelSettings, build: Build, drain_s: float = DRAIN_S):
        self._build = build
        self.drain_s = drain_s
        self._lock = threading.Lock()
        self.load = BackgroundLoad(settings, build)
        self.switches: list[Switch] = []

    @property
    def settings(self) -> ModelSettings:
        """The settings of the model loaded, loading, or being switched to."""
        return self.load.settings

    @property
    def load_seconds(self) -> float | None:
        """How long the current model took from the start of its load to ready (None while loading)."""
        return self.load.seconds

    @property
    def last_switch(self) -> Switch | None:
        return self.switches[-1] if self.switches else None

    @property
    def switching(self) -> bool:
        last = self.last_switch
        return last is not None and not last.finished.is_set()

    def switch(self, settings: ModelSettings, target: str) -> Switch:
        """Switch to the model `settings` name (called `target` in notices) in the background. Refused
        (InvalidRequest) while another switch is under way, and for the model already loaded."""
        with self._lock:
            last = self.last_switch
            if self.switching and last is not None:
                raise InvalidRequest(f"The server is already switching to {last.target}; wait until "
                                     "it has loaded.", code="switch_under_way", model=last.target)
            if settings == self.load.settings:
                raise InvalidRequest(f"{target} is the model loaded now.", code="switch_same_model", model=target)
            old = self.load
            record = Switch(len(self.switches) + 1, _name_of(old), target)
            self.load = BackgroundLoad(settings, self._build, gate_open=False)
            self.switches.append(record)
        threading.Thread(target=self._carry_out, args=(old, self.load, record), name="switch model",
                         daemon=True).start()
        return record

    def wait(self, timeout: float | None = None, tick: Callable[[BackgroundLoad], None] | None = None,
             tick_s: float = 0.5) -> Backend:
        """The current model once loaded (starting its load if nobody has), or its load's error; `tick(load)`
        is called every `tick_s` meanwhile (a progress line; where the app lets a newer run take over)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            load = self.load
            load.begin()
            while not load.done.wait(tick_s):
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError("the model is still loading")
                if tick is not None:
                    tick(load)
            if self.load is load:
                return load.result()

    def _carry_out(self, old: BackgroundLoad, new: BackgroundLoad, record: Switch) -> None:
        def go_back(error: BaseException) -> None:  # the previous model again: never left without one
            back = BackgroundLoad(old.settings, self._build)
            with self._lock:
                self.load = back
            back.begin()
            record.end("failed", _without_path(_message_of(error), new.settings))

        try:
            self._retire(old, record.target)
            new.on_failure = go_back
            new.gate.set()
            new.begin()
            new.done.wait()
            if new.error is None:
                record.end("done")
        except BaseException as exc:  # noqa: BLE001 - a switch thread must always end its record
            record.end("failed", _message_of(exc))
            raise

    def _retire(self, old: BackgroundLoad, successor: str) -> None:
        """Free the old model once its replies are done or cancelled. A load still under way (a switch
        asked for during the first load) is finished first: its memory can only be freed once it exists."""
        if old.cancel_unstarted():
            return  # never begun: nothing was loaded
        old.done.wait()
        if old.backend is not None:  # None: its load failed, nothing was loaded
            old.backend.retire(successor, self.drain_s)


def _name_of(load: BackgroundLoad) -> str:
    return load.backend.model_name if load.backend is not None else load.settings.name


def _message_of(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, MiniCPMError) else f"{type(exc).__name__}: {exc}"


def _without_path(message: str, settings: ModelSettings) -> str:
    """`message` with the model's local path (as given, absolute, or under the cache dir) replaced by its
    name: every session sees a failed switch's reason, and the server's folders are nobody's business."""
    given = Path(settings.model).expanduser()
    paths = {str(given), str(given.resolve()), str(Path(settings.cache_dir) / settings.model)}
    for path in sorted((p for p in paths if p not in ("", ".")), key=len, reverse=True):
        message = message.replace(path, settings.name)
    return message
