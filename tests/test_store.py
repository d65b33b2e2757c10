"""The conversation store: one behaviour per test, each on a fresh SQLite file under tmp_path."""

from __future__ import annotations

import json
import sqlite3
import threading

import pytest

from minicpm_core import store as store_module
from minicpm_core.errors import InvalidRequest
from minicpm_core.store import (
    AUTO_TITLE_CHARS,
    EXPORT_FORMAT,
    MAX_IMPORT_BYTES,
    MAX_MESSAGES,
    SCHEMA_VERSION,
    ConversationStore,
    InvalidImport,
    NotFound,
    default_db_path,
)


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "data" / "chat.sqlite3"


@pytest.fixture
def store(db_path):
    return ConversationStore(db_path)


def roles_and_texts(conversation):
    return [(m.role, m.content) for m in conversation.messages]


def test_creates_missing_directories_and_records_schema_version(db_path):
    ConversationStore(db_path)
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_database_is_in_wal_mode(store, db_path):
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_default_path_follows_the_data_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("MINICPM_DATA_DIR", str(tmp_path / "autodl-tmp"))
    assert default_db_path().parent == tmp_path / "autodl-tmp"
    monkeypatch.delenv("MINICPM_DATA_DIR")
    assert default_db_path().parent.name == "minicpm-chat"


def test_newer_schema_is_refused_with_advice(db_path):
    ConversationStore(db_path)
    with sqlite3.connect(db_path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(store_module.MiniCPMError, match="newer version"):
        ConversationStore(db_path)


def test_create_returns_empty_conversation_with_url_safe_id(store):
    conversation = store.create("Trip plans")
    assert conversation.title == "Trip plans"
    assert conversation.messages == []
    assert conversation.id.replace("-", "").replace("_", "").isalnum()
    assert store.get(conversation.id) == conversation


def test_list_is_newest_updated_first_with_message_counts(store):
    first, second, third = store.create("a"), store.create("b"), store.create("c")
    store.append(first.id, "user", "hello")
    store.append(first.id, "assistant", "hi")
    summaries = store.list()
    assert [s.id for s in summaries] == [first.id, third.id, second.id]
    assert [s.message_count for s in summaries] == [2, 0, 0]
    assert summaries[0].updated_at == store.get(first.id).updated_at


def test_list_respects_limit(store):
    for i in range(5):
        store.create(str(i))
    assert [s.title for s in store.list(limit=2)] == ["4", "3"]


def test_list_filters_on_owner(store):
    mine = store.create("mine", owner="pw-hash")
    store.create("anonymous")
    assert [s.id for s in store.list(owner="pw-hash")] == [mine.id]
    assert [s.title for s in store.list()] == ["anonymous"]
    assert store.get(mine.id).owner == "pw-hash"


def test_rename_changes_title_without_reordering(store):
    older, newer = store.create("old"), store.create("new")
    assert store.rename(older.id, "  Renamed\n title ")
    assert store.get(older.id).title == "Renamed title"
    assert [s.id for s in store.list()] == [newer.id, older.id]


def test_rename_and_delete_of_unknown_id_return_false(store):
    assert store.rename("nope", "x") is False
    assert store.delete("nope") is False


def test_delete_removes_conversation_and_its_messages(store, db_path):
    conversation = store.create()
    store.append(conversation.id, "user", "bye")
    assert store.delete(conversation.id)
    assert store.get(conversation.id) is None
    assert store.list() == []
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM messages").fetchone()[0] == 0


@pytest.mark.parametrize("bad_id", ["unknown1234", "", "../etc/passwd", "a" * 500, "x'; DROP TABLE--", None, 42])
def test_get_of_unknown_or_malformed_id_is_none(store, bad_id):
    store.create("exists")
    assert store.get(bad_id) is None


def test_append_keeps_messages_in_order_with_meta(store):
    conversation = store.create()
    store.append(conversation.id, "system", "Be brief.")
    store.append(conversation.id, "user", "2+2?")
    reply = store.append(conversation.id, "assistant", "4", {"finish_reason": "stop", "params": {"seed": 1}})
    loaded = store.get(conversation.id)
    assert roles_and_texts(loaded) == [("system", "Be brief."), ("user", "2+2?"), ("assistant", "4")]
    assert loaded.messages[-1] == reply
    assert reply.meta == {"finish_reason": "stop", "params": {"seed": 1}}


def test_append_bumps_updated_at(store):
    conversation = store.create()
    store.append(conversation.id, "user", "hi")
    assert store.get(conversation.id).updated_at > conversation.updated_at


def test_append_rejects_unknown_role(store):
    conversation = store.create()
    with pytest.raises(InvalidRequest, match="roles are user, assistant, system"):
        store.append(conversation.id, "bot", "hi")


def test_append_to_deleted_conversation_raises_not_found(store):
    conversation = store.create()
    store.delete(conversation.id)
    with pytest.raises(NotFound, match="no longer exists"):
        store.append(conversation.id, "user", "hi")


def test_first_user_message_titles_an_untitled_conversation(store):
    conversation = store.create()
    store.append(conversation.id, "system", "You are helpful.")
    store.append(conversation.id, "user", "  What is\nthe capital of France?  ")
    store.append(conversation.id, "user", "And of Spain?")
    assert store.get(conversation.id).title == "What is the capital of France?"


def test_auto_title_is_trimmed(store):
    conversation = store.create()
    store.append(conversation.id, "user", "word " * 50)
    title = store.get(conversation.id).title
    assert len(title) <= AUTO_TITLE_CHARS
    assert title.startswith("word word") and title.endswith("…")


def test_auto_title_works_for_chinese(store):
    conversation = store.create()
    question = "请用三句话介绍一下山东省最高的山是哪座山，以及它的海拔高度和历史文化意义，还有周边的旅游景点推荐"
    store.append(conversation.id, "user", question)
    title = store.get(conversation.id).title
    assert title == question[: AUTO_TITLE_CHARS - 1] + "…"


def test_explicit_title_is_not_replaced_by_auto_title(store):
    conversation = store.create("My title")
    store.append(conversation.id, "user", "something else")
    assert store.get(conversation.id).title == "My title"


def test_update_message_replaces_content_and_merges_meta(store):
    conversation = store.create()
    store.append(conversation.id, "user", "hi")
    reply = store.append(conversation.id, "assistant", "", {"params": {"temperature": 0.5}})
    updated = store.update_message(conversation.id, reply.id, content="Hello!",
                                   meta={"finish_reason": "stop", "completion_tokens": 3})
    assert updated.content == "Hello!"
    assert updated.meta == {"params": {"temperature": 0.5}, "finish_reason": "stop", "completion_tokens": 3}
    assert store.get(conversation.id).messages[-1] == updated


def test_update_message_with_only_meta_keeps_content(store):
    conversation = store.create()
    reply = store.append(conversation.id, "assistant", "partial")
    store.update_message(conversation.id, reply.id, meta={"finish_reason": "cancelled"})
    assert store.get(conversation.id).messages[0].content == "partial"


def test_update_message_of_another_conversation_raises_not_found(store):
    a, b = store.create(), store.create()
    message = store.append(a.id, "user", "hi")
    with pytest.raises(NotFound):
        store.update_message(b.id, message.id, content="hijack")
    assert store.get(a.id).messages[0].content == "hi"


def test_delete_messages_from_drops_that_message_and_later_ones(store):
    conversation = store.create()
    messages = [store.append(conversation.id, role, text)
                for role, text in [("user", "q1"), ("assistant", "a1"), ("user", "q2"), ("assistant", "a2")]]
    assert store.delete_messages_from(conversation.id, messages[2].id) == 2
    assert roles_and_texts(store.get(conversation.id)) == [("user", "q1"), ("assistant", "a1")]
    store.append(conversation.id, "user", "q2 edited")
    assert roles_and_texts(store.get(conversation.id))[-1] == ("user", "q2 edited")


def test_delete_messages_from_unknown_message_raises_not_found(store):
    conversation = store.create()
    store.append(conversation.id, "user", "q1")
    with pytest.raises(NotFound):
        store.delete_messages_from(conversation.id, "missing")
    assert len(store.get(conversation.id).messages) == 1


def test_everything_survives_a_restart(db_path):
    before = ConversationStore(db_path)
    conversation = before.create("kept")
    before.append(conversation.id, "user", "remember me", {"k": 1})
    expected = before.get(conversation.id)
    after = ConversationStore(db_path)
    assert after.get(conversation.id) == expected
    assert [s.id for s in after.list()] == [conversation.id]


@pytest.mark.parametrize("instances", [1, 2], ids=["one store", "two stores like two processes"])
def test_concurrent_appends_from_threads_lose_nothing(db_path, instances):
    stores = [ConversationStore(db_path) for _ in range(instances)]
    store = stores[0]
    conversation = store.create()
    threads_n, per_thread = 8, 25
    barrier = threading.Barrier(threads_n)
    errors = []

    def worker(n):
        try:
            barrier.wait(timeout=60)
            for i in range(per_thread):
                stores[n % instances].append(conversation.id, "user", f"{n}:{i}")
        except Exception as exc:  # surfaced below: a thread's exception would otherwise vanish
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads) and errors == []
    texts = [m.content for m in store.get(conversation.id).messages]
    assert sorted(texts) == sorted(f"{n}:{i}" for n in range(threads_n) for i in range(per_thread))
    for n in range(threads_n):  # each thread's own messages stay in the order it wrote them
        assert [t for t in texts if t.startswith(f"{n}:")] == [f"{n}:{i}" for i in range(per_thread)]


def test_two_store_instances_on_one_file_see_each_others_writes(db_path):
    a, b = ConversationStore(db_path), ConversationStore(db_path)
    conversation = a.create()
    b.append(conversation.id, "user", "from b")
    assert roles_and_texts(a.get(conversation.id)) == [("user", "from b")]


def test_export_json_then_import_gives_an_equal_new_conversation(store):
    original = store.create("数学 & more")
    store.append(original.id, "system", "Be exact.")
    store.append(original.id, "user", "1/3 = ?")
    store.append(original.id, "assistant", "0.333…", {"finish_reason": "length", "tokens_per_s": 41.5})
    exported = store.export_json(original.id)
    assert json.loads(exported)["format"] == EXPORT_FORMAT

    imported = store.import_json(exported)
    original = store.get(original.id)
    assert imported.id != original.id
    assert imported.title == original.title
    assert [(m.role, m.content, m.meta) for m in imported.messages] == \
        [(m.role, m.content, m.meta) for m in original.messages]
    assert {s.id for s in store.list()} == {original.id, imported.id}


def test_import_accepts_bytes_with_bom_and_owner(store):
    data = "\ufeff" + json.dumps([{"role": "user", "content": "你好"}, {"role": "assistant", "content": "你好！"}])
    imported = store.import_json(data.encode("utf-8"), owner="o")
    assert roles_and_texts(imported) == [("user", "你好"), ("assistant", "你好！")]
    assert imported.title == "你好"
    assert [s.id for s in store.list(owner="o")] == [imported.id]


def test_import_accepts_openai_text_content_parts_and_ignores_extra_keys(store):
    data = {"model": "gpt-x", "messages": [
        {"role": "user", "name": "ann", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]}
    assert roles_and_texts(store.import_json(json.dumps(data))) == [("user", "ab")]


def test_export_markdown_contains_title_speakers_and_texts(store):
    conversation = store.create("Greetings")
    store.append(conversation.id, "user", "Say *hi*")
    store.append(conversation.id, "assistant", "Hi!\n\n```python\nprint('hi')\n```")
    markdown = store.export_markdown(conversation.id)
    assert markdown.startswith("# Greetings\n")
    assert "**You**\n\nSay *hi*" in markdown
    assert "**MiniCPM**\n\nHi!\n\n```python\nprint('hi')\n```" in markdown


def test_export_markdown_closes_a_code_block_cut_off_mid_reply(store):
    conversation = store.create()
    store.append(conversation.id, "assistant", "```python\nprint(")
    store.append(conversation.id, "user", "go on")
    markdown = store.export_markdown(conversation.id)
    assert "```python\nprint(\n```\n\n**You**" in markdown


def test_export_of_unknown_conversation_raises_not_found(store):
    with pytest.raises(NotFound):
        store.export_json("missing")


BAD_IMPORTS = {
    "invalid utf-8": (b'[{"role": "user", "content": "\xff\xfe"}]', "not UTF-8"),
    "empty": (b"   ", "empty"),
    "not json": ("role: user\ncontent: hi", "not valid JSON"),
    "json number": ("42", "holds a number"),
    "json string": ('"hello"', "holds a string"),
    "wrong format": (json.dumps({"format": "other/v9", "messages": []}),
                     "this app reads 'minicpm-chat/v2' (and the older 'minicpm-chat/v1')"),
    "object without messages": (json.dumps({"title": "t"}), 'no "messages"'),
    "messages not a list": (json.dumps({"messages": {"role": "user"}}), '"messages" is an object, not a list'),
    "title not a string": (json.dumps({"title": 3, "messages": []}), '"title" is a number'),
    "message not an object": (json.dumps(["hi"]), "message 1 is a string"),
    "bad role": (json.dumps([{"role": "user", "content": "a"}, {"role": "bot", "content": "b"}]),
                 "message 2 has role 'bot'"),
    "missing role": (json.dumps([{"content": "a"}]), 'message 1 has no "role"'),
    "missing content": (json.dumps([{"role": "user"}]), 'message 1 has no "content"'),
    "content not text": (json.dumps([{"role": "user", "content": 7}]), '"content" that is a number'),
    "image content part": (json.dumps([{"role": "user", "content": [{"type": "image_url"}]}]), "not text"),
    "meta not an object": (json.dumps([{"role": "user", "content": "a", "meta": [1]}]), '"meta" that is a list'),
    "meta speed not a number": (json.dumps([{"role": "assistant", "content": "a", "meta": {"tokens_per_second": "fast"}}]),
                                'message 1 has "meta" whose "tokens_per_second" is wrong'),
    "meta count not a number": (json.dumps([{"role": "assistant", "content": "a", "meta": {"prompt_tokens": "many"}}]),
                                '"prompt_tokens" is wrong'),
    "meta count negative": (json.dumps([{"role": "assistant", "content": "a", "meta": {"prompt_tokens": -5000}}]),
                            '"prompt_tokens" is wrong (Input should be greater than or equal to 0)'),
    "meta unknown finish reason": (json.dumps([{"role": "assistant", "content": "a", "meta": {"finish_reason": 1}}]),
                                   '"finish_reason" is wrong'),
    "lone surrogate": ('[{"role": "user", "content": "\\ud800"}]', "lone surrogate"),
    "too deeply nested": ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    "too many messages": (json.dumps([{"role": "user", "content": ""}] * (MAX_MESSAGES + 1)),
                          f"more than the limit of {MAX_MESSAGES}"),
    "too large": (b"[" + b" " * MAX_IMPORT_BYTES + b"]", f"more than the limit of {MAX_IMPORT_BYTES:,} bytes"),
}


@pytest.mark.parametrize("data, problem", BAD_IMPORTS.values(), ids=BAD_IMPORTS.keys())
def test_bad_import_is_refused_with_a_helpful_message(store, data, problem):
    with pytest.raises(InvalidImport) as info:
        store.import_json(data)
    message = str(info.value)
    assert problem in message
    assert EXPORT_FORMAT in message and '"role": "user"' in message  # says what a valid file looks like
    assert isinstance(info.value, InvalidRequest)
    assert store.list() == []  # nothing half-imported


def test_stored_meta_that_breaks_the_schema_reads_back_without_the_bad_keys(store):
    conversation = store.create()
    reply = store.append(conversation.id, "assistant", "hi", {"completion_tokens": 3, "note": "kept"})
    with sqlite3.connect(store.path) as db:  # as an old version or a hand edit could have left it
        db.execute("UPDATE messages SET meta = ? WHERE id = ?", (json.dumps(
            {"completion_tokens": 3, "note": "kept", "tokens_per_second": "fast", "prompt_tokens": -5000}), reply.id))
    assert store.get(conversation.id).messages[0].meta == {"completion_tokens": 3, "note": "kept"}
    for broken in ("[1, 2]", "not json", "null"):
        with sqlite3.connect(store.path) as db:
            db.execute("UPDATE messages SET meta = ? WHERE id = ?", (broken, reply.id))
        assert store.get(conversation.id).messages[0].meta == {}


def test_failed_write_is_rolled_back_and_store_stays_usable(store):
    conversation = store.create()
    with pytest.raises(TypeError):
        store.append(conversation.id, "user", "hi", {"not json": object()})
    assert store.get(conversation.id) == conversation
    store.append(conversation.id, "user", "hi again")
    assert roles_and_texts(store.get(conversation.id)) == [("user", "hi again")]
