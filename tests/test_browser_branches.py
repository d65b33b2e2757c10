"""Alternatives in a real browser: regenerate twice, move back with ‹, reload, export and import; and
the turn's actions, which stay away while a regenerated reply streams (issue 19).

On the random tiny checkpoint with the default sampling: each regenerated reply is a different random
text (the demo model would give its canned answer every time), and max_length at its minimum keeps
each reply short. Texts are compared as the page shows them and as the store (the same SQLite file,
read beside the app) keeps them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from minicpm_core.params import MIN_MAX_LENGTH
from minicpm_core.store import DB_FILENAME, ConversationStore

from browser_utils import STEP_MS, VIEWPORT, needs_chromium, open_app, running_chromium, set_slider, wait_idle
from test_browser import (LONG_REPLY_SEED, STORY_Q, bubble_texts, bubbles, conversation_id, send, serve, set_seed,
                          stop_mid_reply)

pytestmark = needs_chromium()

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect

QUESTION = "Tell me a story."

# Records whether the turn's actions were ever on the page together with the Stop of a streaming reply.
ACTIONS_WHILE_STREAMING_JS = """() => {
  window.__actionsWhileStreaming = false;
  new MutationObserver(() => {
    if (document.querySelector('.st-key-stop_reply') && document.querySelector('.st-key-turn_actions'))
      window.__actionsWhileStreaming = true;
  }).observe(document.body, {subtree: true, childList: true});
}"""


@pytest.fixture(scope="module")
def browser():
    with running_chromium(STEP_MS) as chromium:
        yield chromium


@pytest.fixture(scope="module")
def random_app(tiny_ckpt, tmp_path_factory, browser):
    tmp = tmp_path_factory.mktemp("browser_branches")
    for server in serve(tiny_ckpt, tmp, browser):
        server.data_dir = tmp / "data"
        yield server


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport=VIEWPORT, locale="en-US", accept_downloads=True)
    context.set_default_timeout(STEP_MS)
    yield context.new_page()
    try:
        for page in context.pages:
            expect(page.get_by_test_id("stException")).to_have_count(0, timeout=1)
    finally:
        context.close()


def last_reply(page):
    return bubbles(page).last


def version_label(page):
    return last_reply(page).locator("[class*=st-key-versions_] [data-testid=stText]")


def older(page):
    return last_reply(page).get_by_role("button", name="‹", exact=True)


def newer(page):
    return last_reply(page).get_by_role("button", name="›", exact=True)


def shown_reply(page) -> str:
    return bubble_texts(page)[-1][1]


def stored(server, conv_id: str):
    store = ConversationStore(server.data_dir / DB_FILENAME)
    try:
        return store.get(conv_id)
    finally:
        store.close()


def regenerate(page, version: str) -> str:
    """Click Regenerate, wait for the new reply to finish (its version label `version`); its text."""
    page.locator(".st-key-regenerate button").click()
    expect(version_label(page)).to_have_text(version)
    expect(last_reply(page).get_by_test_id("stCaptionContainer").first).to_contain_text(re.compile("finished|cut"))
    wait_idle(page, STEP_MS)
    return shown_reply(page)


def test_regenerated_replies_are_kept_as_versions_through_reload_export_and_import(page, random_app):
    open_app(page, random_app.url, STEP_MS)
    set_slider(page, "max_length", str(MIN_MAX_LENGTH * 4), STEP_MS, steps_right=3)
    page.evaluate(ACTIONS_WHILE_STREAMING_JS)
    ask_any(page, QUESTION)
    first = shown_reply(page)
    second = regenerate(page, "2 / 2")
    third = regenerate(page, "3 / 3")
    assert bubble_texts(page)[0] == ("user", QUESTION) and len(bubble_texts(page)) == 2
    assert not page.evaluate("window.__actionsWhileStreaming"), "Regenerate/Edit/Clear showed above a streaming reply"
    actions = page.locator(".st-key-turn_actions").bounding_box()
    assert actions["y"] > last_reply(page).bounding_box()["y"], "the turn's actions sit below the reply"

    conv_id = conversation_id(page)
    conversation = stored(random_app, conv_id)
    assert conversation.version(conversation.messages[1].id) == (3, 3)

    for label, expected in (("2 / 3", second), ("1 / 3", first)):  # back with ‹, twice
        older(page).click()
        expect(version_label(page)).to_have_text(label)
        wait_idle(page, STEP_MS)
        assert shown_reply(page) == expected
    expect(older(page)).to_be_disabled()

    page.reload()  # the chosen version is the store's, not the session's
    wait_idle(page, STEP_MS)
    expect(version_label(page)).to_have_text("1 / 3")
    assert shown_reply(page) == first
    shown = stored(random_app, conv_id)
    hidden = [message_id for message_id in shown.versions[shown.messages[1].id] if message_id != shown.messages[1].id]

    with page.expect_download() as markdown_download:
        page.locator(".st-key-export_markdown button").click()
    markdown = Path(markdown_download.value.path()).read_text(encoding="utf-8")
    lines = str.splitlines  # the download turns a lone \r into a line break
    assert lines(shown.messages[1].content) == lines(markdown)[-len(lines(shown.messages[1].content)):]
    with page.expect_download() as json_download:
        page.locator(".st-key-export_json button").click()
    exported = Path(json_download.value.path()).read_bytes()
    messages = json.loads(exported)["messages"]
    assert len(messages) == 4 and {m["id"] for m in messages} >= set(hidden)
    assert [m["shown"] for m in messages if m["role"] == "assistant"] == [True, False, False]

    page.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(
        files=[{"name": "branches.json", "mimeType": "application/json", "buffer": exported}])
    expect(page).to_have_url(re.compile(r"[?&]c=(?!" + re.escape(conv_id) + r")"))
    expect(version_label(page)).to_have_text("1 / 3")
    wait_idle(page, STEP_MS)
    assert shown_reply(page) == first
    newer(page).click()
    expect(version_label(page)).to_have_text("2 / 3")
    wait_idle(page, STEP_MS)
    assert shown_reply(page) == second
    newer(page).click()
    expect(version_label(page)).to_have_text("3 / 3")
    wait_idle(page, STEP_MS)
    assert shown_reply(page) == third


def ask_any(page, question: str) -> None:
    """Send a question and wait for its reply, however the random model ends it."""
    before = bubbles(page).count()
    page.get_by_test_id("stChatInputTextArea").fill(question)
    page.get_by_test_id("stChatInputTextArea").press("Enter")
    expect(bubbles(page)).to_have_count(before + 2)
    expect(bubbles(page).nth(before + 1).get_by_test_id("stCaptionContainer")).to_contain_text(
        re.compile("finished|cut"))
    wait_idle(page, STEP_MS)


def test_stop_keeps_a_regenerated_reply_as_a_stopped_version_beside_the_first(page, random_app):
    open_app(page, random_app.url, STEP_MS)
    set_seed(page, LONG_REPLY_SEED)  # the reply runs on past 300 tokens: Stop lands mid-reply
    send(page, STORY_Q)
    first = stop_mid_reply(page, 1)
    page.locator(".st-key-regenerate button").click()
    stop_mid_reply(page, 1)
    expect(version_label(page)).to_have_text("2 / 2")
    expect(last_reply(page).get_by_test_id("stCaptionContainer").first).to_contain_text("stopped")
    older(page).click()
    expect(version_label(page)).to_have_text("1 / 2")
    wait_idle(page, STEP_MS)
    expect(last_reply(page).get_by_test_id("stCaptionContainer").first).to_contain_text("stopped")
    assert shown_reply(page) == first
