"""The pages, the UI and the API service use a backend and a reply stream through their contract
(minicpm_core.backend.Backend, Generation) only: no `getattr` probing for an attribute the contract
does not promise, no reaching for the loaded model object (`.lm`), no private attribute. A local and
a remote backend must stay interchangeable, and a backend's insides free to change."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# What talks to a backend without being one: every module of the pages, the UI and the API service.
CLIENTS = sorted([*ROOT.glob("ui/*.py"), *ROOT.glob("app_pages/*.py"), ROOT / "chat_app.py",
                  *ROOT.glob("minicpm_core/api/*.py")])

_HOLDERS = r"(?:self\.)?(?:backend|engine|generation|stats|inner|parts|load\.backend)"
REACH_THROUGH = [
    re.compile(rf"getattr\({_HOLDERS}\b"),  # probing for what the contract does not promise
    re.compile(r"\.lm\b"),  # the loaded model object itself
    re.compile(rf"\b{_HOLDERS}\._[a-z]"),  # a private attribute
]


def reach_throughs(text: str) -> list[tuple[int, str]]:
    return [(number, line.strip()) for number, line in enumerate(text.splitlines(), 1)
            if any(pattern.search(line) for pattern in REACH_THROUGH)]


def test_the_scan_sees_each_kind_of_reach_through():
    """The patterns catch what they are for, and leave the contract's own attributes alone."""
    probe = ('lm = getattr(backend, "lm", None)\n'
             "stats = getattr(self.generation, 'stats', None)\n"
             "name = engine.lm.config.name_or_path\n"
             "queue = backend._queue\n"
             "family = backend.family\n"
             "model = backend.model_id\n"
             "value = getattr(params, name)\n")
    assert [number for number, _ in reach_throughs(probe)] == [1, 2, 3, 4]


def test_the_scan_covers_every_client_module():
    names = {path.relative_to(ROOT).as_posix() for path in CLIENTS}
    assert {"chat_app.py", "ui/chat.py", "ui/sidebar.py", "app_pages/chat.py", "minicpm_core/api/app.py"} <= names


def test_no_client_reaches_into_a_backend_or_a_reply_stream():
    found = {path.relative_to(ROOT).as_posix(): hits for path in CLIENTS
             if (hits := reach_throughs(path.read_text(encoding="utf-8")))}
    assert found == {}, f"use the Backend/Generation contract instead (backend.model_id, backend.family): {found}"
