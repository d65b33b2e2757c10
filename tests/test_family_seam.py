"""The model-family seam holds: only minicpm_core/families/ knows what makes a checkpoint MiniCPM-2B.

Outside that package no runtime module (the core, the app's ui/ and app_pages/, chat_app.py) may name
MiniCPM-2B's template tags, its 4096-token context, or the Granite classes it runs on: they ask the
family object instead. Tests, testkit/ and bench/ are not scanned; they may build MiniCPM-2B
checkpoints and compare against Granite directly.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCANNED = ("minicpm_core", "ui", "app_pages", "chat_app.py")
FAMILY_PACKAGE = Path("minicpm_core") / "families"
FORBIDDEN = {
    "the template tag <用户>": re.compile(re.escape("<用户>")),
    "the template tag <AI>": re.compile(re.escape("<AI>")),
    "the number 4096": re.compile(r"(?<![\w.])4_?096(?![\w.])"),
    "a Granite class": re.compile(r"\bGranite"),
}


def runtime_modules(root: Path) -> list[Path]:
    """Every Python file the seam rule covers, relative to `root`."""
    files: list[Path] = []
    for entry in SCANNED:
        path = root / entry
        candidates = sorted(path.rglob("*.py")) if path.is_dir() else [path] if path.is_file() else []
        files += [file.relative_to(root) for file in candidates]
    return [file for file in files if FAMILY_PACKAGE not in file.parents]


# The test helpers stay out of the runtime: the app and the API never import them.
TESTKIT_IMPORT = {"an import of testkit": re.compile(r"^\s*(from|import)\s+testkit\b")}


def violations(root: Path, forbidden: dict[str, re.Pattern] = FORBIDDEN) -> list[str]:
    """`path:line: what` for each forbidden name outside the family package."""
    found = []
    for file in runtime_modules(root):
        for number, line in enumerate((root / file).read_text(encoding="utf-8").splitlines(), 1):
            found += [f"{file}:{number}: {what}" for what, pattern in forbidden.items() if pattern.search(line)]
    return found


def test_no_runtime_module_outside_the_family_package_names_minicpm_2b_specifics():
    assert violations(ROOT) == [], "ask the model family (minicpm_core.families) instead"


def test_the_runtime_does_not_import_the_test_helpers(tmp_path):
    assert violations(ROOT, TESTKIT_IMPORT) == []
    write(tmp_path, "minicpm_core/options.py", "def demo():\n    from testkit.checkpoint import DEMO_MODEL_DIR\n")
    assert violations(tmp_path, TESTKIT_IMPORT) == ["minicpm_core/options.py:2: an import of testkit"]


def test_the_scan_covers_the_runtime_and_skips_only_the_family_package():
    scanned = {str(path) for path in runtime_modules(ROOT)}
    assert {"minicpm_core/engine.py", "minicpm_core/prompt.py", "minicpm_core/loader.py", "minicpm_core/remote.py",
            "ui/i18n.py", "app_pages/chat.py", "chat_app.py"} <= scanned
    assert not any(path.startswith(("minicpm_core/families/", "testkit/", "tests/", "bench/")) for path in scanned)


def write(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


@pytest.mark.parametrize("line, what", [
    ("STOP = ('<用户>',)", "the template tag <用户>"),
    ("TEMPLATE = \"{{ m + '<AI>' }}\"", "the template tag <AI>"),
    ("CONTEXT = 4096", "the number 4096"),
    ("CONTEXT = 4_096", "the number 4096"),
    ("from transformers import GraniteForCausalLM", "a Granite class"),
    ("config = GraniteConfig()", "a Granite class"),
])
def test_a_module_that_names_a_family_specific_fails_the_seam(tmp_path, line, what):
    for place in ("minicpm_core/engine.py", "ui/chat.py", "app_pages/model.py", "chat_app.py"):
        write(tmp_path, place, f'"""A module."""\n{line}\n')
    write(tmp_path, "minicpm_core/families/minicpm2b.py", f"{line}\n")  # allowed: the family itself
    write(tmp_path, "testkit/checkpoint.py", f"{line}\n")  # not scanned: a test helper
    assert violations(tmp_path) == [f"{place}:2: {what}" for place in
                                    ("minicpm_core/engine.py", "ui/chat.py", "app_pages/model.py", "chat_app.py")]


@pytest.mark.parametrize("line", ["MAX = 40960", "size = 14096", "ratio = 0.4096", "see issue #1409", "granite_rock = 1"])
def test_lookalikes_are_not_violations(tmp_path, line):
    write(tmp_path, "minicpm_core/engine.py", f"{line}\n")
    assert violations(tmp_path) == []
