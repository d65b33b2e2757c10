"""Hostile content in a real browser: what a crafted reply, question or title could make a viewer's
browser do (fetch a remote image, run a script, follow a `javascript:`/`data:` link), the
password's signed login cookie, and the access token the app prints when it has no password.

The conversation is written into the app's store before the page opens, as an import or an earlier
reply would have left it. Every request the page makes is seen through Playwright's routing, and
anything not addressed to the app itself is recorded and refused.
"""

from __future__ import annotations


import re

import pytest

from minicpm_core.store import ConversationStore

from browser_utils import STEP_MS, VIEWPORT, StreamlitServer, app_env, needs_chromium, open_app, running_chromium
from hostile_inputs import HOST, MARKDOWN_PAYLOADS

pytestmark = needs_chromium()

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect

TITLE = (f"Title ![t](http://{HOST}/title.png) <img src=http://{HOST}/t2.png> **bold** :red[x] $x$ "
         f"[a link](http://{HOST}/link) http://{HOST}/auto www.{HOST}")
PAYLOADS = MARKDOWN_PAYLOADS  # each one tries to load something from HOST or to set window.__pwned


@pytest.fixture(scope="module")
def browser():
    with running_chromium(STEP_MS) as chromium:
        yield chromium


@pytest.fixture(scope="module")
def hostile_app(tiny_ckpt, tmp_path_factory, browser):
    """A server whose store holds one conversation full of payloads, titled with one too."""
    tmp = tmp_path_factory.mktemp("security_browser")
    store = ConversationStore(tmp / "data" / "conversations.sqlite3")
    conversation = store.create(TITLE)
    for i, payload in enumerate(PAYLOADS):
        store.append(conversation.id, "user" if i % 2 else "assistant", f"payload {i}:\n\n{payload}")
    store.close()
    server = StreamlitServer(app_env(tiny_ckpt, tmp / "data"), tmp / "streamlit.log")
    with server:
        yield server, conversation.id


def watch(page, app_url: str) -> list[str]:
    """Refuse and record every request not addressed to the app."""
    leaked: list[str] = []

    def route(route):
        if route.request.url.startswith(app_url):
            route.continue_()
        else:
            leaked.append(route.request.url)
            route.abort()

    page.route("**/*", route)
    return leaked


def test_hostile_messages_and_title_load_nothing_and_run_nothing(hostile_app, browser):
    server, conv_id = hostile_app
    context = browser.new_context(viewport=VIEWPORT, locale="en-US")
    try:
        page = context.new_page()
        leaked = watch(page, server.url)
        open_app(page, f"{server.url}?c={conv_id}", STEP_MS * 2)
        page.locator(".st-key-show_earlier button").click()  # a long conversation shows its newest first
        messages = page.get_by_test_id("stChatMessage")
        expect(messages).to_have_count(len(PAYLOADS))
        expect(page.get_by_test_id("stException")).to_have_count(0)
        main = page.get_by_test_id("stMainBlockContainer")
        # Images are shown as links to them (their address visible, nothing fetched).
        expect(main.locator(f'a[href^="http://{HOST}/plain.png"]')).to_have_count(1)
        assert main.locator("img").count() == 0 and page.get_by_test_id("stSidebar").locator("img").count() == 0
        hrefs = main.locator("a[href]").evaluate_all("links => links.map(a => a.getAttribute('href'))")
        assert not [h for h in hrefs if h.strip().lower().startswith(("javascript:", "data:", "vbscript:"))]
        # The title is shown as typed, in the heading and in the sidebar's list.
        heading = main.locator("h1").first.inner_text()
        assert heading.replace("\u2060", "") == TITLE  # as typed (the joiners that break bare links are invisible)
        heading_links = main.locator("h1").first.locator("a:not([href^='#'])").evaluate_all(
            "as => as.map(a => a.outerHTML)")
        assert not heading_links, heading_links  # no link of any kind (Streamlit's own #anchor aside)
        expect(page.get_by_test_id("stSidebar").get_by_role("button", name=TITLE[:10]).first).to_be_visible()
        for link in main.locator("a").all():  # clicking what is left must not run anything either
            if link.get_attribute("href") is None:
                link.click(modifiers=["ControlOrMeta"])
        assert page.evaluate("window.__pwned") is None
        assert not [url for url in leaked if HOST in url], leaked
    finally:
        context.close()
    assert "Traceback" not in server.log()


@pytest.fixture(scope="module")
def password_app(tiny_ckpt, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("security_password")
    env = {**app_env(tiny_ckpt, tmp / "data"), "MINICPM_PASSWORD": "s3cret"}
    with StreamlitServer(env, tmp / "streamlit.log") as server:
        yield server


def asks_for_password(page) -> bool:
    """After the page's first run: True for the login form, False for the chat."""
    page.locator("[data-testid=stChatInput], .st-key-password").first.wait_for()
    return page.locator(".st-key-password").count() == 1


def test_a_login_is_remembered_across_reloads_and_tabs_but_not_a_forged_cookie(password_app, browser):
    context = browser.new_context(viewport=VIEWPORT, locale="en-US")
    try:
        page = context.new_page()
        open_app(page, password_app.url, STEP_MS * 2)
        assert asks_for_password(page)
        page.locator(".st-key-password input").fill("s3cret")
        page.locator(".st-key-login_submit button").click()
        expect(page.get_by_test_id("stChatInput")).to_be_visible()
        page.wait_for_function("document.cookie.includes('minicpm_login=')")
        cookie = next(c for c in context.cookies() if c["name"] == "minicpm_login")
        assert cookie["sameSite"] == "Strict"

        page.reload()
        assert not asks_for_password(page)
        other_tab = context.new_page()
        other_tab.goto(password_app.url)
        assert not asks_for_password(other_tab)

        expires, signature = cookie["value"].split(".")
        forged = (f"{int(expires) + 10**6}.{signature}",  # a longer life
                  f"{expires}.{'0' * len(signature)}",  # a made-up signature
                  f"1000.{signature}")  # long expired
        for value in forged:
            fresh = browser.new_context(viewport=VIEWPORT, locale="en-US")
            try:
                fresh.add_cookies([{**cookie, "value": value}])
                tab = fresh.new_page()
                tab.goto(password_app.url)
                assert asks_for_password(tab), value
            finally:
                fresh.close()
    finally:
        context.close()
    assert "Traceback" not in password_app.log()


@pytest.fixture(scope="module")
def token_app(tiny_ckpt, tmp_path_factory):
    """As README's command runs it: no password, every interface (0.0.0.0)."""
    tmp = tmp_path_factory.mktemp("security_token")
    env = {**app_env(tiny_ckpt, tmp / "data"), "MINICPM_ALLOW_OPEN": "0"}  # whatever the tests' own setting
    with StreamlitServer(env, tmp / "streamlit.log", address="0.0.0.0") as server:
        yield server


def printed_link(server) -> str:
    found = re.search(r"http://localhost:\d+/\?token=[A-Za-z0-9_-]+", server.log())
    assert found, server.log()
    return found.group(0)


def test_without_a_password_the_bare_address_asks_and_the_printed_link_chats(token_app, browser):
    context = browser.new_context(viewport=VIEWPORT, locale="en-US")
    try:
        page = context.new_page()
        open_app(page, token_app.url, STEP_MS * 2)
        assert asks_for_password(page)  # the token was printed at this first run
        link = printed_link(token_app)
        assert token_app.log().count(link) == 1  # printed once, however many sessions
        page.locator(".st-key-password input").fill("a guess")
        page.locator(".st-key-login_submit button").click()
        expect(page.get_by_test_id("stAlertContentError")).to_be_visible()

        tab = context.new_page()
        open_app(tab, link, STEP_MS * 2)
        expect(tab.get_by_test_id("stChatInput")).to_be_visible()
        tab.wait_for_function("!location.search.includes('token=')")  # out of the address bar
        tab.wait_for_function("document.cookie.includes('minicpm_login=')")
        tab.goto(link.split("?")[0])  # the bare address (of the link's host): the cookie logs this browser in
        assert not asks_for_password(tab)
        assert token_app.log().count("?token=") == 1
    finally:
        context.close()
    assert "Traceback" not in token_app.log()
