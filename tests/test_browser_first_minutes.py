"""What a newcomer meets first (issue 19), in a real browser on the shipped demo (`--demo`), at the app's
default sampling settings (a newcomer does not touch the sliders):
- the page and a chat turn ask nothing of any host but the app's (the tab icon included);
- the README's question gets its answer, and a question the demo does not know gets its "tiny demo"
  answer in the question's language, never a broken character;
- in Chinese, the uploader's own button and limit are Chinese.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from browser_utils import SHOTS, STEP_MS, VIEWPORT, StreamlitServer, app_env, needs_chromium, open_app, \
    running_chromium, wait_idle
from testkit.checkpoint import DEMO_QA

pytestmark = needs_chromium()

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect

QA = dict(DEMO_QA)
README_QUESTION = "Which mountain is the highest in Shandong Province?"


@pytest.fixture(scope="module")
def browser():
    with running_chromium(STEP_MS) as chromium:
        yield chromium


@pytest.fixture(scope="module")
def demo_app(tmp_path_factory, browser):
    tmp = tmp_path_factory.mktemp("browser_first_minutes")
    env = dict(app_env(tmp / "unused", tmp / "data"), MINICPM_DEMO="1")
    with StreamlitServer(env, tmp / "streamlit.log") as server:
        yield server
        assert "Traceback" not in server.log(), server.log()


@pytest.fixture
def context(browser):
    context = browser.new_context(viewport=VIEWPORT, locale="en-US")
    context.set_default_timeout(STEP_MS)
    yield context
    try:
        for page in context.pages:
            expect(page.get_by_test_id("stException")).to_have_count(0, timeout=1)
    finally:
        context.close()


def ask(page, question: str) -> str:
    """Send a question at the default settings; return the finished reply's text as shown."""
    replies = page.get_by_test_id("stChatMessage")
    before = replies.count()
    box = page.get_by_test_id("stChatInputTextArea")
    box.fill(question)
    box.press("Enter")
    expect(replies).to_have_count(before + 2)
    reply = replies.nth(before + 1)
    expect(reply.get_by_test_id("stCaptionContainer")).to_contain_text("finished")
    wait_idle(page, STEP_MS)
    return reply.get_by_test_id("stMarkdownContainer").first.inner_text()


def shown(answer: str) -> str:
    return answer.replace("`", "")  # the answers' inline code, as rendered


def test_a_page_load_and_a_chat_turn_ask_no_other_host(context, demo_app):
    app_host = urlsplit(demo_app.url).netloc
    elsewhere = []

    def refuse_other_hosts(route):
        if urlsplit(route.request.url).netloc != app_host:
            elsewhere.append(route.request.url)
            route.abort()
        else:
            route.continue_()

    context.route("**/*", refuse_other_hosts)
    context.on("request", lambda request: urlsplit(request.url).netloc in (app_host, "")
               or request.url.startswith("data:") or elsewhere.append(request.url))
    page = context.new_page()
    open_app(page, demo_app.url, STEP_MS * 2)
    assert "Mount Tai" in ask(page, README_QUESTION)
    assert elsewhere == [], f"the page asked other hosts: {elsewhere}"
    icons = page.evaluate("() => [...document.querySelectorAll('link[rel~=icon]')].map(l => l.href)")
    assert icons and all(href.startswith("data:image/svg+xml") for href in icons), "the icon is the app's own"


@pytest.mark.parametrize("question, known", [("长城有多长？", "你会什么？"),
                                             ("Why is the sky blue?", "What do you know?"),
                                             (README_QUESTION, README_QUESTION)])
def test_every_question_gets_a_readable_answer_in_its_language(context, demo_app, question, known):
    page = context.new_page()
    open_app(page, demo_app.url, STEP_MS)
    text = ask(page, question)
    assert text == shown(QA[known]) and "\ufffd" not in text


def test_the_chinese_uploader_shows_its_button_and_limit_in_chinese(context, demo_app):
    page = context.new_page()
    open_app(page, demo_app.url + "?lang=zh", STEP_MS)
    dropzone = page.locator(".st-key-import_file [data-testid=stFileUploaderDropzone]")
    expect(dropzone).to_be_visible()
    texts = """() => {
      const zone = document.querySelector('.st-key-import_file [data-testid=stFileUploaderDropzone]');
      const after = el => getComputedStyle(el, '::after').content;
      const label = zone.querySelector('button [data-testid=stMarkdownContainer]');
      const limit = zone.querySelector('[data-testid=stFileUploaderDropzoneInstructions] > div');
      return {button: after(label), limit: after(limit),
              english: [...zone.querySelectorAll('p, span')].filter(e => e.offsetParent !== null)
                         .map(e => e.innerText).filter(t => /Upload|per file/.test(t))};
    }"""
    # The style arrives with the run that draws the Chinese page: wait for it, then read everything.
    page.wait_for_function(f"() => ({texts})().button !== 'none'", timeout=STEP_MS)
    texts = page.evaluate(texts)
    assert texts == {"button": '"上传"', "limit": '"单个文件不超过 5 MB · JSON"', "english": []}
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.get_by_test_id("stSidebar").screenshot(path=str(SHOTS / "uploader_zh.png"))
