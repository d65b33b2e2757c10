"""The newcomer's path, checked end to end: called by .ci/newcomer with a venv that holds only the CPU
torch pin and requirements.txt.

It starts, from that venv (its bin/ first on PATH, as after `source venv/bin/activate`), the README's
own commands as written, on free ports, cold (an empty MINICPM_DATA_DIR), no password set:
- `streamlit run chat_app.py -- --demo`, only `--server.port` added: it listens on 0.0.0.0, as the
  shipped config says, so it must print an access token;
- the README's `python -m minicpm_core.api --demo --host 127.0.0.1 --port 6006` line, its port swapped
  for a free one.
Then, from this (the developer's) Python, with Playwright and Debian's Chromium:
- the app's bare address shows the login form and no chat; the `?token=` link the app printed logs in
  (and leaves the address bar), and there a demo question, asked with temperature 0 set on the sidebar
  slider, is answered with its known answer (minicpm_core's DEMO_QA), the bubble's text only ever growing;
- the API: `POST /` and `/v1/chat/completions` at temperature 0 give the known answer;
- the README's curl block and its Python `openai` block, cut from README.md, run as written against
  the API (only 127.0.0.1:PORT changes; the Python one with the venv's python, so requirements.txt
  must cover it) and print a reply.

Waits are on conditions (health endpoints, the app's DOM state), never on the clock. Every process
it starts is in its own process group, listed in `--pid-file` for .ci/newcomer's trap, and ended here.
Exit status 0 only when every check ran and passed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from browser_utils import (CHROMIUM, REPLY_RECORDER_JS, VIEWPORT, free_port, launch_chromium,  # noqa: E402
                           longest_plain_demo_qa, open_app, set_greedy, wait_idle)
from testkit.checkpoint import DEMO_QA  # noqa: E402

README = ROOT / "README.md"
START_S = 180  # a cold start on a loaded 2-core machine; the goal (BENCHMARKS.md) is far below
STEP_MS = 90_000
README_PORT_HOST = "127.0.0.1"
APP_COMMAND = "streamlit run chat_app.py -- --demo"
STORY_Q, STORY_A = longest_plain_demo_qa()
API_Q = "What is the capital of France?"
GREEDY = {"temperature": 0, "repetition_penalty": 1.0}

LAST_REPLY_JS = """() => {
  const bubbles = [...document.querySelectorAll('[data-testid=stChatMessage]')];
  const last = bubbles[bubbles.length - 1];
  const md = last && last.querySelector('[data-testid=stMarkdown] [data-testid=stMarkdownContainer]');
  return md ? md.textContent : null;
}"""


class Failed(Exception):
    """A check did not pass; the message says which and what was seen."""


# --- the README -------------------------------------------------------------------------------------

def code_blocks(markdown: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", markdown, flags=re.S | re.M)


def readme_block(language: str, marker: str) -> str:
    blocks = [b for b in code_blocks(README.read_text(encoding="utf-8"), language) if marker in b]
    if len(blocks) != 1:
        raise Failed(f"README.md has {len(blocks)} ```{language} blocks containing {marker!r}, expected 1")
    return blocks[0]


def readme_api_demo_command() -> tuple[list[str], int]:
    """The README's `python -m minicpm_core.api --demo ...` line, split, and the port it names."""
    lines = [line.split("#", 1)[0].strip() for block in code_blocks(README.read_text(encoding="utf-8"), "bash")
             for line in block.splitlines() if "minicpm_core.api --demo" in line]
    if len(lines) != 1:
        raise Failed(f"README.md has {len(lines)} `python -m minicpm_core.api --demo` lines, expected 1")
    argv = shlex.split(lines[0])
    if "--port" not in argv:
        raise Failed(f"README's demo API command {lines[0]!r} names no --port, so its examples' port is a guess")
    return argv, int(argv[argv.index("--port") + 1])


def relocate(block: str, readme_port: int, port: int) -> str:
    """The block with the README's host:port replaced by the test server's; it must name it."""
    address = f"{README_PORT_HOST}:{readme_port}"
    if address not in block:
        raise Failed(f"this README example does not use the demo server's address {address}:\n{block}")
    return block.replace(address, f"{README_PORT_HOST}:{port}")


# --- processes --------------------------------------------------------------------------------------

class Servers:
    """Processes started in their own process groups; `stop_all` ends each group."""

    def __init__(self, pid_file: Path, log_dir: Path):
        self.pid_file, self.log_dir, self.processes, self.started = pid_file, log_dir, {}, {}

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = open(self.log_dir / f"{name}.log", "wb")
        process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
        self.processes[name], self.started[name] = process, time.monotonic()
        with open(self.pid_file, "a", encoding="utf-8") as f:
            f.write(f"{process.pid}\n")
        return process

    def log(self, name: str) -> str:
        return (self.log_dir / f"{name}.log").read_text(encoding="utf-8", errors="replace")

    def wait_healthy(self, name: str, url: str) -> float:
        """Poll `url` until it answers 200; return the seconds since the process started."""
        started, process = self.started[name], self.processes[name]
        while time.monotonic() - started < START_S:
            if process.poll() is not None:
                raise Failed(f"{name} exited with {process.returncode}:\n{self.log(name)}")
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    if response.status == 200:
                        return time.monotonic() - started
            except OSError:
                pass
            time.sleep(0.2)  # the port is not open yet: there is no event to wait on
        raise Failed(f"{name} was not healthy at {url} within {START_S} s:\n{self.log(name)}")

    def stop_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGTERM)
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(timeout=15)
                except ProcessLookupError:
                    pass


def venv_env(venv: Path, data_dir: Path) -> dict[str, str]:
    """This environment as if `source venv/bin/activate` had run, minus the developer's MINICPM_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINICPM_") and k != "PYTHONPATH"}
    env.update(VIRTUAL_ENV=str(venv), PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
               MINICPM_DATA_DIR=str(data_dir), PYTHONUNBUFFERED="1")
    return env


# --- the checks -------------------------------------------------------------------------------------

def post_json(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.load(response)


def check_api_answers(base: str) -> None:
    answer = dict(DEMO_QA)[API_Q]
    seed = post_json(base + "/", {"prompt": API_Q, **GREEDY})
    if seed.get("response") != answer:
        raise Failed(f"POST / answered {seed!r}, expected the demo answer {answer!r}")
    chat = post_json(base + "/v1/chat/completions",
                     {"model": "minicpm-2b", "messages": [{"role": "user", "content": API_Q}], **GREEDY})
    content = chat["choices"][0]["message"]["content"]
    if content != answer:
        raise Failed(f"/v1/chat/completions answered {content!r}, expected {answer!r}")
    print(f"ok  API: POST / and /v1/chat/completions answer {API_Q!r} with the demo answer")


def run_readme_block(what: str, argv: list[str], env: dict[str, str]) -> str:
    result = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    if result.returncode != 0 or not result.stdout.strip():
        raise Failed(f"README's {what} exited with {result.returncode} and printed "
                     f"{result.stdout!r}\nstderr:\n{result.stderr}")
    return result.stdout


def check_readme_examples(readme_port: int, port: int, env: dict[str, str], work: Path) -> None:
    curl = relocate(readme_block("bash", "curl -X POST"), readme_port, port)
    out = run_readme_block("curl block", ["bash", "-euo", "pipefail", "-c", curl], env)
    reply = json.loads(out)
    if reply.get("status") != 200 or not isinstance(reply.get("response"), str) or not reply["response"].strip():
        raise Failed(f"README's curl block printed {out!r}: no reply in it")
    print(f"ok  README curl block: status 200, reply {reply['response'][:40]!r}...")

    script = work / "readme_openai_example.py"
    script.write_text(relocate(readme_block("python", "from openai import OpenAI"), readme_port, port),
                      encoding="utf-8")
    out = run_readme_block("Python openai block", ["python", str(script)], env)  # the venv's python, via PATH
    print(f"ok  README openai block (venv python): streamed {out.strip()[:40]!r}...")


def printed_link(servers: Servers, name: str) -> str:
    """The `?token=` link the app printed in its terminal (at its first session's first run)."""
    deadline = time.monotonic() + STEP_MS / 1000
    while time.monotonic() < deadline:
        found = re.search(r"http://localhost:\d+/\?token=[A-Za-z0-9_-]+", servers.log(name))
        if found:
            return found.group(0)
        time.sleep(0.2)  # a log file announces nothing
    raise Failed(f"the app printed no ?token= link:\n{servers.log(name)}")


def check_app_in_chromium(url: str, servers: Servers) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = browser.new_context(viewport=VIEWPORT, locale="en-US").new_page()
            page.set_default_timeout(STEP_MS)
            page.goto(url)  # the bare address: the login form, nothing else
            page.locator("[data-testid=stChatInput], .st-key-password").first.wait_for()
            wait_idle(page, STEP_MS)
            if not page.locator(".st-key-password").count() or page.get_by_test_id("stChatInput").count():
                raise Failed("the bare address did not show the login form alone")
            link = printed_link(servers, "app")
            open_app(page, link, STEP_MS * 2)  # the first view loads the model: cold
            if "token=" in page.url:
                raise Failed(f"the token stayed in the address bar: {page.url}")
            print("ok  app: the bare address shows the login form; the printed link logs in")
            set_greedy(page, STEP_MS)
            page.evaluate(REPLY_RECORDER_JS)
            box = page.get_by_test_id("stChatInputTextArea")
            box.fill(STORY_Q)
            box.press("Enter")
            bubbles = page.get_by_test_id("stChatMessage")
            bubbles.nth(1).get_by_test_id("stCaptionContainer").filter(has_text="finished").wait_for()
            wait_idle(page, STEP_MS)
            shown = page.evaluate(LAST_REPLY_JS)
            states = [s["text"] for s in page.evaluate("window.__replyStates") if s["text"]]
            exceptions = page.get_by_test_id("stException").count()
        finally:
            browser.close()
    if exceptions:
        raise Failed(f"the app shows {exceptions} exception(s)")
    if shown != STORY_A:
        raise Failed(f"the app answered {STORY_Q!r} with {shown!r}, expected {STORY_A!r}")
    # How many partial states of this short reply show depends on the machine's load (Streamlit composes
    # redraws queued between two flushes, the browser draws what arrived by its next paint); the suite's
    # stop tests watch a reply that runs on for seconds stream in.
    if not all(STORY_A.startswith(text) for text in states):
        raise Failed(f"the reply did not grow into the answer: the bubble showed {states!r}")
    print(f"ok  app in Chromium: {STORY_Q!r} answered with the demo answer ({len(states)} states shown)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--venv", type=Path, required=True, help="the newcomer venv (requirements.txt only)")
    parser.add_argument("--work", type=Path, required=True, help="an empty directory for data, logs, pids")
    args = parser.parse_args(argv)
    if not Path(CHROMIUM).exists():
        print(f"FAILED: {CHROMIUM} is missing (apt-get install chromium)", file=sys.stderr)
        return 1
    venv, work = args.venv.resolve(), args.work.resolve()
    data_dir = work / "data"
    data_dir.mkdir(parents=True)
    env = venv_env(venv, data_dir)
    servers = Servers(work / "pids", work)
    try:
        api_argv, readme_port = readme_api_demo_command()
        api_port, app_port = free_port(), free_port()
        api_argv[api_argv.index("--port") + 1] = str(api_port)
        servers.start("api", api_argv, env)  # "python" resolves to the venv's, via PATH
        if APP_COMMAND not in README.read_text(encoding="utf-8"):
            raise Failed(f"README.md no longer says `{APP_COMMAND}`")
        app_argv = shlex.split(APP_COMMAND)
        app_argv[app_argv.index("--"):app_argv.index("--")] = ["--server.port", str(app_port)]
        servers.start("app", app_argv, env)

        api = f"http://127.0.0.1:{api_port}"
        print(f"ok  API up (model loaded) {servers.wait_healthy('api', api + '/health'):.1f} s after start")
        check_api_answers(api)
        check_readme_examples(readme_port, api_port, env, work)
        print(f"ok  app serving {servers.wait_healthy('app', f'http://127.0.0.1:{app_port}/_stcore/health'):.1f} s "
              "after start")
        check_app_in_chromium(f"http://127.0.0.1:{app_port}/", servers)
        for name in ("api", "app"):
            if "Traceback" in servers.log(name):
                raise Failed(f"{name} logged a traceback:\n{servers.log(name)}")
    except Failed as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        servers.stop_all()
    print("newcomer check: every check passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
