"""Switching models in a real browser (issue 11.5): the app starts on the MiniCPM-2B demo, the Model page
switches the server to the MiniCPM5 demo (two tiny checkpoints of different families), and the next
reply comes from it: it thinks first, and its caption names it. The Model page's screenshot is
docs/screenshots/models.png's source (written to artifacts/screenshots/).
"""

from __future__ import annotations


import pytest

from minicpm_core.store import DB_FILENAME, ConversationStore
from testkit.minicpm5 import demo_qa

from browser_utils import (SHOTS, STEP_MS, VIEWPORT, StreamlitServer, app_env, needs_chromium, open_app,
                           running_chromium, set_greedy, wait_idle)

pytestmark = needs_chromium()

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect

QUESTION = "hello"
REASONING, ANSWER = {q: (r, a) for q, r, a in demo_qa()}[QUESTION]


@pytest.fixture(scope="module")
def demo_app(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("browser_switch")
    env = dict(app_env(tmp / "unused", tmp / "data"), MINICPM_DEMO="1", MINICPM_CACHE_DIR=str(tmp / "models"))
    with running_chromium(STEP_MS) as chromium, StreamlitServer(env, tmp / "streamlit.log") as server:
        yield chromium, server, tmp / "data"
        assert "Traceback" not in server.log(), server.log()


def last_reply_meta(data_dir) -> dict:
    """The newest conversation's last message's meta, as the store kept it (for a failure's message)."""
    store = ConversationStore(data_dir / DB_FILENAME)
    try:
        newest = store.list()[0]
        return store.get(newest.id).messages[-1].meta
    finally:
        store.close()


def test_use_this_model_switches_and_the_next_reply_comes_from_the_new_model(demo_app):
    chromium, server, data_dir = demo_app
    context = chromium.new_context(viewport=VIEWPORT, locale="en-US")
    try:
        page = context.new_page()
        open_app(page, server.url + "model", STEP_MS * 2)
        row = page.locator(".st-key-model_minicpm5_demo")
        expect(page.locator(".st-key-model_minicpm_2b_demo")).to_contain_text("Loaded")
        expect(row).to_contain_text("thinks before answering")
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.locator(".st-key-model_openbmb_minicpm5_1b").scroll_into_view_if_needed()
        page.screenshot(path=str(SHOTS / "models.png"))

        row.get_by_role("button", name="Use this model").click()
        notice = page.locator(".st-key-switch_notice")
        expect(notice).to_contain_text("now runs minicpm5-demo")  # after "switching from minicpm-2b-demo …"
        expect(notice).to_contain_text("switched from minicpm-2b-demo")
        expect(row).to_contain_text("Loaded")
        wait_idle(page, STEP_MS)  # mid-run, Streamlit 1.65 can hold a stale copy of a row beside the new one
        expect(page.locator(".st-key-model_minicpm_2b_demo")).not_to_contain_text("Loaded")

        page.get_by_test_id("stSidebarNav").get_by_role("link", name="Chat").click()
        wait_idle(page, STEP_MS)
        set_greedy(page, STEP_MS)
        page.get_by_test_id("stChatInputTextArea").fill(QUESTION)
        page.get_by_test_id("stChatInputTextArea").press("Enter")
        reply = page.get_by_test_id("stChatMessage").nth(1)
        caption = reply.get_by_test_id("stCaptionContainer")
        expect(caption).to_contain_text("finished")
        expect(caption).to_contain_text("minicpm5-demo")
        meta = last_reply_meta(data_dir)
        switch = page.locator(".st-key-enable_thinking input")
        assert meta.get("reasoning") == REASONING and meta["params"]["temperature"] == 0.0, (
            meta, switch.is_checked(), page.get_by_test_id("stSidebarContent").inner_text())
        expect(reply.locator("[data-testid=stExpander] summary")).to_contain_text("Thought for")
        expect(reply).to_contain_text(ANSWER)
        assert not page.get_by_test_id("stException").count()
    finally:
        context.close()
