"""The thinking reply's collapsible block in a real browser (MiniCPM5 demo, `--demo-family minicpm5`):
open with the reasoning while the model thinks, collapsed once the answer begins, and there again,
collapsed, after a reload. Every drawn state is checked; which intermediate ones the browser draws
depends on load (the demo's reply takes well under a second). Driven like tests/test_browser.py (tests/browser_utils.py); the screenshot
of the finished reply is docs/screenshots/thinking.png's source (written to artifacts/screenshots/).
"""

from __future__ import annotations


import pytest

from testkit.minicpm5 import demo_qa

from browser_utils import (SHOTS, STEP_MS, VIEWPORT, StreamlitServer, app_env, needs_chromium, open_app,
                           running_chromium, set_greedy, wait_animations_done, wait_idle)

pytestmark = needs_chromium()

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect

QUESTION = "hello"
REASONING, ANSWER = {q: (r, a) for q, r, a in demo_qa()}[QUESTION]

# Installed before the question is sent: every distinct state of the newest assistant bubble while it
# streams (its Stop button is there) as [block open?, block text, answer text], as the DOM changes.
BLOCK_RECORDER_JS = """() => {
  const states = [];
  window.__blockStates = states;
  const record = () => {
    const bubbles = document.querySelectorAll('[data-testid=stChatMessage]');
    const last = bubbles[bubbles.length - 1];
    if (!last || !last.querySelector('[data-testid=stChatMessageAvatarAssistant]')) return;
    if (!last.querySelector('.st-key-stop_reply')) return;  // streaming only, not the redraw from the store
    const block = last.querySelector('[data-testid=stExpander] details');
    const body = block ? block.querySelector('[data-testid=stExpanderDetails]') : null;
    const answers = [...last.querySelectorAll('[data-testid=stMarkdownContainer]')]
      .filter(m => !(block && block.contains(m)) && !m.closest('[data-testid=stCaptionContainer]') && !m.closest('button'));
    const state = [block ? block.open : null, body ? body.textContent : '',
                   answers.map(m => m.textContent).join('')];
    const key = JSON.stringify(state);
    if (!states.length || states[states.length - 1].key !== key) states.push({key, state});
  };
  new MutationObserver(record).observe(document.body, {subtree: true, childList: true, characterData: true,
                                                       attributes: true});
}"""


@pytest.fixture(scope="module")
def thinking_app(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("browser_thinking")
    env = dict(app_env(tmp / "unused", tmp / "data"), MINICPM_DEMO="1", MINICPM_DEMO_FAMILY="minicpm5")
    with running_chromium(STEP_MS) as chromium, StreamlitServer(env, tmp / "streamlit.log") as server:
        yield chromium, server
        assert "Traceback" not in server.log(), server.log()


def test_the_reasoning_streams_open_collapses_at_the_answer_and_stays_after_reload(thinking_app):
    chromium, server = thinking_app
    context = chromium.new_context(viewport=VIEWPORT, locale="en-US")
    try:
        page = context.new_page()
        open_app(page, server.url, STEP_MS * 2)
        set_greedy(page, STEP_MS)
        page.evaluate(BLOCK_RECORDER_JS)
        page.get_by_test_id("stChatInputTextArea").fill(QUESTION)
        page.get_by_test_id("stChatInputTextArea").press("Enter")
        reply = page.get_by_test_id("stChatMessage").nth(1)
        expect(reply.get_by_test_id("stCaptionContainer")).to_contain_text("finished")
        wait_idle(page, STEP_MS)

        states = [entry["state"] for entry in page.evaluate("() => window.__blockStates")]
        # The demo replies in well under a second, so which of the streamed states the browser draws
        # depends on the machine's load: assert what holds for every state it draws. While the
        # reasoning is still growing, the block is open; the finished reply's block is closed (below).
        thinking = [s for s in states if s[0] is not None and s[1] and len(s[1]) < len(REASONING)]
        assert all(s[0] is True and not s[2] for s in thinking), states
        assert all(REASONING.startswith(s[1]) for s in thinking), states  # only reasoning in the block
        block = reply.locator("[data-testid=stExpander] details")
        expect(block).not_to_have_attribute("open", "")
        expect(reply.locator("[data-testid=stExpander] summary")).to_contain_text("Thought for")
        SHOTS.mkdir(parents=True, exist_ok=True)
        reply.locator("[data-testid=stExpander] summary").click()  # opened by hand for the picture
        expect(block).to_have_attribute("open", "")
        expect(block.get_by_test_id("stExpanderDetails")).to_contain_text(REASONING)
        wait_animations_done(page)
        page.screenshot(path=str(SHOTS / "thinking.png"))  # the block fully open, not mid-animation

        page.reload()
        wait_idle(page, STEP_MS)
        reply = page.get_by_test_id("stChatMessage").nth(1)
        block = reply.locator("[data-testid=stExpander] details")
        expect(block).to_have_count(1)
        expect(block).not_to_have_attribute("open", "")
        expect(reply.locator("[data-testid=stExpander] summary")).to_contain_text("Thought for")
        expect(reply).to_contain_text(ANSWER)
        assert not page.get_by_test_id("stException").count()
    finally:
        context.close()
