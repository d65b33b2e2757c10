"""The conversation store: every chat kept in one SQLite file, so nothing is lost on reload or restart.

One `ConversationStore` is shared by every browser session in the process (Streamlit runs each
session in its own thread). It holds one connection, opened with `check_same_thread=False` and used
only under a lock, so calls from different threads run one at a time; every call is one transaction,
and writes begin with `BEGIN IMMEDIATE`, so another process using the same file waits (busy timeout)
instead of failing or interleaving. WAL mode lets that other process read while we write.

It also exports a conversation as JSON or Markdown and imports JSON; what an import file may hold
is checked first, by `store_import.parse_import`, so a bad file is refused with a message that says
what is wrong and nothing is half-stored.

A conversation is a tree of messages, so that no version is ever lost: regenerating a reply adds a
sibling of it (a new version), and editing a question adds a sibling of the question (a new branch).
Each message has a `parent_id` (None for the first messages), and each parent remembers which of its
children is shown (`chosen`, the highest wins). The shown path, from the first message following the
chosen children, is `Conversation.messages`: what the page draws and what the model reads next.

It deliberately does not know about Streamlit, the model or prompts: messages are (role, content,
meta), and `meta` is a JSON object stored as given. The keys the app reads from it follow one schema
(`message_meta.MessageMeta`); a stored meta that breaks it reads back without the bad keys.
"""

from __future__ import annotations

import json
import re
import secrets
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import search as message_search
from .errors import InvalidRequest, MiniCPMError
from .message_meta import MessageMeta, readable_meta  # noqa: F401  (MessageMeta: part of the store's API)
from .paths import DATA_DIR_ENV, data_dir
from .prompt import MAX_MESSAGES  # noqa: F401  (the limit of a stored conversation, as before)

# The import file's limits and errors, re-exported: callers keep importing them from the store.
from .store_import import (  # noqa: F401
    EXPORT_FORMAT,
    IMPORT_PROBLEMS,
    MAX_IMPORT_BYTES,
    MAX_MESSAGE_CHARS,
    ROLES,
    InvalidImport,
    parse_import,
)

DB_FILENAME = "conversations.sqlite3"

SCHEMA_VERSION = 2
BUSY_TIMEOUT_S = 10.0

AUTO_TITLE_CHARS = 40  # titles derived from the first question
MAX_TITLE_CHARS = 200

_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")


class NotFound(MiniCPMError):
    """The conversation or message no longer exists (e.g. deleted in another tab)."""


@dataclass(frozen=True)
class Message:
    id: str
    role: str
    content: str
    meta: dict[str, Any]
    created_at: str  # UTC ISO 8601, like every timestamp here
    parent_id: str | None = None  # the message it answers or follows; None for a first message


@dataclass(frozen=True)
class Conversation:
    id: str
    title: str
    created_at: str
    updated_at: str
    messages: list[Message] = field(default_factory=list)  # the shown path, first message first
    owner: str = ""
    # For each shown message: the ids of its versions (it and its siblings), oldest first.
    versions: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def version(self, message_id: str) -> tuple[int, int]:
        """(n, of): the shown message is version n (from 1) of `of`."""
        ids = self.versions.get(message_id, (message_id,))
        return ids.index(message_id) + 1, len(ids)

    def up_to(self, message_id: str) -> list[Message]:
        """The shown path up to and including `message_id` (all of it if that is not on it)."""
        for index, message in enumerate(self.messages):
            if message.id == message_id:
                return self.messages[:index + 1]
        return list(self.messages)


@dataclass(frozen=True)
class ConversationSummary:
    id: str
    title: str
    updated_at: str
    message_count: int


def default_db_path() -> Path:
    """conversations.sqlite3 in the data directory (paths.data_dir(): $MINICPM_DATA_DIR or its fallback)."""
    return data_dir() / DB_FILENAME


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def _new_id() -> str:
    return secrets.token_urlsafe(8)  # 11 URL-safe characters: fine in a query string


def _is_id(value: object) -> bool:
    return isinstance(value, str) and _ID_RE.fullmatch(value) is not None


def _clean_title(title: str, limit: int = MAX_TITLE_CHARS) -> str:
    """One line, collapsed whitespace, at most `limit` characters (ending in … when cut)."""
    title = " ".join(str(title).split())
    if len(title) > limit:
        title = title[: limit - 1].rstrip() + "…"
    return title


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise InvalidRequest(f"Unknown role {role!r}; roles are {', '.join(ROLES)}.", param="role")


def _dump_meta(meta: dict[str, Any] | None) -> str:
    return json.dumps(meta or {}, ensure_ascii=False)


def _run_script(conn: sqlite3.Connection, script: str) -> None:
    # Statement by statement: executescript() would commit the migration's transaction first.
    for statement in script.split(";"):
        if statement.strip():
            conn.execute(statement)


def _create_tables(conn: sqlite3.Connection) -> None:
    """Schema 1: conversations and their messages in order."""
    _run_script(conn, """
    CREATE TABLE conversations (
        id         TEXT PRIMARY KEY,
        title      TEXT NOT NULL DEFAULT '',
        owner      TEXT NOT NULL DEFAULT '',
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        -- Bumped from a global counter on every change: "most recently updated first" stays exact
        -- when two updates share a clock tick or the clock steps back.
        rev        INTEGER NOT NULL
    );
    CREATE INDEX conversations_by_owner_rev ON conversations (owner, rev);
    CREATE INDEX conversations_by_rev ON conversations (rev);
    CREATE TABLE messages (
        seq             INTEGER PRIMARY KEY AUTOINCREMENT,  -- order within a conversation
        id              TEXT NOT NULL UNIQUE,
        conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
        role            TEXT NOT NULL,
        content         TEXT NOT NULL,
        meta            TEXT NOT NULL DEFAULT '{}',
        created_at      TEXT NOT NULL
    );
    CREATE INDEX messages_by_conversation ON messages (conversation_id, seq);
    """)


def _add_branches(conn: sqlite3.Connection) -> None:
    """Schema 2: messages form a tree (regenerate and edit keep every version). Each existing message
    becomes the child of the one before it, so every conversation reads back exactly as before."""
    _run_script(conn, """
    ALTER TABLE messages ADD COLUMN parent_id TEXT;  -- NULL: a first message
    -- Among a parent's children the one with the highest `chosen` is shown (ties: the newest).
    ALTER TABLE messages ADD COLUMN chosen INTEGER NOT NULL DEFAULT 0;
    UPDATE messages SET parent_id = (
        SELECT p.id FROM messages p WHERE p.conversation_id = messages.conversation_id AND p.seq < messages.seq
        ORDER BY p.seq DESC LIMIT 1);
    CREATE INDEX messages_by_parent ON messages (conversation_id, parent_id);
    """)


# Migration i upgrades a database from user_version i to i + 1; append, never edit.
_MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_create_tables, _add_branches]
assert len(_MIGRATIONS) == SCHEMA_VERSION


def check_message(content: str) -> None:
    """Raise InvalidRequest for a message the store refuses (over MAX_MESSAGE_CHARS): the browser's limits
    are not ours, so it is checked where a message is stored, and before anything else is created for it."""
    if not isinstance(content, str):
        raise TypeError(f"content must be a str, not {type(content).__name__}")
    if len(content) > MAX_MESSAGE_CHARS:
        raise InvalidRequest(f"This message is {len(content):,} characters long, more than the limit of "
                             f"{MAX_MESSAGE_CHARS:,}: shorten it or split it.", "content",
                             code="message_too_long", length=len(content), limit=MAX_MESSAGE_CHARS)


class ConversationStore:
    """Conversations and their messages in one SQLite file. Safe to share across threads and processes."""

    def __init__(self, path: str | Path | None = None):
        if str(path) == ":memory:":
            raise ValueError("ConversationStore needs a file path; conversations must outlive the process.")
        self.path = Path(path).expanduser() if path is not None else default_db_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        # One long-lived connection rather than one per call: closing the last connection to a WAL
        # database checkpoints and deletes the WAL, which made every write cost tens of milliseconds.
        self._conn = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        try:
            self._conn.row_factory = sqlite3.Row
            self._conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            self._conn.execute("PRAGMA foreign_keys = ON")
            self._conn.execute("PRAGMA journal_mode = WAL")  # persistent: recorded in the file itself
            self._migrate()
        except BaseException:
            self._conn.close()
            raise

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # -- transactions --------------------------------------------------------------------------

    @contextmanager
    def _transaction(self, write: bool) -> Iterator[sqlite3.Connection]:
        """One call, one transaction: a consistent snapshot for reads; writes take SQLite's write
        lock up front (IMMEDIATE), so a read-then-write never fails midway on another process's lock."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:  # SQLite may already have rolled back (e.g. disk full)
                    self._conn.execute("ROLLBACK")
                raise

    def _migrate(self) -> None:
        with self._transaction(write=True) as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise MiniCPMError(
                    f"{self.path} was written by a newer version of MiniCPM-2B Chat (schema {version}, "
                    f"this one reads {SCHEMA_VERSION}). Upgrade the app, or set {DATA_DIR_ENV} to another folder."
                )
            for migration in _MIGRATIONS[version:]:
                migration(conn)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            message_search.ensure_index(conn)  # after the schema: indexes what a database holds already

    @staticmethod
    def _touch(conn: sqlite3.Connection, conv_id: str, now: str) -> None:
        """Mark a conversation as just updated; NotFound if it is gone."""
        cursor = conn.execute(
            "UPDATE conversations SET updated_at = ?, "
            "rev = (SELECT COALESCE(MAX(rev), 0) + 1 FROM conversations) WHERE id = ?",
            (now, conv_id),
        )
        if cursor.rowcount == 0:
            raise NotFound(f"Conversation {conv_id!r} no longer exists (it may have been deleted in another tab).",
                           code="conversation_gone")

    @staticmethod
    def _insert_conversation(conn: sqlite3.Connection, title: str, owner: str, now: str) -> str:
        conv_id = _new_id()
        conn.execute(
            "INSERT INTO conversations (id, title, owner, created_at, updated_at, rev) "
            "VALUES (?, ?, ?, ?, ?, (SELECT COALESCE(MAX(rev), 0) + 1 FROM conversations))",
            (conv_id, _clean_title(title), owner, now, now),
        )
        return conv_id

    @staticmethod
    def _insert_message(conn: sqlite3.Connection, conv_id: str, role: str, content: str,
                        meta: dict[str, Any] | None, now: str, parent_id: str | None,
                        chosen: int | None = None) -> Message:
        """Insert a child of `parent_id`; shown among its siblings unless `chosen` says otherwise."""
        stored_meta = _dump_meta(meta)
        # Meta as it will read back (tuples become lists), so the returned Message equals get()'s.
        message = Message(_new_id(), role, content, json.loads(stored_meta), now, parent_id)
        if chosen is None:
            chosen = _newest_choice(conn, conv_id, parent_id)
        conn.execute(
            "INSERT INTO messages (id, conversation_id, role, content, meta, created_at, parent_id, chosen) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (message.id, conv_id, role, content, stored_meta, now, parent_id, chosen),
        )
        if role == "user":  # an untitled conversation is named after its first question
            conn.execute(
                "UPDATE conversations SET title = ? WHERE id = ? AND title = ''",
                (_clean_title(content, AUTO_TITLE_CHARS), conv_id),
            )
        return message

    @staticmethod
    def _message_from_row(row: sqlite3.Row) -> Message:
        return Message(row["id"], row["role"], row["content"], readable_meta(row["meta"]), row["created_at"],
                       row["parent_id"])

    @staticmethod
    def _tree(conn: sqlite3.Connection, conv_id: str, columns: str = "id, parent_id, chosen, seq") -> _Tree:
        rows = conn.execute(f"SELECT {columns} FROM messages WHERE conversation_id = ? ORDER BY seq",
                            (conv_id,)).fetchall()
        return _Tree(rows)

    @staticmethod
    def _message_row(conn: sqlite3.Connection, conv_id: str, message_id: str) -> sqlite3.Row:
        row = conn.execute("SELECT * FROM messages WHERE id = ? AND conversation_id = ?",
                           (message_id, conv_id)).fetchone()
        if row is None:
            raise NotFound(f"Message {message_id!r} is not in conversation {conv_id!r}.")
        return row

    # -- conversations -------------------------------------------------------------------------

    def create(self, title: str = "", owner: str = "") -> Conversation:
        now = _now()
        with self._transaction(write=True) as conn:
            conv_id = self._insert_conversation(conn, title, owner, now)
        return Conversation(conv_id, _clean_title(title), now, now, [], owner)

    def list(self, owner: str = "", limit: int = 100) -> list[ConversationSummary]:
        """This owner's conversations, most recently updated first."""
        with self._transaction(write=False) as conn:
            rows = conn.execute(
                "SELECT c.id, c.title, c.updated_at, "
                "(SELECT COUNT(*) FROM messages m WHERE m.conversation_id = c.id) AS message_count "
                "FROM conversations c WHERE c.owner = ? ORDER BY c.rev DESC LIMIT ?",
                (owner, max(0, int(limit))),
            ).fetchall()
        return [ConversationSummary(r["id"], r["title"], r["updated_at"], r["message_count"]) for r in rows]

    def get(self, conv_id: str) -> Conversation | None:
        """The conversation with its shown path of messages (and each one's versions); None for an unknown
        or malformed id (e.g. from a URL)."""
        if not _is_id(conv_id):
            return None
        with self._transaction(write=False) as conn:
            row = conn.execute("SELECT * FROM conversations WHERE id = ?", (conv_id,)).fetchone()
            if row is None:
                return None
            tree = self._tree(conn, conv_id, "*")
        path = tree.shown_path()
        return Conversation(
            row["id"], row["title"], row["created_at"], row["updated_at"],
            [self._message_from_row(m) for m in path], row["owner"],
            {m["id"]: tuple(sibling["id"] for sibling in tree.children[m["parent_id"]]) for m in path},
        )

    def exists(self, conv_id: str) -> bool:
        """Whether the conversation is there (without reading its messages)."""
        if not _is_id(conv_id):
            return False
        with self._transaction(write=False) as conn:
            return conn.execute("SELECT 1 FROM conversations WHERE id = ?", (conv_id,)).fetchone() is not None

    def rename(self, conv_id: str, title: str) -> bool:
        """Set the title (cleaned to one line, ≤ MAX_TITLE_CHARS). Does not move it up the list. False if unknown."""
        with self._transaction(write=True) as conn:
            cursor = conn.execute("UPDATE conversations SET title = ? WHERE id = ?", (_clean_title(title), conv_id))
        return cursor.rowcount > 0

    def delete(self, conv_id: str) -> bool:
        """Delete the conversation and its messages. False if it did not exist."""
        with self._transaction(write=True) as conn:
            cursor = conn.execute("DELETE FROM conversations WHERE id = ?", (conv_id,))
        return cursor.rowcount > 0

    def search(self, query: str, owner: str = "", limit: int = message_search.DEFAULT_RESULTS
               ) -> message_search.SearchHits:
        """This owner's messages holding every word of `query`, newest first (see minicpm_core.search)."""
        with self._transaction(write=False) as conn:
            return message_search.search(conn, query, owner, limit)

    # -- messages ------------------------------------------------------------------------------

    def append(self, conv_id: str, role: str, content: str, meta: dict[str, Any] | None = None,
               after: str | None = None) -> Message:
        """Add a message at the end of the shown path, or, with `after`, as the shown answer to that
        message (a new version of the replies it had: regenerate). NotFound if either is gone."""
        _check_role(role)
        check_message(content)
        now = _now()
        with self._transaction(write=True) as conn:
            self._touch(conn, conv_id, now)
            if after is None:
                path = self._tree(conn, conv_id).shown_path()
                parent_id = path[-1]["id"] if path else None
            else:
                parent_id = self._message_row(conn, conv_id, after)["id"]
            return self._insert_message(conn, conv_id, role, content, meta, now, parent_id)

    def add_version(self, conv_id: str, message_id: str, content: str,
                    meta: dict[str, Any] | None = None) -> Message:
        """A new version of a message (an edited question): a sibling with the same role, shown from now on.
        The old version and everything after it stay, one ‹ › away."""
        if not isinstance(content, str):
            raise TypeError(f"content must be a str, not {type(content).__name__}")
        now = _now()
        with self._transaction(write=True) as conn:
            old = self._message_row(conn, conv_id, message_id)
            self._touch(conn, conv_id, now)
            return self._insert_message(conn, conv_id, old["role"], content, meta, now, old["parent_id"])

    def select(self, conv_id: str, message_id: str) -> None:
        """Show this message: it, and each message before it, becomes the shown version among its
        siblings (the path then follows the versions last shown below it). NotFound if it is gone."""
        with self._transaction(write=True) as conn:
            self._message_row(conn, conv_id, message_id)
            tree = self._tree(conn, conv_id)
            for row in tree.ancestry(message_id):
                shown = tree.shown_child(row["parent_id"])
                if shown is None or shown["id"] != row["id"]:
                    conn.execute("UPDATE messages SET chosen = ? WHERE id = ?",
                                 (_newest_choice(conn, conv_id, row["parent_id"]), row["id"]))

    def update_message(self, conv_id: str, message_id: str, content: str | None = None,
                       meta: dict[str, Any] | None = None) -> Message:
        """Replace the content and/or merge keys into meta (e.g. when a streamed reply finishes)."""
        with self._transaction(write=True) as conn:
            old = self._message_from_row(self._message_row(conn, conv_id, message_id))
            if content is not None and not isinstance(content, str):
                raise TypeError(f"content must be a str, not {type(content).__name__}")
            stored_meta = _dump_meta({**old.meta, **(meta or {})})
            new = Message(old.id, old.role, old.content if content is None else content,
                          json.loads(stored_meta), old.created_at, old.parent_id)
            conn.execute("UPDATE messages SET content = ?, meta = ? WHERE id = ?", (new.content, stored_meta, new.id))
            self._touch(conn, conv_id, _now())
        return new

    def delete_messages_from(self, conv_id: str, message_id: str) -> int:
        """Drop this message and everything after it, on every branch below it. Returns how many."""
        with self._transaction(write=True) as conn:
            self._message_row(conn, conv_id, message_id)
            doomed = self._tree(conn, conv_id).subtree(message_id)
            for start in range(0, len(doomed), _DELETE_BATCH):
                batch = doomed[start:start + _DELETE_BATCH]
                conn.execute(f"DELETE FROM messages WHERE id IN ({', '.join('?' * len(batch))})", batch)
            self._touch(conn, conv_id, _now())
        return len(doomed)

    def clear_messages(self, conv_id: str) -> int:
        """Drop every message of every branch; the conversation stays. Returns how many."""
        with self._transaction(write=True) as conn:
            self._touch(conn, conv_id, _now())
            return conn.execute("DELETE FROM messages WHERE conversation_id = ?", (conv_id,)).rowcount

    # -- export / import -----------------------------------------------------------------------

    def _get_or_raise(self, conv_id: str) -> Conversation:
        conversation = self.get(conv_id)
        if conversation is None:
            raise NotFound(f"Conversation {conv_id!r} does not exist.")
        return conversation

    def export_json(self, conv_id: str) -> str:
        """Every message of every branch, oldest first: each with its id, its parent's id and whether it
        is the shown version among its siblings, so an import rebuilds the same tree and the same path."""
        conversation = self._get_or_raise(conv_id)
        with self._transaction(write=False) as conn:
            tree = self._tree(conn, conv_id, "*")
        shown = {child["id"] for parent in tree.children if (child := tree.shown_child(parent)) is not None}
        messages = [{"id": m["id"], "parent": m["parent_id"], "role": m["role"], "content": m["content"],
                     "meta": readable_meta(m["meta"]), "shown": m["id"] in shown} for m in tree.rows]
        return json.dumps(
            {
                "format": EXPORT_FORMAT,
                "id": conversation.id,
                "title": conversation.title,
                "created_at": conversation.created_at,
                "messages": messages,
            },
            ensure_ascii=False,
            indent=2,
        )

    def export_markdown(self, conv_id: str) -> str:
        """Title heading, then each message under its speaker in bold (a reply's with the model that wrote
        it); content verbatim. A reply's reasoning comes first, as a quote (each line prefixed with "> ")."""
        conversation = self._get_or_raise(conv_id)
        speakers = {"user": "You", "assistant": "MiniCPM", "system": "System"}
        parts = [f"# {conversation.title or 'Untitled conversation'}", f"_Created {conversation.created_at}_"]
        for message in conversation.messages:
            content = message.content
            if _open_code_fence(content):  # a reply cut off mid code block would swallow the rest
                content += "\n```"
            reasoning = message.meta.get("reasoning") or ""
            if reasoning.strip():
                quoted = "\n".join("> " + line for line in reasoning.splitlines())
                content = f"> _Reasoning:_\n>\n{quoted}\n\n{content}"
            speaker = f"**{speakers[message.role]}**"
            if message.role == "assistant" and message.meta.get("model"):
                speaker += f" ({message.meta['model']})"
            parts.append(f"{speaker}\n\n{content}")
        return "\n\n".join(parts) + "\n"

    def import_json(self, text: str | bytes, owner: str = "") -> Conversation:
        """Validate an export (or a bare OpenAI-style message list) and store it as a NEW conversation."""
        title, messages = parse_import(text)
        now = _now()
        new_ids: dict[int, str] = {}  # a message's place in the file -> its id here
        with self._transaction(write=True) as conn:
            conv_id = self._insert_conversation(conn, title, owner, now)
            for index, message in enumerate(messages):
                parent_id = None if message.parent is None else new_ids[message.parent]
                # the file's order decides among siblings (the newest shown), unless one is marked shown
                chosen = index + 1 + (len(messages) if message.shown else 0)
                new_ids[index] = self._insert_message(conn, conv_id, message.role, message.content, message.meta,
                                                      now, parent_id, chosen).id
        return self._get_or_raise(conv_id)


_DELETE_BATCH = 500  # ids per DELETE: below SQLite's limit on bound parameters


def _newest_choice(conn: sqlite3.Connection, conv_id: str, parent_id: str | None) -> int:
    """A `chosen` above every sibling's: the message that gets it is shown."""
    return conn.execute("SELECT COALESCE(MAX(chosen), 0) + 1 FROM messages WHERE conversation_id = ? "
                        "AND parent_id IS ?", (conv_id, parent_id)).fetchone()[0]


class _Tree:
    """A conversation's messages as a tree: rows (oldest first) with id, parent_id, chosen and seq."""

    def __init__(self, rows: list[sqlite3.Row]):
        self.rows = rows
        self.by_id = {row["id"]: row for row in rows}
        self.children: dict[str | None, list[sqlite3.Row]] = {}
        for row in rows:
            self.children.setdefault(row["parent_id"], []).append(row)

    def shown_child(self, parent_id: str | None) -> sqlite3.Row | None:
        children = self.children.get(parent_id)
        return max(children, key=lambda row: (row["chosen"], row["seq"])) if children else None

    def shown_path(self) -> list[sqlite3.Row]:
        """From the first message, the shown child of each: what the page shows and the model reads."""
        path: list[sqlite3.Row] = []
        while (child := self.shown_child(path[-1]["id"] if path else None)) is not None:
            path.append(child)
        return path

    def ancestry(self, message_id: str) -> list[sqlite3.Row]:
        """The message and every message before it, up to the first (a hand-made cycle ends the walk)."""
        chain, seen = [], set()
        row = self.by_id.get(message_id)
        while row is not None and row["id"] not in seen:
            chain.append(row)
            seen.add(row["id"])
            row = self.by_id.get(row["parent_id"])
        return chain

    def subtree(self, message_id: str) -> list[str]:
        """The ids of the message and of everything below it."""
        ids, todo = [], [message_id]
        while todo:
            current = todo.pop()
            ids.append(current)
            todo.extend(row["id"] for row in self.children.get(current, ()))
        return ids


def _open_code_fence(markdown: str) -> bool:
    return sum(1 for line in markdown.splitlines() if line.lstrip().startswith("```")) % 2 == 1
