"""A real `streamlit run chat_app.py` and a headless Chromium to drive it, for tests/test_browser.py
and bench/ui.py.

Chromium is Debian's (/usr/bin/chromium), driven by Playwright without any browser download, with
the flags this machine needs (no sandbox as root, no GPU, no background connections: the network
is closed) and a fresh profile per launch. The server listens on 127.0.0.1 only, on a free port,
in its own process group so teardown ends it and nothing it started.

This module starts and waits; it asserts nothing about the app.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1280, "height": 800}
STEP_MS = 90_000  # a browser test's wait per step: generous, the machine is small and shared
SHOTS = ROOT / "artifacts" / "screenshots"  # the tests' screenshots (docs/screenshots/ holds copies)
SERVER_START_S = 120  # streamlit imports, binds; the model itself loads on the first page view
# Variables of the developer's shell that would change what the app under test does.
APP_ENV_DROPPED = ("MINICPM_PASSWORD", "MINICPM_DEMO", "MINICPM_BACKEND", "MINICPM_BASE_URL", "MINICPM_API_KEY",
                   "MINICPM_REMOTE_MODEL", "MINICPM_MAX_CONCURRENT")


def longest_plain_demo_qa() -> tuple[str, str]:
    """The demo question whose answer is the longest plain text (no Markdown), so a bubble's text
    equals it exactly."""
    from testkit.checkpoint import DEMO_QA

    return max(((q, a) for q, a in DEMO_QA if not re.search(r"[`$*_#\n]", a)), key=lambda qa: len(qa[1]))


APP_READY = "[data-testid=stApp][data-test-connection-state=CONNECTED]"
SCRIPT_IDLE = "[data-testid=stApp][data-test-script-state=notRunning]"

# Installed in the page before a question is sent: records every distinct text of the newest
# assistant bubble, with the time it appeared (performance.now(), ms), as the DOM changes.
REPLY_RECORDER_JS = """() => {
  const states = [];
  window.__replyStates = states;
  const record = () => {
    const bubbles = document.querySelectorAll('[data-testid=stChatMessage]');
    const last = bubbles[bubbles.length - 1];
    if (!last || !last.querySelector('[data-testid=stChatMessageAvatarAssistant]')) return;
    const markdown = last.querySelector(
      '[data-testid=stChatMessageContent] [data-testid=stMarkdown] [data-testid=stMarkdownContainer]');
    const text = markdown ? markdown.textContent : '';
    if (!states.length || states[states.length - 1].text !== text) states.push({t: performance.now(), text});
  };
  new MutationObserver(record).observe(document.body, {subtree: true, childList: true, characterData: true});
}"""


def needs_chromium():
    """The mark that skips a test module where Debian's Chromium is missing."""
    import pytest

    return pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class StreamlitServer:
    """`streamlit run chat_app.py` on 127.0.0.1:<free port>, its output in `log_path`.

    `env` is added to this process's environment (minus APP_ENV_DROPPED); `args` go after `--`.
    """

    def __init__(self, env: Mapping[str, str], log_path: Path, args: list[str] | None = None,
                 address: str = "127.0.0.1"):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log_path = Path(log_path)
        full_env = {k: v for k, v in os.environ.items() if k not in APP_ENV_DROPPED}
        full_env.update(env)
        command = [sys.executable, "-m", "streamlit", "run", str(ROOT / "chat_app.py"),
                   "--server.headless", "true", "--server.port", str(self.port),
                   "--server.address", address, "--browser.gatherUsageStats", "false",
                   "--server.fileWatcherType", "none"]
        if args:
            command += ["--", *args]
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(command, cwd=ROOT, env=full_env, stdout=self._log,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        start_new_session=True)

    def wait_until_serving(self, timeout: float = SERVER_START_S) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"streamlit exited with {self.process.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.url + "_stcore/health", timeout=5) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)  # polling a port that is not open yet: there is nothing to await
        raise TimeoutError(f"streamlit did not serve {self.url} within {timeout} s:\n{self.log()}")

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        """End the server's process group: SIGTERM, then SIGKILL if it lingers."""
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=15)
            except ProcessLookupError:
                pass
        self._log.close()

    def __enter__(self) -> StreamlitServer:
        try:
            self.wait_until_serving()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def app_env(model_dir: str | os.PathLike, data_dir: str | os.PathLike) -> dict[str, str]:
    """The environment the browser tests and the UI bench run the app with: a local checkpoint on CPU."""
    return {"MINICPM_MODEL": str(model_dir), "MINICPM_DEVICE": "cpu", "MINICPM_DTYPE": "float32",
            "MINICPM_DATA_DIR": str(data_dir)}


def launch_chromium(playwright, executable: str = CHROMIUM, extra_args: tuple[str, ...] = ()):
    """Debian's Chromium, headless; Playwright gives each launch a fresh, empty profile."""
    return playwright.chromium.launch(executable_path=executable, headless=True,
                                      args=[*CHROMIUM_ARGS, *extra_args])


@contextlib.contextmanager
def running_chromium(step_ms: float | None = None, extra_args: tuple[str, ...] = ()):
    """A test module's browser: Chromium for the `with` block, `expect()` waiting up to `step_ms`."""
    from playwright import sync_api

    with sync_api.sync_playwright() as playwright:
        if step_ms is not None:
            sync_api.expect.set_options(timeout=step_ms)
        chromium = launch_chromium(playwright, extra_args=extra_args)
        try:
            yield chromium
        finally:
            chromium.close()


LOADING_NOTICE = ".st-key-loading_notice"  # on the page while the model loads (ui/notices.py)


def open_app(page, url: str, timeout_ms: float) -> None:
    """Load the app and wait until it is connected, its model is loaded (the first page is drawn
    while it loads, then redrawn) and its script has finished a run."""
    page.goto(url)
    wait_idle(page, timeout_ms)
    page.wait_for_selector(LOADING_NOTICE, state="detached", timeout=timeout_ms)
    wait_idle(page, timeout_ms)


def slider(page, key: str):
    """Slider `key`'s keyboard-focusable thumb (react-aria keeps a hidden range input in it)."""
    return page.locator(f".st-key-{key} input[type=range]")


def slider_value(page, key: str):
    return page.locator(f".st-key-{key} [data-testid=stSliderThumbValue]")


def set_slider(page, key: str, shown: str, timeout_ms: float, steps_right: int = 0) -> None:
    """Move slider `key` as a user would: focus its thumb, press Home (its low end), then ArrowRight
    `steps_right` times; wait until it shows `shown` and the run that started has ended."""
    slider(page, key).focus()
    page.keyboard.press("Home")
    for _ in range(steps_right):
        page.keyboard.press("ArrowRight")
    slider_value(page, key).filter(has_text=re.compile(f"^{re.escape(shown)}$")).wait_for(timeout=timeout_ms)
    wait_idle(page, timeout_ms)


def set_greedy(page, timeout_ms: float) -> None:
    """Temperature 0 with the sidebar slider: a demo's reply is then exactly its qa.jsonl entry."""
    set_slider(page, "temperature", "0.00", timeout_ms)


def wait_animations_done(page) -> None:
    """No CSS or web animation running (an expander just opened or closed): what a screenshot waits for."""
    page.wait_for_function("() => document.getAnimations().every(a => a.playState !== 'running')")


def wait_idle(page, timeout_ms: float) -> None:
    """Connected, and no script run in progress. A run that is about to start is not seen: wait for
    its visible outcome first, then for this."""
    page.wait_for_selector(APP_READY, timeout=timeout_ms)
    page.wait_for_selector(SCRIPT_IDLE, timeout=timeout_ms)
