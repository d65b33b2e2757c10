"""Streaming speed as the browser shows it, against the engine's own, on the same model in one run.

    python bench/ui.py [--layers 2] [--max-length 128] [--repeats 3] [--browser-nice 0]

Goal: the reply grows in the browser at >= 0.9 x the speed at which the engine produces it.

Measured here (2 shared cores, 83 tokens per reply, every run the same length, medians of 5):
- `python bench/ui.py --repeats 5`: engine 5.32, browser 5.30 units/s, ratio 0.997; the app's own
  engine (caption) 5.30, so browser / app's engine 1.001.
- `python bench/ui.py --repeats 5 --browser-nice 19`: engine 5.72, browser 5.60, ratio 0.980.
- the first command, earlier, while other work kept the machine's load at 4-5: engine 5.53, browser
  4.26, ratio 0.771 (runs 0.64-1.00), yet browser / app's engine 0.990. The browser showed every
  token as soon as the app's engine made it; the app's engine itself was slower, sharing two cores
  with Chromium (about 4 CPU-s per 17 s reply) and the other load. py-spy on the app during a reply:
  Streamlit's threads wait (ScriptRunner on the engine's condition, the event loop in select); the
  engine thread is in Linear.forward. With the browser on the user's machine, as in use, that
  contention is gone.

Setup: a MiniCPM-2B-wide random checkpoint with few layers (float32, CPU), served by a real
`streamlit run chat_app.py` (tests/browser_utils.py) and driven by headless Chromium, and the same
checkpoint loaded by an Engine in this process. Runs alternate (engine, browser, engine, ...) so
drift on a shared machine hits both alike; the app server is idle while the engine runs and the
in-process engine is idle while the browser runs.

Each browser run is a new session: temperature 0, repetition penalty 1.00 and max_length set with
the sidebar sliders by keyboard, the question typed into the chat input. A MutationObserver in the
page timestamps every change of the reply bubble; the engine side timestamps every text delta it
yields. Both sides compute the same thing: units shown from the first visible change to the last,
divided by the time between them (so prefill and page overhead are out of both).

Units: characters of the reply's raw text. Random weights decode greedily to ">>>>..." (one ">"
per token), which Markdown renders as nested blockquotes with no text at all, so the page counts
characters as textContent length plus the number of <blockquote> elements. The script checks that
the browser ended with as many units as the engine and that the app's token count (the caption under
the reply) equals the engine's, and says so if not. The caption's own tokens/s (the app's engine,
during the browser run) is printed too: browser / app-engine isolates what the UI adds.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from testkit.checkpoint import write_checkpoint  # noqa: E402
from minicpm_core.engine import Engine  # noqa: E402
from minicpm_core.loader import load_model  # noqa: E402
from minicpm_core.params import MIN_MAX_LENGTH  # noqa: E402
from tests.browser_utils import (CHROMIUM, VIEWPORT, StreamlitServer, app_env,  # noqa: E402
                                 launch_chromium, open_app, set_slider, wait_idle)

QUESTION = "请详细介绍一下北京的历史和文化。Tell me about Beijing."
STEP_MS = 300_000
MAX_LENGTH_STEP = 16  # the sidebar slider's step (ui.state.SLIDER_STEPS)

# Like browser_utils.REPLY_RECORDER_JS, but counting raw characters: text plus blockquote levels.
UNIT_RECORDER_JS = """() => {
  const states = [];
  window.__units = states;
  const record = () => {
    const bubbles = document.querySelectorAll('[data-testid=stChatMessage]');
    const last = bubbles[bubbles.length - 1];
    if (!last || !last.querySelector('[data-testid=stChatMessageAvatarAssistant]')) return;
    const md = last.querySelector(
      '[data-testid=stChatMessageContent] [data-testid=stMarkdown] [data-testid=stMarkdownContainer]');
    const units = md ? md.textContent.trim().length + md.querySelectorAll('blockquote').length : 0;
    if (!states.length || states[states.length - 1].units !== units) states.push({t: performance.now(), units});
  };
  new MutationObserver(record).observe(document.body, {subtree: true, childList: true, characterData: true});
}"""


def niced_chromium(folder: Path, nice: int) -> str:
    """CHROMIUM, or a wrapper that starts it (and so every process it spawns) at niceness `nice`."""
    if not nice:
        return CHROMIUM
    wrapper = folder / "chromium-niced"
    wrapper.write_text(f'#!/bin/sh\nexec nice -n {nice} {CHROMIUM} "$@"\n')
    wrapper.chmod(0o755)
    return str(wrapper)


def checkpoint(layers: int) -> Path:
    """The same cached checkpoint as bench/engine.py's."""
    path = Path(tempfile.gettempdir()) / f"minicpm-bench-wide-{layers}l"
    if not (path / "config.json").exists():
        write_checkpoint(path, full_size=True, num_layers=layers)
    return path


def rate(points: list[tuple[float, int]]) -> float | None:
    """Units per second from the first visible point to the last: [(seconds, units so far)]."""
    shown = [(t, u) for t, u in points if u > 0]
    if len(shown) < 2 or shown[-1][0] <= shown[0][0]:
        return None
    return (shown[-1][1] - shown[0][1]) / (shown[-1][0] - shown[0][0])


def engine_run(engine: Engine, params: dict) -> dict:
    generation = engine.submit([{"role": "user", "content": QUESTION}], params)
    points, units = [], 0
    for delta in generation:
        units += len(delta)
        points.append((time.perf_counter(), units))
    stats = generation.stats
    return {"units_s": rate(points), "units": units, "tokens": stats.completion_tokens,
            "tok_s": stats.tokens_per_second}


def cpu_seconds(server: StreamlitServer) -> dict[str, float]:
    """CPU time used so far by the app server and by Chromium (this process's descendants)."""
    used = {"app": 0.0, "chromium": 0.0}
    for process in [psutil.Process(server.process.pid), *psutil.Process(os.getpid()).children(recursive=True)]:
        try:
            name = "app" if process.pid == server.process.pid else "chromium" if "chrom" in process.name() else None
            if name:
                times = process.cpu_times()
                used[name] += times.user + times.system
        except psutil.Error:
            pass  # a renderer that has just exited
    return used


def browser_run(browser, server: StreamlitServer, max_length: int) -> dict:
    url = server.url
    context = browser.new_context(viewport=VIEWPORT, locale="en-US")
    try:
        page = context.new_page()
        open_app(page, url, STEP_MS)
        set_slider(page, "temperature", "0.00", STEP_MS)
        set_slider(page, "repetition_penalty", "1.00", STEP_MS)
        set_slider(page, "max_length", str(max_length), STEP_MS,
                   steps_right=(max_length - MIN_MAX_LENGTH) // MAX_LENGTH_STEP)
        page.evaluate(UNIT_RECORDER_JS)
        box = page.get_by_test_id("stChatInputTextArea")
        box.fill(QUESTION)
        before, started = cpu_seconds(server), time.perf_counter()
        box.press("Enter")
        caption = page.get_by_test_id("stChatMessage").nth(1).get_by_test_id("stCaptionContainer")
        caption.wait_for(timeout=STEP_MS)
        wait_idle(page, STEP_MS)
        after, wall = cpu_seconds(server), time.perf_counter() - started
        text = caption.text_content()
        states = page.evaluate("window.__units")
    finally:
        context.close()
    tokens = int(re.search(r"(\d+) tokens", text).group(1))
    speed = re.search(r"([\d.]+) tokens/s", text)
    points = [(s["t"] / 1000, s["units"]) for s in states]
    return {"units_s": rate(points), "units": points[-1][1] if points else 0, "tokens": tokens,
            "tok_s": float(speed.group(1)) if speed else None, "updates": len(points), "caption": text,
            "cpu": {name: after[name] - before[name] for name in after}, "wall": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=128, help="prompt + reply tokens (a multiple of 16)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--browser-nice", type=int, default=0,
                        help="run Chromium at this niceness (19: the model gets the CPU first, as when the "
                             "browser is on the user's own machine)")
    args = parser.parse_args()
    if args.max_length % MAX_LENGTH_STEP or args.max_length < MIN_MAX_LENGTH:
        parser.error(f"--max-length must be a multiple of {MAX_LENGTH_STEP}, at least {MIN_MAX_LENGTH}")

    from playwright.sync_api import sync_playwright

    path = checkpoint(args.layers)
    params = {"temperature": 0.0, "top_p": 0.8, "repetition_penalty": 1.0, "max_length": args.max_length}
    with tempfile.TemporaryDirectory() as tmp, \
            StreamlitServer(app_env(path, Path(tmp) / "data"), Path(tmp) / "streamlit.log") as server, \
            sync_playwright() as playwright:
        engine = Engine(load_model(path, device="cpu", dtype="float32"))
        print(f"model: MiniCPM-2B width, {args.layers} layers, float32, cpu; max_length {args.max_length}; "
              f"app at {server.url}; Chromium niceness {args.browser_nice}")
        browser = launch_chromium(playwright, niced_chromium(Path(tmp), args.browser_nice))
        engine_run(engine, dict(params, max_length=MIN_MAX_LENGTH * 4))  # warm-up
        browser_run(browser, server, MIN_MAX_LENGTH * 4)  # warm-up; loads the model in the app
        engine_runs, browser_runs = [], []
        for i in range(args.repeats):
            engine_runs.append(engine_run(engine, params))
            browser_runs.append(browser_run(browser, server, args.max_length))
            e, b = engine_runs[-1], browser_runs[-1]
            print(f"run {i + 1}: engine {e['units_s']:.2f} units/s ({e['tokens']} tokens, {e['units']} units, "
                  f"{e['tok_s']:.2f} tok/s) | browser {b['units_s']:.2f} units/s ({b['tokens']} tokens, "
                  f"{b['units']} units, {b['updates']} updates; caption: {b['caption']}; CPU s over "
                  f"{b['wall']:.1f} s: app {b['cpu']['app']:.1f}, chromium {b['cpu']['chromium']:.1f})")
        browser.close()
        engine.close()

    lengths = {(r["tokens"], r["units"]) for r in engine_runs + browser_runs}
    engine_speed = statistics.median(r["units_s"] for r in engine_runs)
    browser_speed = statistics.median(r["units_s"] for r in browser_runs)
    # the caption's tok/s in units/s (for the ">>>>" reply, one unit per token)
    app_speed = statistics.median(r["tok_s"] * r["units"] / r["tokens"] for r in browser_runs)
    engine_tok_s = statistics.median(r["tok_s"] for r in engine_runs)
    same = "same length in every run" if len(lengths) == 1 else f"LENGTHS DIFFER (tokens, units): {sorted(lengths)}"
    print(f"engine (this process): {engine_speed:.2f} units/s ({engine_tok_s:.2f} tok/s by its stats)")
    print(f"app's engine (caption, during the browser runs): {app_speed:.2f} units/s")
    print(f"browser: {browser_speed:.2f} units/s")
    print(f"ratio browser / engine: {browser_speed / engine_speed:.3f} (goal >= 0.9); "
          f"browser / app's engine: {browser_speed / app_speed:.3f} ({same})")


if __name__ == "__main__":
    main()
