"""Search and math in a real browser: what only a browser shows, one behaviour per test.

Headless Debian Chromium (Playwright, sync API) drives a `streamlit run chat_app.py` on the demo
checkpoint (tests/browser_utils.py). The conversations are written to the server's store before it
starts, as an earlier session would have left them. Every test runs in a fresh browser context and
ends by checking that no page shows an exception. Waits are on conditions, never on the clock.
"""

from __future__ import annotations

import re
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from minicpm_core.store import DB_FILENAME, ConversationStore

from browser_utils import (SHOTS, STEP_MS, VIEWPORT, StreamlitServer, app_env, needs_chromium, open_app,
                           set_greedy, wait_idle)

pytestmark = needs_chromium()

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect

TIMEZONE = "Asia/Shanghai"  # the browser's; the results' dates are in it
FILLER = 60  # messages around the one searched for: it is far from where the page opens
MATH_REPLY = ("Inline dollars $e^{i\\pi}+1=0$ and parentheses \\(a^2+b^2=c^2\\).\n\n"
              "$$\n\\int_0^1 x\\,dx = \\frac{1}{2}\n$$\n\n"
              "\\[\n\\sum_{k=1}^{n} k = \\frac{n(n+1)}{2}\n\\]\n\n"
              "It costs $5 and $10. Code stays: `$x$` and\n\n```\n\\(y\\)\n```\n\n"
              "Hostile: $\\href{javascript:alert(1)}{click}$ \\(\\url{javascript:alert(2)}\\) "
              "$\\includegraphics{http://127.0.0.1:9/x.png}$ $[x](javascript:alert(3))$ "
              "$`$ [y](javascript:alert(4)) `")


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """The conversations the app finds in its store: {name: (conversation id, message id, its date)}."""
    data = tmp_path_factory.mktemp("browser_search") / "data"
    store = ConversationStore(data / DB_FILENAME)
    ids = {}
    physics = store.create("Physics notes")
    for i in range(FILLER):
        store.append(physics.id, "user" if i % 2 == 0 else "assistant", f"Filler message number {i}.")
        if i == 10:  # older than the newest messages the chat page draws at first (ui.state.RECENT_MESSAGES)
            found = store.append(physics.id, "assistant", "量子纠缠是两个粒子之间的一种关联，*不是*信号。")
            ids["zh"] = (physics.id, found.id, found.created_at)
    trip = store.create("Trip planning")
    store.append(trip.id, "user", "Where should I go sailing?")
    found = store.append(trip.id, "assistant", "The Aegean Sea is a classic place for sailing in summer.")
    ids["en"] = (trip.id, found.id, found.created_at)
    math = store.create("Math")
    store.append(math.id, "user", "Show me some math")
    found = store.append(math.id, "assistant", MATH_REPLY)
    ids["math"] = (math.id, found.id, found.created_at)
    ids["_data"] = data
    store.close()
    return ids


@pytest.fixture(scope="module")
def server(demo_ckpt, stored, tmp_path_factory, browser):
    tmp = tmp_path_factory.mktemp("browser_search_server")
    with StreamlitServer(app_env(demo_ckpt, stored["_data"]), tmp / "streamlit.log") as app:
        yield app
        assert "Traceback" not in app.log(), app.log()


def new_page(browser, server, locale: str):
    context = browser.new_context(viewport=VIEWPORT, locale=locale, timezone_id=TIMEZONE)
    context.set_default_timeout(STEP_MS)
    page = context.new_page()
    open_app(page, server.url, STEP_MS * 2)
    return page


@pytest.fixture
def pages(browser, server):
    opened = []

    def open_in(locale: str):
        opened.append(new_page(browser, server, locale))
        return opened[-1]

    yield open_in
    try:
        for page in opened:
            expect(page.get_by_test_id("stException")).to_have_count(0, timeout=1)
    finally:
        for page in opened:
            page.context.close()


def search(page, query: str) -> None:
    box = page.locator(".st-key-search_query input")
    box.fill(query)
    box.press("Enter")
    wait_idle(page, STEP_MS)


def local_date(iso: str) -> str:
    return datetime.fromisoformat(iso).astimezone(ZoneInfo(TIMEZONE)).strftime("%Y-%m-%d %H:%M")


def hit(page, message_id: str):
    return page.locator(f".st-key-search_hit_{message_id}")


# The found message lies wholly inside the window (Playwright's to_be_in_viewport reads 0 for a chat
# message inside Streamlit's scroll-to-bottom container, even where its box is on screen).
IN_VIEW_JS = """() => {
  const box = document.querySelector('[data-search-target=shown]').getBoundingClientRect();
  return box.height > 0 && box.top >= 0 && box.bottom <= window.innerHeight;
}"""


def open_hit_and_check_scrolled(page, conv_id: str, message_id: str, title: str, text: str) -> None:
    hit(page, message_id).get_by_role("button").click()
    expect(page.get_by_test_id("stMainBlockContainer").locator("h1")).to_have_text(title)
    assert re.search(rf"[?&]c={re.escape(conv_id)}(&|$)", page.url)
    # marked "shown" once the page has stopped moving it (ui/search.py: SCROLL_FOR_MS)
    target = page.locator("[data-testid=stChatMessage][data-search-target=shown]")
    expect(target).to_have_count(1)
    expect(target).to_contain_text(text)
    page.wait_for_function(IN_VIEW_JS, timeout=STEP_MS)


@pytest.mark.parametrize("locale, name, query, title, match", [
    ("zh-CN", "zh", "粒子之间", "Physics notes", "粒子之间"),
    ("en-US", "en", "SAILING summer", "Trip planning", "sailing"),  # every word, in any order
])
def test_a_search_shows_title_snippet_and_date_and_opens_the_conversation_at_that_message(
        pages, stored, locale, name, query, title, match):
    page = pages(locale)
    conv_id, message_id, created = stored[name]
    search(page, query)
    result = hit(page, message_id)
    expect(result.get_by_role("button")).to_have_text(title)
    caption = result.get_by_test_id("stCaptionContainer")
    expect(caption.locator("strong")).to_have_text(match)  # the match, in bold
    expect(caption).to_contain_text(local_date(created))
    if name == "zh":  # the message's own Markdown is shown as typed, not drawn
        expect(caption).to_contain_text("*不是*")
    expect(page.locator("[data-testid=stSidebar] [class*=st-key-search_hit_]")).to_have_count(1)
    open_hit_and_check_scrolled(page, conv_id, message_id, title, match)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"search_{name}.png"))


def test_a_one_character_chinese_search_finds_the_message(pages, stored):
    page = pages("zh-CN")
    search(page, "粒")
    expect(hit(page, stored["zh"][1]).get_by_role("button")).to_have_text("Physics notes")


def test_the_conversation_list_is_grouped_by_date(pages):
    page = pages("en-US")
    listing = page.locator(".st-key-conversation_list")
    expect(listing.get_by_test_id("stCaptionContainer").filter(has_text="Today")).to_have_count(1)
    expect(listing.get_by_role("button").filter(has_text="Trip planning")).to_have_count(1)


def test_math_renders_in_all_four_delimiters_and_stays_safe(pages, server, stored):
    page = pages("en-US")
    conv_id = stored["math"][0]
    page.goto(f"{server.url}?c={conv_id}")
    wait_idle(page, STEP_MS)
    reply = page.get_by_test_id("stChatMessage").nth(1)
    expect(reply.locator(".katex-display")).to_have_count(2)  # $$…$$ and \[…\]
    # inline: $…$, \(…\), and the three hostile formulas (drawn as plain commands)
    expect(reply.locator(".katex")).to_have_count(2 + 2 + 4)
    content = reply.get_by_test_id("stChatMessageContent")
    expect(content).to_contain_text("It costs $5 and $10.")
    expect(content.locator("code").filter(has_text="$x$")).to_have_count(1)
    expect(content.locator("pre").filter(has_text="\\(y\\)")).to_have_count(1)
    expect(content.locator("[data-testid=stBaseButton-elementToolbar]")).to_have_count(1)  # copy the code
    hrefs = content.locator("a").evaluate_all("links => links.map(a => a.getAttribute('href') || '')")
    assert not [href for href in hrefs if not href.startswith(("http:", "https:", "mailto:"))], hrefs
    expect(content.locator("img")).to_have_count(0)
    SHOTS.mkdir(parents=True, exist_ok=True)
    reply.screenshot(path=str(SHOTS / "math.png"))


# Records, for each DOM change while the reply streams, whether its bubble shows a KaTeX error.
MATH_RECORDER_JS = """() => {
  const states = [];
  window.__mathStates = states;
  new MutationObserver(() => {
    const bubbles = document.querySelectorAll('[data-testid=stChatMessage]');
    const last = bubbles[bubbles.length - 1];
    if (!last || !last.querySelector('[data-testid=stChatMessageAvatarAssistant]')) return;
    states.push({katex: last.querySelectorAll('.katex').length, errors: last.querySelectorAll('.katex-error').length,
                 text: last.textContent});
  }).observe(document.body, {subtree: true, childList: true, characterData: true});
}"""


def test_a_streamed_math_reply_renders_and_never_shows_a_broken_formula(pages):
    page = pages("en-US")
    set_greedy(page, STEP_MS)
    page.evaluate(MATH_RECORDER_JS)
    box = page.get_by_test_id("stChatInputTextArea")
    box.fill("What is the Pythagorean theorem?")
    box.press("Enter")
    reply = page.get_by_test_id("stChatMessage").nth(1)
    expect(reply.locator(".katex-display")).to_have_count(1)  # $$a^2 + b^2 = c^2$$, alone on its line
    expect(reply.locator(".katex")).to_have_count(3 + 1)  # $a$, $b$, $c$ and the display
    wait_idle(page, STEP_MS)
    states = page.evaluate("() => window.__mathStates")
    assert states and not [s for s in states if s["errors"]], [s for s in states if s["errors"]][:3]
