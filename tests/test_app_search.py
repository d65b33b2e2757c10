"""The sidebar's search box and date-grouped conversation list through AppTest, on the demo checkpoint:
one behaviour per test, each with its own conversation store (MINICPM_DATA_DIR)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from minicpm_core.store import ConversationStore, default_db_path
from ui.state import RECENT_MESSAGES, SHOWN_COUNTS
from ui.search import SEARCH_TARGET
from ui.sidebar import CONVERSATIONS_SHOWN, date_group

APP = Path(__file__).resolve().parent.parent / "chat_app.py"
TIMEOUT = 60  # seconds per script run; the first one imports torch and loads the model


@pytest.fixture
def app_env(use_local_model, tmp_path, demo_ckpt):
    use_local_model(demo_ckpt, tmp_path / "data")
    return tmp_path


def ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    return at


def start() -> AppTest:
    return ok(AppTest.from_file(str(APP), default_timeout=TIMEOUT).run())


def test_a_search_lists_title_snippet_and_date_and_a_click_opens_that_message(app_env):
    store = ConversationStore(default_db_path())
    conv = store.create("Physics")
    store.append(conv.id, "user", "什么是量子纠缠？")
    found = store.append(conv.id, "assistant", "量子纠缠是两个粒子之间的关联 **not bold** [x](javascript:alert(1))")
    other = store.create("Cooking")
    store.append(other.id, "user", "How long to boil an egg?")
    at = start()
    ok(at.sidebar.text_input(key="search_query").set_value("粒子之间").run())
    [title] = [b for b in at.sidebar.button if b.key.startswith("search_open_")]
    assert title.label == "Physics"
    caption = next(c.value for c in at.sidebar.caption if "粒子之间" in c.value)
    # the reply's own Markdown is escaped; the match is ours in bold; the date follows
    assert "**粒子之间**" in caption and "\\*\\*not bold\\*\\*" in caption and "\\(javascript" in caption
    assert found.created_at[:4] in caption
    ok(title.click().run())
    assert at.query_params["c"] == conv.id
    assert at.session_state[SEARCH_TARGET] == found.id
    assert at.title[0].value == "Physics"


def open_first_hit(at: AppTest, query: str) -> AppTest:
    ok(at.sidebar.text_input(key="search_query").set_value(query).run())
    return ok(next(b for b in at.sidebar.button if b.key.startswith("search_open_")).click().run())


def shown_texts(at: AppTest) -> list[str]:
    return [m.markdown[0].value for m in at.chat_message]


def test_a_hit_on_an_older_version_shows_that_version(app_env):
    store = ConversationStore(default_db_path())
    conv = store.create("Versions")
    store.append(conv.id, "user", "question")
    first = store.append(conv.id, "assistant", "the first answer mentions walruses")
    store.add_version(conv.id, first.id, "the second answer mentions otters")
    at = start()
    assert shown_texts(ok(at)) == []  # no conversation open yet
    at = open_first_hit(at, "walruses")
    assert shown_texts(at) == ["question", "the first answer mentions walruses"]
    assert at.session_state[SEARCH_TARGET] == first.id


def test_a_hit_older_than_the_newest_messages_drawn_is_drawn(app_env):
    store = ConversationStore(default_db_path())
    conv = store.create("Long")
    for i in range(RECENT_MESSAGES * 2):
        store.append(conv.id, "user" if i % 2 == 0 else "assistant", "the needle" if i == 3 else f"hay {i}")
    at = open_first_hit(start(), "needle")
    assert "the needle" in shown_texts(at)
    assert at.session_state[SHOWN_COUNTS][conv.id] == RECENT_MESSAGES * 2 - 3


def test_a_search_with_no_match_says_so(app_env):
    ConversationStore(default_db_path()).append(ConversationStore(default_db_path()).create().id, "user", "hello")
    at = start()
    ok(at.sidebar.text_input(key="search_query").set_value("zzz").run())
    assert any(c.value == "No message matches." for c in at.sidebar.caption)


def test_opening_a_conversation_from_the_list_ends_the_jump_to_a_found_message(app_env):
    store = ConversationStore(default_db_path())
    conv = store.create("Notes")
    store.append(conv.id, "user", "remember the milk")
    at = start()
    ok(at.sidebar.text_input(key="search_query").set_value("milk").run())
    ok(next(b for b in at.sidebar.button if b.key.startswith("search_open_")).click().run())
    assert SEARCH_TARGET in at.session_state
    ok(at.sidebar.button(key=f"conv_{conv.id}").click().run())
    assert SEARCH_TARGET not in at.session_state


def test_the_list_is_bounded_and_show_more_lists_more(app_env):
    store = ConversationStore(default_db_path())
    for i in range(CONVERSATIONS_SHOWN + 2):
        store.create(f"chat {i}")
    at = start()
    listed = [b for b in at.sidebar.button if b.key.startswith("conv_")]
    assert len(listed) == CONVERSATIONS_SHOWN
    assert any(c.value == "Today" for c in at.sidebar.caption)
    ok(at.sidebar.button(key="show_more_conversations").click().run())
    assert len([b for b in at.sidebar.button if b.key.startswith("conv_")]) == CONVERSATIONS_SHOWN + 2
    assert not [b for b in at.sidebar.button if b.key == "show_more_conversations"]


@pytest.mark.parametrize("day, group", [
    (date(2026, 12, 6), "today"), (date(2026, 12, 7), "today"), (date(2026, 12, 5), "yesterday"),
    (date(2026, 12, 4), "week"), (date(2026, 11, 29), "week"), (date(2026, 11, 28), "older"), (None, "older"),
])
def test_conversations_are_grouped_by_the_day_they_were_last_updated(day, group):
    assert date_group(day, date(2026, 12, 6)) == group
