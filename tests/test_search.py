"""Search across conversations (minicpm_core.search through ConversationStore.search): one behaviour per
test, each on a fresh SQLite file under tmp_path."""

from __future__ import annotations

import sqlite3

import pytest

from minicpm_core import search as search_module
from minicpm_core import store as store_module
from minicpm_core.errors import InvalidRequest
from minicpm_core.search import MAX_QUERY_CHARS, MAX_RESULTS, MAX_TERMS, SHORT_QUERY_SCAN, snippet
from minicpm_core.store import ConversationStore


@pytest.fixture
def store(tmp_path):
    return ConversationStore(tmp_path / "chat.sqlite3")


def found(store, query, owner=""):
    return [hit.message_id for hit in store.search(query, owner=owner)]


def test_finds_chinese_text_inside_a_sentence_without_spaces(store):
    conv = store.create()
    question = store.append(conv.id, "user", "请解释一下量子纠缠是什么意思")
    store.append(conv.id, "assistant", "这是一个关于物理的问题。")
    hits = store.search("量子纠缠")
    assert [hit.message_id for hit in hits] == [question.id]
    assert hits[0].conversation_id == conv.id
    assert hits[0].title == "请解释一下量子纠缠是什么意思"
    assert (hits[0].before, hits[0].match, hits[0].after) == ("请解释一下", "量子纠缠", "是什么意思")


def test_finds_english_case_insensitively_with_title_date_and_snippet(store):
    conv = store.create("Trip planning")
    store.append(conv.id, "user", "hello")
    reply = store.append(conv.id, "assistant", "The capital of France is Paris, a city on the Seine.")
    [hit] = store.search("PARIS")
    assert (hit.message_id, hit.role, hit.title, hit.created_at) == (reply.id, "assistant", "Trip planning",
                                                                       reply.created_at)
    assert hit.match == "Paris"
    assert hit.before.endswith("France is ") and hit.after.startswith(", a city")


def test_one_and_two_character_queries_find_chinese_words(store):
    conv = store.create()
    cat = store.append(conv.id, "user", "我的猫喜欢睡觉")
    weather = store.append(conv.id, "user", "今天天气很好")
    assert found(store, "猫") == [cat.id]
    assert found(store, "天气") == [weather.id]
    assert found(store, "狗") == []


def test_every_word_must_match_and_short_words_filter_long_ones(store):
    conv = store.create()
    both = store.append(conv.id, "user", "Python 的列表推导式")
    store.append(conv.id, "user", "Python 的字典")
    assert found(store, "python 列表") == [both.id]
    assert found(store, "列表 python") == [both.id]


def test_newest_message_first_and_results_bounded(store):
    conv = store.create()
    ids = [store.append(conv.id, "user", f"note number {i}").id for i in range(MAX_RESULTS + 5)]
    assert found(store, "note") == ids[::-1][:search_module.DEFAULT_RESULTS]
    assert len(store.search("note", limit=10_000)) == MAX_RESULTS


def test_edits_and_deletes_are_reflected(store):
    conv = store.create()
    message = store.append(conv.id, "assistant", "the old answer about apples")
    store.update_message(conv.id, message.id, content="a new answer about pears")
    assert found(store, "apples") == []
    assert found(store, "pears") == [message.id]
    store.update_message(conv.id, message.id, meta={"model": "x"})  # a meta-only update keeps it indexed
    assert found(store, "pears") == [message.id]
    store.delete_messages_from(conv.id, message.id)
    assert found(store, "pears") == []


def test_deleting_a_conversation_removes_its_messages_from_results(store):
    kept, gone = store.create(), store.create()
    kept_msg = store.append(kept.id, "user", "shared words here")
    store.append(gone.id, "user", "shared words here")
    store.delete(gone.id)
    assert found(store, "shared words") == [kept_msg.id]


def test_imported_conversations_are_searchable(store):
    conv = store.import_json('[{"role": "user", "content": "导入的对话内容"}]')
    assert [hit.conversation_id for hit in store.search("对话内")] == [conv.id]


def test_results_are_only_the_owners(store):
    alice, bob = store.create(owner="alice"), store.create(owner="bob")
    alice_msg = store.append(alice.id, "user", "secret plan 秘密计划")
    store.append(bob.id, "user", "secret plan 秘密计划")
    for query in ("secret", "秘密计划", "秘密", "秘"):
        assert found(store, query, owner="alice") == [alice_msg.id], query
    assert found(store, "secret") == []  # the default owner "" has no conversations


@pytest.mark.parametrize("query", ['"', '""', "AND(", "*", "a*", "NEAR(a b)", "title:x", "x OR y", "-x",
                                   "^start", "(", ")", "{a b}", "'", "\\", "%", "_", "%_%", "\x00", "\n\t",
                                   "NOT", "a\x00b", "😀", "🙂🙂🙂"])
def test_hostile_queries_never_raise_and_match_literally(store, query):
    conv = store.create()
    store.append(conv.id, "user", "plain text without specials")
    hits = store.search(query)
    assert hits == []


@pytest.mark.parametrize("text", ['say "hi" AND(stop)', "100% sure_thing", "a*b OR c", "back\\slash"])
def test_special_characters_are_searched_for_as_typed(store, text):
    conv = store.create()
    message = store.append(conv.id, "user", f"before {text} after")
    store.append(conv.id, "user", "before something else after")
    assert found(store, text) == [message.id]
    assert found(store, text[:2]) == [message.id]


def test_too_long_or_too_many_words_is_a_clear_error(store):
    with pytest.raises(InvalidRequest, match=f"at most {MAX_QUERY_CHARS} characters"):
        store.search("x" * (MAX_QUERY_CHARS + 1))
    with pytest.raises(InvalidRequest, match=f"at most {MAX_TERMS} words"):
        store.search(" ".join(f"w{i}" for i in range(MAX_TERMS + 1)))


def test_blank_query_finds_nothing(store):
    store.append(store.create().id, "user", "anything")
    assert store.search("   ") == []


def test_short_queries_scan_only_the_newest_messages(store, monkeypatch):
    monkeypatch.setattr(search_module, "SHORT_QUERY_SCAN", 2)
    conv = store.create()
    store.append(conv.id, "user", "旧的猫")
    newer = [store.append(conv.id, "user", f"新的{i}猫").id for i in range(2)]
    assert found(store, "猫") == newer[::-1]
    assert SHORT_QUERY_SCAN >= 10_000  # the real bound is far above a conversation's length


def write_schema_v1_database(path, messages):
    """A database as today's main writes it (schema 1, before search): no index, no triggers."""
    conn = sqlite3.connect(path)
    store_module._MIGRATIONS[0](conn)
    conn.execute("PRAGMA user_version = 1")
    conn.execute("INSERT INTO conversations VALUES ('c1', 'Old chat', '', '2026-01-01T00:00:00+00:00', "
                 "'2026-01-01T00:00:00+00:00', 1)")
    for i, content in enumerate(messages):
        conn.execute("INSERT INTO messages (id, conversation_id, role, content, meta, created_at) "
                     "VALUES (?, 'c1', 'user', ?, '{}', '2026-01-01T00:00:00+00:00')", (f"m{i}", content))
    conn.commit()
    conn.close()


def test_an_existing_database_is_indexed_when_opened(tmp_path):
    path = tmp_path / "old.sqlite3"
    write_schema_v1_database(path, ["an old message about sailing", "一条关于航海的旧消息"])
    store = ConversationStore(path)
    assert found(store, "sailing") == ["m0"]
    assert found(store, "航海") == ["m1"]
    assert found(store, "关于航海") == ["m1"]
    assert store.get("c1").messages[0].content == "an old message about sailing"  # nothing lost


def test_a_missing_trigger_is_restored_and_the_index_rebuilt_on_open(tmp_path):
    path = tmp_path / "chat.sqlite3"
    store = ConversationStore(path)
    conv = store.create()
    store.close()
    with sqlite3.connect(path) as conn:  # e.g. a migration that rebuilt the messages table
        conn.execute(f"DROP TRIGGER {search_module.TRIGGERS[0]}")
        conn.execute("INSERT INTO messages (id, conversation_id, role, content, meta, created_at) "
                     "VALUES ('m9', ?, 'user', 'written without the trigger', '{}', '2026-01-01')", (conv.id,))
    reopened = ConversationStore(path)
    assert found(reopened, "without the trigger") == ["m9"]
    message = reopened.append(conv.id, "user", "and after it came back")
    assert found(reopened, "came back") == [message.id]


def test_an_sqlite_without_the_trigram_tokenizer_still_searches_the_newest_messages(tmp_path, monkeypatch):
    # As on SQLite < 3.34 or one built without FTS5: no index, the store opens, search scans.
    schema = list(search_module._SCHEMA)
    schema[0] = schema[0].replace("trigram", "no_such_tokenizer")
    monkeypatch.setattr(search_module, "_SCHEMA", schema)
    store = ConversationStore(tmp_path / "chat.sqlite3")
    conv = store.create()
    message = store.append(conv.id, "user", "量子纠缠 without an index")
    store.append(conv.id, "user", "something else")
    assert found(store, "量子纠缠") == [message.id]
    assert found(store, "without index") == [message.id]


def test_reopening_does_not_rebuild_an_intact_index(tmp_path, monkeypatch):
    path = tmp_path / "chat.sqlite3"
    ConversationStore(path).close()
    monkeypatch.setattr(search_module, "_SCHEMA", [])  # a rebuild would now fail to create the table
    store = ConversationStore(path)
    store.append(store.create().id, "user", "still indexed")
    assert len(store.search("indexed")) == 1


@pytest.mark.parametrize("content, term, expected", [
    ("short", "short", ("", "short", "")),
    ("x" * 100 + "needle" + "y" * 100, "needle", ("…" + "x" * 40, "needle", "y" * 40 + "…")),
    ("line one\n\nNeedle   here", "needle", ("line one ", "Needle", " here")),
    ("no match at all", "zzz", ("", "", "no match at all")),
])
def test_snippet_shows_the_match_with_bounded_context_on_one_line(content, term, expected):
    assert snippet(content, term) == expected
