"""Cold start of the demo: from launching the command to the first streamed reply token.

    python bench/cold_start.py [--repeats 3] [--with-training]

Goal (issue 8): the first `--demo` start is ready within 10 s on this machine.

Two paths, each started fresh, with an empty MINICPM_DATA_DIR, every repeat:
- app: `streamlit run chat_app.py -- --demo` (on 127.0.0.1:<free port>); Chromium, launched
  beforehand so its own start is not counted, opens the page as soon as the server answers
  (`serving`), waits for the chat input (`interactive`: the page is drawn while the model loads),
  sends a demo question at once and waits until the reply bubble shows its first text (`first_token`);
- api: `python -m minicpm_core.api --demo`; /health is polled until it answers (the model is loaded
  before the server listens), then a streamed /v1/chat/completions is read up to its first content
  delta.
The time is from just before the process is started to that first token. The runs alternate
(app, api, app, ...) so drift on a shared machine hits both alike.

`--with-training` also times, in the same run, what the first `--demo` start used to do before it
could load anything: train the demo model (`python -m testkit.checkpoint DIR --demo`, a fresh
process). The demo model is now shipped, so that time is gone from the start.

Caveat: the OS page cache already holds torch and the other packages (this script cannot drop it on
a shared machine), so a truly first start after `pip install` reads them from disk once more.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from browser_utils import VIEWPORT, StreamlitServer, free_port, launch_chromium  # noqa: E402
from testkit.checkpoint import DEMO_QA  # noqa: E402

GOAL_S = 10.0
TIMEOUT_S = 300
QUESTION = DEMO_QA[0][0]
FIGURES = ("app serving", "app interactive", "app first_token", "api first_token", "training")
FIRST_TEXT_JS = """() => {
  const bubbles = [...document.querySelectorAll('[data-testid=stChatMessage]')];
  const last = bubbles[bubbles.length - 1];
  if (!last || !last.querySelector('[data-testid=stChatMessageAvatarAssistant]')) return false;
  const md = last.querySelector('[data-testid=stMarkdown] [data-testid=stMarkdownContainer]');
  return !!(md && md.textContent.length);
}"""


def clean_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINICPM_")}
    env["MINICPM_DATA_DIR"] = str(data_dir)
    return env


def app_first_token(browser, tmp: Path) -> dict[str, float]:
    """Seconds from launch to: the server answering /_stcore/health (`serving`), the chat input on the
    page (`interactive`: a question can be typed and sent), and the reply's first text (`first_token`)."""
    started = time.perf_counter()
    server = StreamlitServer({"MINICPM_DATA_DIR": str(tmp / "data")}, tmp / "streamlit.log", args=["--demo"])
    with server:
        phases = {"serving": time.perf_counter() - started}
        context = browser.new_context(viewport=VIEWPORT, locale="en-US")
        try:
            page = context.new_page()
            page.goto(server.url)
            box = page.get_by_test_id("stChatInputTextArea")
            box.wait_for(state="visible", timeout=TIMEOUT_S * 1000)
            phases["interactive"] = time.perf_counter() - started
            box.fill(QUESTION)
            box.press("Enter")
            page.wait_for_function(FIRST_TEXT_JS, timeout=TIMEOUT_S * 1000)
            phases["first_token"] = time.perf_counter() - started
            return phases
        finally:
            context.close()


def api_first_token(tmp: Path) -> float:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    started = time.perf_counter()
    with open(tmp / "api.log", "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "minicpm_core.api", "--demo", "--host", "127.0.0.1",
                                    "--port", str(port)], cwd=ROOT, env=clean_env(tmp / "data"), stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    try:
        while True:
            if process.poll() is not None or time.perf_counter() - started > TIMEOUT_S:
                raise RuntimeError(f"the API did not come up:\n{(tmp / 'api.log').read_text()}")
            try:
                with urllib.request.urlopen(base + "/health", timeout=5):
                    break
            except OSError:
                time.sleep(0.05)  # not listening yet: nothing to wait on
        body = {"model": "minicpm-2b", "stream": True, "messages": [{"role": "user", "content": QUESTION}]}
        request = urllib.request.Request(base + "/v1/chat/completions", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            for line in response:
                if line.startswith(b"data: {"):
                    choices = json.loads(line[6:])["choices"]
                    if choices and choices[0]["delta"].get("content"):
                        return time.perf_counter() - started
        raise RuntimeError("the stream ended without any content")
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def training_seconds(tmp: Path) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "testkit.checkpoint", str(tmp / "trained"), "--demo"], cwd=ROOT,
                   check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--with-training", action="store_true", help="also time the demo training once per repeat")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    times: dict[str, list[float]] = {name: [] for name in FIGURES}
    with sync_playwright() as playwright, tempfile.TemporaryDirectory() as root:
        browser = launch_chromium(playwright)
        try:
            for i in range(args.repeats):
                for name, run in (("app", lambda d: app_first_token(browser, d)), ("api", api_first_token)):
                    tmp = Path(root) / f"{name}{i}"
                    tmp.mkdir()
                    result = run(tmp)
                    phases = result if isinstance(result, dict) else {"first_token": result}
                    for phase, seconds in phases.items():
                        times[f"{name} {phase}"].append(seconds)
                    print(f"run {i + 1}: {name} " + ", ".join(f"{k} {v:.1f} s" for k, v in phases.items()),
                          flush=True)
                if args.with_training:
                    times["training"].append(training_seconds(Path(root) / f"train{i}"))
                    print(f"run {i + 1}: demo training {times['training'][-1]:.1f} s", flush=True)
        finally:
            browser.close()
    print(f"load average now: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    for name in FIGURES:
        if times[name]:
            print(f"{name:>22}: median {statistics.median(times[name]):.1f} s "
                  f"(runs {', '.join(f'{t:.1f}' for t in times[name])})"
                  + (f"; goal <= {GOAL_S:.0f} s" if name.endswith("first_token") else ""))
    if times["training"]:
        train = statistics.median(times["training"])
        for name in ("app", "api"):
            now = statistics.median(times[f"{name} first_token"])
            print(f"{name}: now / with the old first-start training = {now:.1f} / {now + train:.1f} s "
                  f"= {now / (now + train):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
