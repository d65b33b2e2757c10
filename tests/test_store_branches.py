"""Alternatives kept: a conversation is a tree of messages, the shown path is what the page draws and the
model reads; a database written by schema 1 (main before branches) is migrated in place, nothing lost."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from minicpm_core.store import EXPORT_FORMAT, SCHEMA_VERSION, ConversationStore, InvalidImport, NotFound

# Written by main's store at a3ff011 (schema 1, before branches) with create/append only: two
# conversations with messages, meta, a system prompt, an owner, Chinese text, and one empty conversation.
V1_DB = Path(__file__).parent / "data" / "store_v1.sqlite3"
V1_CONTENTS = {  # title -> (owner, [(role, content, a meta key it must keep)])
    "What is 2 + 3?": ("", [("user", "What is 2 + 3?", None),
                            ("assistant", "2 + 3 = 5.", ("reasoning", "Count on from 2.")),
                            ("user", "And 4 + 4?", None),
                            ("assistant", "8", ("finish_reason", "cancelled"))]),
    "Second 第二": ("alice", [("system", "Be brief.", None), ("user", "讲一个故事", None),
                            ("assistant", "从前……", ("finish_reason", "length"))]),
    "Empty one": ("", []),
}


@pytest.fixture
def store(tmp_path):
    store = ConversationStore(tmp_path / "chat.sqlite3")
    yield store
    store.close()


def texts(conversation):
    return [m.content for m in conversation.messages]


def two_replies(store):
    """A question answered, then regenerated: (conversation id, question, first reply, second reply)."""
    conv = store.create()
    question = store.append(conv.id, "user", "Q")
    first = store.append(conv.id, "assistant", "A1", {"model": "m1"})
    second = store.append(conv.id, "assistant", "A2", {"model": "m2"}, after=question.id)
    return conv.id, question, first, second


def test_a_reply_after_a_question_is_a_new_version_shown_and_the_old_one_stays(store):
    conv_id, question, first, second = two_replies(store)
    conversation = store.get(conv_id)
    assert texts(conversation) == ["Q", "A2"]
    assert conversation.versions[second.id] == (first.id, second.id)
    assert conversation.version(second.id) == (2, 2) and conversation.version(question.id) == (1, 1)
    assert conversation.messages[1].meta["model"] == "m2" and second.parent_id == question.id


def test_selecting_a_version_changes_the_shown_path(store):
    conv_id, question, first, second = two_replies(store)
    store.select(conv_id, first.id)
    assert texts(store.get(conv_id)) == ["Q", "A1"]
    store.append(conv_id, "user", "Q2")  # the end of the shown path: after A1
    assert texts(store.get(conv_id)) == ["Q", "A1", "Q2"]
    store.select(conv_id, second.id)
    assert texts(store.get(conv_id)) == ["Q", "A2"]
    store.select(conv_id, first.id)  # the branch below A1 comes back as it was last shown
    assert texts(store.get(conv_id)) == ["Q", "A1", "Q2"]


def test_selecting_a_message_deep_in_another_branch_shows_its_whole_path(store):
    conv_id, question, first, second = two_replies(store)
    store.select(conv_id, first.id)
    deep = store.append(conv_id, "user", "under A1")
    store.select(conv_id, second.id)
    store.select(conv_id, deep.id)  # e.g. a search result on a hidden branch
    assert texts(store.get(conv_id)) == ["Q", "A1", "under A1"]


def test_an_edited_question_is_a_new_branch_and_the_old_branch_stays(store):
    conv = store.create()
    old = store.append(conv.id, "user", "old question")
    store.append(conv.id, "assistant", "old answer")
    new = store.add_version(conv.id, old.id, "new question")
    assert texts(store.get(conv.id)) == ["new question"] and new.role == "user"
    store.append(conv.id, "assistant", "new answer")
    store.select(conv.id, old.id)
    assert texts(store.get(conv.id)) == ["old question", "old answer"]
    assert store.get(conv.id).versions[old.id] == (old.id, new.id)


def test_deleting_from_a_message_drops_its_branch_only(store):
    conv_id, question, first, second = two_replies(store)
    store.select(conv_id, first.id)
    store.append(conv_id, "user", "under A1")
    assert store.delete_messages_from(conv_id, first.id) == 2
    conversation = store.get(conv_id)
    assert texts(conversation) == ["Q", "A2"] and conversation.version(second.id) == (1, 1)


def test_clearing_removes_every_branch(store):
    conv_id, *_ = two_replies(store)
    assert store.clear_messages(conv_id) == 3
    assert store.get(conv_id).messages == [] and store.list()[0].message_count == 0


def test_selecting_a_message_of_another_conversation_is_refused(store):
    conv_id, question, *_ = two_replies(store)
    with pytest.raises(NotFound):
        store.select(store.create().id, question.id)
    with pytest.raises(NotFound):
        store.append(store.create().id, "assistant", "x", after=question.id)


def test_the_json_export_carries_every_branch_and_the_import_rebuilds_them(store):
    conv_id, question, first, second = two_replies(store)
    store.select(conv_id, first.id)
    store.append(conv_id, "user", "under A1")
    store.select(conv_id, second.id)
    exported = json.loads(store.export_json(conv_id))
    assert exported["format"] == EXPORT_FORMAT and len(exported["messages"]) == 4

    imported = store.import_json(json.dumps(exported))
    assert texts(imported) == ["Q", "A2"] and imported.version(imported.messages[1].id) == (2, 2)
    assert [m.meta.get("model") for m in imported.messages] == [None, "m2"]
    older = imported.versions[imported.messages[1].id][0]
    store.select(imported.id, older)
    assert texts(store.get(imported.id)) == ["Q", "A1", "under A1"]


def test_the_markdown_export_holds_the_shown_path(store):
    conv_id, question, first, second = two_replies(store)
    markdown = store.export_markdown(conv_id)
    assert "A2" in markdown and "A1" not in markdown
    store.select(conv_id, first.id)
    assert "A1" in store.export_markdown(conv_id)


def test_an_old_linear_export_still_imports(store):
    old = {"format": "minicpm-chat/v1", "title": "old", "messages": [
        {"role": "user", "content": "Q", "meta": {}}, {"role": "assistant", "content": "A", "meta": {}}]}
    imported = store.import_json(json.dumps(old))
    assert texts(imported) == ["Q", "A"] and imported.messages[1].parent_id == imported.messages[0].id


@pytest.mark.parametrize("messages, problem", [
    ([{"id": "a", "role": "user", "content": "Q"}, {"id": "a", "parent": "a", "role": "assistant", "content": "A"}],
     "which an earlier message already has"),
    ([{"id": "a", "role": "user", "content": "Q"}, {"id": "b", "parent": "zz", "role": "assistant", "content": "A"}],
     "which is not the \"id\" of an earlier message"),
    ([{"id": "b", "parent": "b", "role": "user", "content": "Q"}], "which is not the \"id\" of an earlier message"),
])
def test_a_branch_file_with_a_broken_tree_is_refused(store, messages, problem):
    with pytest.raises(InvalidImport, match=problem):
        store.import_json(json.dumps({"format": EXPORT_FORMAT, "messages": messages}))
    assert store.list() == []


# --- a database written before branches ------------------------------------------------------------

def test_a_schema_1_database_is_migrated_in_place_with_nothing_lost(tmp_path):
    path = tmp_path / "conversations.sqlite3"
    shutil.copy(V1_DB, path)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
        before = conn.execute("SELECT id, conversation_id, role, content, meta, created_at FROM messages "
                              "ORDER BY seq").fetchall()
        conversations_before = conn.execute("SELECT * FROM conversations ORDER BY rev").fetchall()
    conn.close()

    store = ConversationStore(path)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("SELECT id, conversation_id, role, content, meta, created_at FROM messages "
                            "ORDER BY seq").fetchall() == before
        assert conn.execute("SELECT * FROM conversations ORDER BY rev").fetchall() == conversations_before
    conn.close()
    summaries = store.list() + store.list(owner="alice")
    assert {s.title for s in summaries} == set(V1_CONTENTS)
    for summary in summaries:
        owner, expected = V1_CONTENTS[summary.title]
        conversation = store.get(summary.id)
        assert conversation.owner == owner
        assert [(m.role, m.content) for m in conversation.messages] == [(r, c) for r, c, _ in expected]
        for message, (_, _, kept) in zip(conversation.messages, expected):
            if kept:
                assert message.meta[kept[0]] == kept[1]

    # and it goes on as a tree: a regenerated reply keeps the migrated one
    first = next(s for s in summaries if s.title == "What is 2 + 3?")
    conversation = store.get(first.id)
    question, old_reply = conversation.messages[2], conversation.messages[3]
    store.append(first.id, "assistant", "4 + 4 = 8.", after=question.id)
    store.select(first.id, old_reply.id)
    assert [m.content for m in store.get(first.id).messages][-1] == "8"
    store.close()
    reopened = ConversationStore(path)  # opening again migrates nothing twice
    assert len(reopened.get(first.id).messages) == 4
    reopened.close()

