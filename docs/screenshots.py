"""Retake README's screenshots of the chat, compare and model pages from the app as README starts it.

    python docs/screenshots.py          # writes docs/screenshots/{chat,compare,model}.png

It runs `streamlit run chat_app.py -- --demo` with an empty data folder on a free port of 127.0.0.1
and drives Debian's Chromium through the pages at temperature 0, so the pictures show the shipped
demo model's known answers under its own name. thinking.png and models.png come from the browser
tests (tests/test_browser_thinking.py, tests/test_browser_switch.py) and are copied from
artifacts/screenshots/.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from browser_utils import (STEP_MS, VIEWPORT, StreamlitServer, longest_plain_demo_qa, open_app,  # noqa: E402
                           running_chromium, set_greedy, set_slider, wait_animations_done,
                           wait_idle)

OUT = ROOT / "docs" / "screenshots"
COMPARE_Q = "What is the capital of France?"


def go_to(page, nav_label: str) -> None:
    page.get_by_test_id("stSidebarNavLink").filter(has_text=nav_label).click()
    page.get_by_test_id("stSidebarNavLink").filter(has_text=nav_label).and_(
        page.locator("[aria-current=page]")).wait_for()
    wait_idle(page, STEP_MS)


def chat(page) -> None:
    question, _ = longest_plain_demo_qa()
    box = page.get_by_test_id("stChatInputTextArea")
    box.fill(question)
    box.press("Enter")
    page.get_by_test_id("stChatMessage").nth(1).get_by_test_id("stCaptionContainer").filter(
        has_text="finished").wait_for()
    wait_idle(page, STEP_MS)
    page.get_by_test_id("stChatInputTextArea").blur()
    page.screenshot(path=str(OUT / "chat.png"))


def compare(page) -> None:
    go_to(page, "Compare")
    set_slider(page, "b_temperature", "0.00", STEP_MS)
    prompt = page.locator(".st-key-compare_prompt textarea")
    prompt.fill(COMPARE_Q)
    prompt.press("Control+Enter")  # commits the text area's value
    wait_idle(page, STEP_MS)
    page.locator(".st-key-compare_run button").click()
    captions = page.get_by_test_id("stMainBlockContainer").get_by_test_id("stCaptionContainer")
    captions.filter(has_text="finished").nth(1).wait_for()
    wait_idle(page, STEP_MS)
    settings_b = page.get_by_test_id("stMainBlockContainer").get_by_test_id("stExpander").filter(
        has_text="Settings B")
    settings_b.locator("summary").first.click()  # B's sliders folded: the replies in view
    wait_animations_done(page)
    page.screenshot(path=str(OUT / "compare.png"))


def model(page) -> None:
    go_to(page, "Model")
    # The page is idle before its elements have replaced the previous page's placeholders: wait for them.
    page.get_by_test_id("stMainBlockContainer").get_by_test_id("stTable").first.wait_for()
    page.wait_for_function("() => !document.querySelector('[data-testid=stSkeleton]')")
    page.screenshot(path=str(OUT / "model.png"))


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as data_dir:
        server = StreamlitServer({"MINICPM_DATA_DIR": data_dir}, Path(data_dir) / "streamlit.log", ["--demo"])
        try:
            server.wait_until_serving()
            with running_chromium(STEP_MS) as chromium:
                page = chromium.new_context(viewport=VIEWPORT, locale="en-US").new_page()
                page.set_default_timeout(STEP_MS)
                open_app(page, server.url, STEP_MS * 2)
                set_greedy(page, STEP_MS)
                chat(page)
                compare(page)
                model(page)
        finally:
            server.stop()
    print(f"wrote chat.png, compare.png and model.png in {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
