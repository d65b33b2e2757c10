"""The app in a real browser: what only a browser shows, one behaviour per test.

Headless Debian Chromium (Playwright, sync API) drives `streamlit run chat_app.py` subprocesses
(tests/browser_utils.py):
- on the demo checkpoint, whose canned answers are exact under greedy decoding (temperature 0, set
  with the sidebar slider as a user would): streaming, page switches, reload, export, compare;
- on the random tiny checkpoint, for Stop: the demo model finishes every reply in well under a
  second, the random one keeps going to max_length, so there is time to press Stop mid-reply.

Every test runs in a fresh browser context (a new Streamlit session) and ends by checking that no
page shows an exception. Screenshots of the main states are written to artifacts/screenshots/.
Waits are on conditions (DOM state, the app's script state), never on the clock.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from testkit.checkpoint import DEMO_QA
from minicpm_core.params import MODEL_CONTEXT

from browser_utils import (REPLY_RECORDER_JS, SHOTS, STEP_MS, VIEWPORT, StreamlitServer, app_env,
                           longest_plain_demo_qa, needs_chromium, open_app, set_greedy,
                           set_slider, slider, slider_value, wait_idle)

pytestmark = needs_chromium()

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect

ANSWERS = dict(DEMO_QA)
STORY_Q, STORY_A = longest_plain_demo_qa()
SUM_Q = "What is 2+3?"
LONG_REPLY_SEED = 0
CAPITAL_Q = "What is the capital of France?"


# --- fixtures ---------------------------------------------------------------------------------------

def serve(model_dir: Path, tmp: Path, browser):
    """A server on `model_dir`, warmed up by one page view (which loads the model) before any test."""
    server = StreamlitServer(app_env(model_dir, tmp / "data"), tmp / "streamlit.log")
    with server:
        context = browser.new_context(viewport=VIEWPORT, locale="en-US")
        try:
            open_app(context.new_page(), server.url, STEP_MS * 2)
        finally:
            context.close()
        yield server
        assert "Traceback" not in server.log(), server.log()


@pytest.fixture(scope="module")
def demo_app(demo_ckpt, tmp_path_factory, browser):
    yield from serve(demo_ckpt, tmp_path_factory.mktemp("browser_demo"), browser)


@pytest.fixture(scope="module")
def random_app(tiny_ckpt, tmp_path_factory, browser):
    yield from serve(tiny_ckpt, tmp_path_factory.mktemp("browser_random"), browser)


# --- what a user does ---------------------------------------------------------------------------------

# Resolves once nothing is loading (no skeleton placeholder) and the layout has held still for ten
# animation frames: the main column's box and every expander's height (they animate open and shut).
SETTLED_JS = """() => new Promise(resolve => {
  let last = null, still = 0;
  const tick = () => {
    const main = document.querySelector('[data-testid=stMainBlockContainer]').getBoundingClientRect();
    const expanders = [...document.querySelectorAll('[data-testid=stExpander]')]
      .map(e => e.getBoundingClientRect().height);
    const key = [main.x, main.width, ...expanders].join();
    const loading = document.querySelector('[data-testid=stSkeleton]') !== null;
    still = key === last && !loading ? still + 1 : 0;
    last = key;
    if (still >= 10) resolve(true); else requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
})"""


def shot(page, name: str, element=None) -> None:
    """Save a screenshot of the page (or one element of it) to artifacts/screenshots/<name>.png,
    once the page has settled."""
    page.wait_for_function(SETTLED_JS)
    SHOTS.mkdir(parents=True, exist_ok=True)
    (element or page).screenshot(path=str(SHOTS / f"{name}.png"))


def greedy(page) -> None:
    set_greedy(page, STEP_MS)


def set_seed(page, seed: int) -> None:
    box = page.locator(".st-key-seed input")
    box.fill(str(seed))
    box.press("Enter")
    expect(box).to_have_value(str(seed))
    wait_idle(page, STEP_MS)


def bubbles(page):
    return page.get_by_test_id("stChatMessage")


# Each bubble's role and the text of its first Markdown element (not a caption, not a button label).
BUBBLES_JS = """() => [...document.querySelectorAll('[data-testid=stChatMessage]')].map(b => [
  b.querySelector('[data-testid=stChatMessageAvatarUser]') ? 'user' : 'assistant',
  (b.querySelector('[data-testid=stMarkdown] [data-testid=stMarkdownContainer]') || {}).textContent || ''])"""


def bubble_texts(page) -> list[tuple[str, str]]:
    """[(role, text)] of the chat bubbles, text as the reader sees it (Markdown rendered)."""
    return [tuple(pair) for pair in page.evaluate(BUBBLES_JS)]


def send(page, question: str) -> None:
    box = page.get_by_test_id("stChatInputTextArea")
    box.fill(question)
    box.press("Enter")


def ask(page, question: str) -> None:
    """Send a question and wait for its finished reply, redrawn from the store with its numbers."""
    before = bubbles(page).count()
    send(page, question)
    expect(bubbles(page)).to_have_count(before + 2)
    expect(bubbles(page).nth(before + 1).get_by_test_id("stCaptionContainer")).to_contain_text("finished")
    wait_idle(page, STEP_MS)


def conversation_id(page) -> str:
    match = re.search(r"[?&]c=([^&#]+)", page.url)
    assert match, f"no conversation id in {page.url}"
    return match.group(1)


def go_to(page, nav_label: str, title: str) -> None:
    """Click a page in the sidebar navigation and wait until it is drawn."""
    page.get_by_test_id("stSidebarNavLink").filter(has_text=nav_label).click()
    expect(page.get_by_test_id("stMainBlockContainer").locator("h1")).to_have_text(title)
    wait_idle(page, STEP_MS)


# --- chat ---------------------------------------------------------------------------------------------

def test_greedy_reply_is_the_canned_answer_and_only_ever_grows(page, demo_app, demo_ckpt):
    # How many partial states of this short reply show depends on the machine's load, not on the app:
    # Streamlit composes the redraws of one element queued between two flushes of its queue, and the
    # browser draws only what arrived by its next paint (CI once saw two). The stop tests below watch a
    # reply that runs on for seconds stream in.
    open_app(page, demo_app.url, STEP_MS)
    shot(page, "01_chat_empty")
    greedy(page)
    page.evaluate(REPLY_RECORDER_JS)

    ask(page, STORY_Q)

    assert bubble_texts(page) == [("user", STORY_Q), ("assistant", STORY_A)]
    shown = [s["text"] for s in page.evaluate("window.__replyStates") if s["text"]]
    assert shown[-1] == STORY_A
    assert all(STORY_A.startswith(text) for text in shown), f"the bubble's text only ever grew: {shown}"
    caption = bubbles(page).nth(1).get_by_test_id("stCaptionContainer")
    name = re.escape(demo_ckpt.name)  # the model's name first: here its checkpoint folder's
    expect(caption).to_have_text(re.compile(rf"^{name} · \d+ tokens · [\d.]+ tokens/s · finished$"))
    page.get_by_test_id("stSidebarContent").evaluate("e => e.scrollTo(0, 0)")  # focusing the slider scrolled it
    shot(page, "03_chat_reply")
    shot(page, "07_sidebar", page.get_by_test_id("stSidebar"))


def test_slider_moved_with_the_keyboard_keeps_its_value_across_pages(page, demo_app):
    open_app(page, demo_app.url, STEP_MS)
    expect(slider_value(page, "temperature")).to_have_text("0.50")
    slider(page, "temperature").focus()
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    expect(slider_value(page, "temperature")).to_have_text("0.60")
    wait_idle(page, STEP_MS)

    go_to(page, "Compare", "Compare settings")
    expect(slider_value(page, "temperature")).to_have_text("0.60")  # the sidebar is shared
    expect(slider_value(page, "b_temperature")).to_have_text("0.50")  # B has its own
    go_to(page, "Chat", "MiniCPM-2B Chat")
    expect(slider_value(page, "temperature")).to_have_text("0.60")


def test_switching_pages_and_back_keeps_the_conversation(page, demo_app):
    open_app(page, demo_app.url, STEP_MS)
    greedy(page)
    ask(page, SUM_Q)
    conv = conversation_id(page)

    go_to(page, "Model", "Model")
    main = page.get_by_test_id("stMainBlockContainer")
    expect(main.get_by_test_id("stTable")).to_contain_text("float32")
    expect(main.get_by_test_id("stDataFrame").locator("canvas").first).to_be_attached()
    shot(page, "06_model")

    go_to(page, "Chat", SUM_Q)  # the page is titled after the conversation's first question
    assert bubble_texts(page) == [("user", SUM_Q), ("assistant", ANSWERS[SUM_Q])]
    assert conversation_id(page) == conv


def test_reload_and_a_new_tab_find_the_conversation_from_the_url(page, context, demo_app):
    open_app(page, demo_app.url, STEP_MS)
    greedy(page)
    ask(page, CAPITAL_Q)
    url = page.url
    expected = [("user", CAPITAL_Q), ("assistant", ANSWERS[CAPITAL_Q])]

    page.reload()
    expect(bubbles(page)).to_have_count(2)
    wait_idle(page, STEP_MS)
    assert bubble_texts(page) == expected

    other = context.browser.new_context(viewport=VIEWPORT, locale="en-US").new_page()  # no shared session
    try:
        open_app(other, url, STEP_MS)
        expect(bubbles(other)).to_have_count(2)
        assert bubble_texts(other) == expected
    finally:
        other.context.close()


def test_export_downloads_the_question_and_answer(page, demo_app):
    open_app(page, demo_app.url, STEP_MS)
    greedy(page)
    ask(page, SUM_Q)
    answer = ANSWERS[SUM_Q]

    with page.expect_download() as markdown_download:
        page.locator(".st-key-export_markdown button").click()
    markdown = Path(markdown_download.value.path()).read_text(encoding="utf-8")
    assert markdown_download.value.suggested_filename.endswith(".md")
    assert SUM_Q in markdown and answer in markdown

    with page.expect_download() as json_download:
        page.locator(".st-key-export_json button").click()
    exported = json.loads(Path(json_download.value.path()).read_text(encoding="utf-8"))
    assert [(m["role"], m["content"]) for m in exported["messages"]] == [("user", SUM_Q), ("assistant", answer)]


def reply_text(bubble):
    """The Markdown of an assistant bubble (not its caption, not the Stop button's label)."""
    return bubble.get_by_test_id("stMarkdown").get_by_test_id("stMarkdownContainer")


def stop_button(page):
    # The chat input's Stop (submit_mode="stop"), or a Stop button of the app's own (key "stop_reply").
    return page.get_by_test_id("stChatInputStopButton").or_(page.locator(".st-key-stop_reply button"))


def stop_mid_reply(page, index: int, screenshot: str | None = None) -> str:
    """Wait until bubble number `index` streams its reply, press Stop, and wait until the run that Stop
    started has drawn that reply as the store keeps it (marked stopped) and has ended. Returns its text."""
    bubble = bubbles(page).nth(index)
    expect(reply_text(bubble)).to_have_text(re.compile(r"\S{10}"))  # random text, on to max_length
    stop = stop_button(page)
    if screenshot:
        shot(page, screenshot)
    expect(stop).to_be_visible()  # still streaming (also after the screenshot)
    stop.click()
    # Only the run Stop started can draw the caption. Waiting for it, not for the Stop button to go,
    # matters: the button goes as soon as that run draws over it, before the reply is redrawn.
    expect(bubble.get_by_test_id("stCaptionContainer")).to_contain_text("stopped")
    wait_idle(page, STEP_MS)  # a question asked again would be answered in this same run
    expect(stop).to_have_count(0)
    return reply_text(bubble).text_content()


def test_stop_keeps_the_partial_reply_marked_stopped_and_frees_the_model(page, random_app):
    open_app(page, random_app.url, STEP_MS)
    # Sampling from a random model can end a reply at any token (EOS or a marker), even while Stop is
    # being clicked. With this seed (and the default sampling settings) the reply to STORY_Q and to
    # each example question runs past 300 tokens, so Stop always lands mid-reply.
    set_seed(page, LONG_REPLY_SEED)
    page.evaluate(REPLY_RECORDER_JS)
    send(page, STORY_Q)
    # Streaming, seen in the DOM: the bubble's text changed three times while the reply was still running.
    page.wait_for_function("() => new Set(window.__replyStates.map(s => s.text).filter(t => t.trim())).size >= 3")
    partial = stop_mid_reply(page, 1, screenshot="02_chat_streaming")
    assert partial.strip(), "the text streamed so far stays on screen"
    shot(page, "04_chat_stopped")

    page.reload()  # what the store kept
    caption = bubbles(page).nth(1).get_by_test_id("stCaptionContainer")
    expect(caption).to_contain_text("stopped")
    wait_idle(page, STEP_MS)
    role, kept = bubble_texts(page)[1]
    assert role == "assistant" and kept == partial
    tokens = int(re.search(r"(\d+) tokens", caption.text_content()).group(1))
    assert 0 < tokens < MODEL_CONTEXT // 2, "stopped long before max_length"
    shot(page, "04b_chat_stopped_after_reload")

    go_to(page, "Model", "Model")
    expect(page.get_by_test_id("stMetricValue").first).to_have_text("0")  # nothing generates any more


def click_example(page, index: int) -> str:
    """Click the empty chat's example question number `index`; returns the question."""
    button = page.locator(f".st-key-example_{index} button")
    question = button.text_content()
    button.click()
    return question


def test_stop_after_an_example_question_keeps_that_one_question_and_its_stopped_reply(page, random_app):
    open_app(page, random_app.url, STEP_MS)
    set_seed(page, LONG_REPLY_SEED)
    question = click_example(page, 0)
    partial = stop_mid_reply(page, 1)
    assert bubble_texts(page) == [("user", question), ("assistant", partial)]  # not asked a second time
    assert partial.strip()

    page.reload()
    expect(bubbles(page)).to_have_count(2)
    wait_idle(page, STEP_MS)
    assert bubble_texts(page) == [("user", question), ("assistant", partial)], "the store has the same"


def test_stop_takes_effect_every_time(page, random_app):
    open_app(page, random_app.url, STEP_MS)
    set_seed(page, LONG_REPLY_SEED)
    for index in range(3):
        if index:
            page.locator(".st-key-new_conversation button").click()
            expect(bubbles(page)).to_have_count(0)
            wait_idle(page, STEP_MS)
        question = click_example(page, index)
        partial = stop_mid_reply(page, 1)
        assert bubble_texts(page) == [("user", question), ("assistant", partial)], f"stop number {index + 1}"
    go_to(page, "Model", "Model")
    expect(page.get_by_test_id("stMetricValue").first).to_have_text("0")


# --- language -----------------------------------------------------------------------------------------

def test_a_chosen_language_survives_a_reload_and_a_page_switch(page, demo_app):
    open_app(page, demo_app.url, STEP_MS)  # the browser says en-US: Auto is English
    page.locator(".st-key-language button").filter(has_text="中文").click()
    title = page.get_by_test_id("stMainBlockContainer").locator("h1")
    expect(title).to_have_text("MiniCPM-2B 聊天")
    wait_idle(page, STEP_MS)

    page.reload()
    expect(title).to_have_text("MiniCPM-2B 聊天")
    wait_idle(page, STEP_MS)
    go_to(page, "模型", "模型")
    page.reload()
    expect(title).to_have_text("模型")
    wait_idle(page, STEP_MS)
    page.locator(".st-key-language button").filter(has_text="自动").click()
    expect(title).to_have_text("Model")
    wait_idle(page, STEP_MS)
    assert "lang=" not in page.url


# --- compare ------------------------------------------------------------------------------------------

def test_compare_answers_one_question_under_both_settings(page, demo_app):
    open_app(page, demo_app.url, STEP_MS)
    greedy(page)  # A: the sidebar
    go_to(page, "Compare", "Compare settings")
    set_slider(page, "b_temperature", "0.00", STEP_MS)
    prompt = page.locator(".st-key-compare_prompt textarea")
    prompt.fill(CAPITAL_Q)
    prompt.press("Control+Enter")  # commits the text area's value
    run = page.locator(".st-key-compare_run button")
    expect(run).to_be_enabled()
    wait_idle(page, STEP_MS)

    run.click()
    for side in ("a", "b"):
        expect(page.locator(f".st-key-compare_reply_{side}")).to_have_text(ANSWERS[CAPITAL_Q])
    captions = page.get_by_test_id("stMainBlockContainer").get_by_test_id("stCaptionContainer")
    expect(captions.filter(has_text="finished")).to_have_count(2)
    wait_idle(page, STEP_MS)
    settings_b = page.get_by_test_id("stMainBlockContainer").get_by_test_id("stExpander").filter(has_text="Settings B")
    settings_b.locator("summary").first.click()  # fold B's sliders (their Advanced one inside): the replies in view
    shot(page, "05_compare")
