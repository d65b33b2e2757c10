"""What a rerun costs with a long conversation open, against a short one, in the browser, in one run.

    python bench/long_chat.py [--long 1000] [--short 20] [--repeats 7]

Goal (issue 20): a sidebar rerun with 1,000 messages open costs at most 1.5 x the same rerun with 20.
Opening the conversation and sending a question in it are reported the same way.

Setup: the shipped demo model, served by a real `streamlit run chat_app.py` (tests/browser_utils.py),
driven by headless Chromium. Two conversations are written into the app's store before it starts, as
an import would leave them (messages without a reply's numbers): `--short` and `--long` messages of
questions and Markdown answers (a list, a code block), about 500 characters each. Every measurement
alternates short, long, short, long, ... so drift on a shared machine hits both alike; the medians are
compared.

What is timed, from the click (or Enter) to the end of the run it started as the page reports it (the
app's script state back to "notRunning", then two animation frames so the page has drawn it):
- sidebar rerun: a click on a sidebar preset (precise and creative in turn), which changes no message;
- open: a click on the conversation in the sidebar's list, coming from an empty conversation;
- send: a question typed into the chat input, until the streaming reply first shows text (the page's
  work plus the prompt and its prefill), and until the reply's run and the redraw after it ended. The
  reply is the demo model's, greedy; with a long history before it, it is not the canned answer and
  its length differs between the two, so "done" compares replies of different lengths (token counts
  are printed).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from minicpm_core.paths import DEMO_MODEL_DIR  # noqa: E402
from minicpm_core.store import DB_FILENAME, ConversationStore  # noqa: E402
from tests.browser_utils import (VIEWPORT, StreamlitServer, app_env, launch_chromium, open_app,  # noqa: E402
                                 set_greedy, wait_idle)

STEP_MS = 300_000
QUESTION = "What is the capital of France?"  # one the demo model knows

# Resolves with the milliseconds from the click to the end of the run it started.
TIMED_RUN_JS = """async (selector) => {
  const app = document.querySelector('[data-testid=stApp]');
  const frame = () => new Promise(resolve => requestAnimationFrame(() => requestAnimationFrame(resolve)));
  const ended = new Promise(resolve => {
    let started = false;
    const observer = new MutationObserver(() => {
      const state = app.getAttribute('data-test-script-state');
      if (state === 'running') started = true;
      else if (started && state === 'notRunning') { observer.disconnect(); resolve(); }
    });
    observer.observe(app, {attributes: true, attributeFilter: ['data-test-script-state']});
  });
  const t0 = performance.now();
  document.querySelector(selector).click();
  await ended;
  await frame();
  return performance.now() - t0;
}"""


def answer_text(i: int) -> str:
    return (f"Here is answer **{i}**, with a list and a little code.\n\n"
            f"- first point about item {i}: the quick brown fox jumps over the lazy dog\n"
            f"- second point: 北京是中国的首都，有三千多年的历史。\n"
            f"- third point: a longer sentence so that the bubble wraps onto a second line on the page\n\n"
            f"```python\ndef item_{i}(x):\n    return x * {i} + 1\n```\n\nThat is all for number {i}.")


def write_conversation(store: ConversationStore, title: str, messages: int) -> str:
    conversation = store.create(title)
    for i in range(messages // 2):
        store.append(conversation.id, "user", f"Question {i}: tell me about item {i}, please?")
        store.append(conversation.id, "assistant", answer_text(i))
    return conversation.id


def timed_click(page, selector: str) -> float:
    seconds = page.evaluate(TIMED_RUN_JS, selector) / 1000
    wait_idle(page, STEP_MS)
    return seconds


REPLY_CAPTIONS = ("() => [...document.querySelectorAll('[data-testid=stChatMessage] [data-testid=stCaptionContainer]')]"
                  ".filter(c => c.textContent.includes('tokens')).length")


# Records when the streaming reply (the bubble with the Stop button) first shows text.
FIRST_TEXT_JS = """() => {
  window.__firstText = null;
  const observer = new MutationObserver(() => {
    const md = document.querySelector(
      '[data-testid=stChatMessage]:has(.st-key-stop_reply) [data-testid=stMarkdown] [data-testid=stMarkdownContainer]');
    if (md && md.textContent.trim()) { window.__firstText = performance.now(); observer.disconnect(); }
  });
  observer.observe(document.body, {subtree: true, childList: true, characterData: true});
}"""


def timed_send(page) -> tuple[float, float, str]:
    """Seconds from Enter to the reply's first text and to the end of the redraw after the reply, and
    the reply's caption."""
    before = page.evaluate(REPLY_CAPTIONS)
    page.evaluate(FIRST_TEXT_JS)
    box = page.get_by_test_id("stChatInputTextArea")
    box.fill(QUESTION)
    started = page.evaluate("performance.now()")
    box.press("Enter")
    page.wait_for_function(f"({REPLY_CAPTIONS})() > {before}", timeout=STEP_MS)
    wait_idle(page, STEP_MS)
    done = (page.evaluate("performance.now()") - started) / 1000
    first = (page.evaluate("window.__firstText") - started) / 1000
    caption = page.locator("[data-testid=stChatMessage] [data-testid=stCaptionContainer]").last.text_content()
    return first, done, caption


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--long", type=int, default=1000, help="messages in the long conversation")
    parser.add_argument("--short", type=int, default=20, help="messages in the short conversation")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        store = ConversationStore(data / DB_FILENAME)
        sizes = {"short": args.short, "long": args.long}
        ids = {name: write_conversation(store, f"{name} ({n} messages)", n) for name, n in sizes.items()}
        empty = store.create("empty").id
        store.close()
        with StreamlitServer(app_env(DEMO_MODEL_DIR, data), Path(tmp) / "streamlit.log") as server, \
                sync_playwright() as playwright:
            browser = launch_chromium(playwright)
            context = browser.new_context(viewport=VIEWPORT, locale="en-US")
            page = context.new_page()
            open_app(page, server.url, STEP_MS)
            set_greedy(page, STEP_MS)
            times: dict[str, dict[str, list[float]]] = {what: {name: [] for name in sizes}
                                                        for what in ("sidebar", "open")}
            presets = ["precise", "creative"]
            for repeat in range(args.repeats + 1):  # the first round warms up and is not counted
                for name in sizes:
                    timed_click(page, f".st-key-conv_{empty} button")
                    opened = timed_click(page, f".st-key-conv_{ids[name]} button")
                    rerun = timed_click(page, f".st-key-preset_{presets[repeat % 2]} button")
                    if repeat:
                        times["open"][name].append(opened)
                        times["sidebar"][name].append(rerun)
                        print(f"round {repeat} {name}: open {opened:.3f} s, sidebar rerun {rerun:.3f} s", flush=True)
            for what in ("send: first text", "send: reply done"):
                times[what] = {name: [] for name in sizes}
            for repeat in range(max(1, args.repeats // 2)):
                for name in sizes:
                    timed_click(page, f".st-key-conv_{ids[name]} button")
                    first, done, caption = timed_send(page)
                    times["send: first text"][name].append(first)
                    times["send: reply done"][name].append(done)
                    print(f"send {repeat + 1} {name}: first text {first:.3f} s, done {done:.3f} s ({caption})",
                          flush=True)
            browser.close()

    print(f"\nmedians, {args.short} vs {args.long} messages (ratio long / short; goal for the sidebar <= 1.5):")
    for what, measured in times.items():
        short, long = (statistics.median(measured[name]) for name in ("short", "long"))
        print(f"  {what:18s} {short:.3f} s vs {long:.3f} s: {long / short:.2f}x")


if __name__ == "__main__":
    main()
