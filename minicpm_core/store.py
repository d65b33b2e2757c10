"""The conversation store: every chat kept in one SQLite file, so nothing is lost on reload or restart.

One `ConversationStore` is shared by every browser session in the process (Streamlit runs each
session in its own thread). It holds one connection, opened with `check_same_thread=False` and used
only under a lock, so calls from different threads run one at a time; every call is one transaction,
and writes begin with `BEGIN IMMEDIATE`, so another process using the same file waits (busy timeout)
instead of failing or interleaving. WAL mode lets that other process read while we write.

It also exports a conversation as JSON or Markdown and imports JSON; what an import file may hold
is checked first, by `store_import.parse_import`, so a bad file is refused with a message that says
what is wrong and nothing is half-stored.

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
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from .errors import InvalidRequest, MiniCPMError
from .message_meta import MessageMeta, readable_meta  # noqa: F401  (MessageMeta: part of the store's API)
from .paths import DATA_DIR_ENV, data_dir
from .prompt import MAX_MESSAGES  # noqa: F401  (the limit of a stored conversation, as before)
# The import file's limits and errors, re-exported: callers keep importing them from the store.
from .store_import import (  # noqa: F401
    EXPORT_FORMAT, IMPORT_PROBLEMS, MAX_IMPORT_BYTES, MAX_MESSAGE_CHARS, ROLES, InvalidImport, parse_import,
)

DB_FILENAME = "conversations.sqlite3"

SCHEMA_VERSION = 1
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


@dataclass(frozen=True)
class Conversation:
    id: str
    title: str
    created_at: str
    updated_at: str
    messages: list[Message] = field(default_factory=list)
    owner: str = ""


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


# Migration i upgrades a database from user_version i to i + 1; append, never edit.
_MIGRATIONS = [
    """
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
    """,
]
assert len(_MIGRATIONS) == SCHEMA_VERSION


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
                # Statement by statement: executescript() would commit our transaction first.
                for statement in migration.split(";"):
                    if statement.strip():
                        conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

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
                        meta: dict[str, Any] | None, now: str) -> Message:
        stored_meta = _dump_meta(meta)
        # Meta as it will read back (tuples become lists), so the returned Message equals get()'s.
        message = Message(_new_id(), role, content, json.loads(stored_meta), now)
        conn.execute(
            "INSERT INTO messages (id, conversation_id, role, content, meta, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            (message.id, conv_id, role, content, stored_meta, now),
        )
        if role == "user":  # an untitled conversation is named after its first question
            conn.execute(
                "UPDATE conversations SET title = ? WHERE id = ? AND title = ''",
                (_clean_title(content, AUTO_TITLE_CHARS), conv_id),
            )
        return message

    @staticmethod
    def _message_from_row(row: sqlite3.Row) -> Message:
        return Message(row["id"], row["role"], row["content"], readable_meta(row["meta"]), row["created_at"])

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
        """The conversation with its messages in order; None for an unknown or malformed id (e.g. from a URL)."""
        if not _is_id(conv_id):
            return None
        with self._transaction(write=False) as conn:
            row = conn.execute("SELECT * FROM conversations WHERE id = ?", (conv_id,)).fetchone()
            if row is None:
                return None
            messages = conn.execute(
                "SELECT * FROM messages WHERE conversation_id = ? ORDER BY seq", (conv_id,)
            ).fetchall()
        return Conversation(
            row["id"], row["title"], row["created_at"], row["updated_at"],
            [self._message_from_row(m) for m in messages], row["owner"],
        )

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

    # -- messages ------------------------------------------------------------------------------

    def append(self, conv_id: str, role: str, content: str, meta: dict[str, Any] | None = None) -> Message:
        """Add a message at the end; NotFound if the conversation is gone."""
        _check_role(role)
        if not isinstance(content, str):
            raise TypeError(f"content must be a str, not {type(content).__name__}")
        now = _now()
        with self._transaction(write=True) as conn:
            self._touch(conn, conv_id, now)
            return self._insert_message(conn, conv_id, role, content, meta, now)

    def update_message(self, conv_id: str, message_id: str, content: str | None = None,
                       meta: dict[str, Any] | None = None) -> Message:
        """Replace the content and/or merge keys into meta (e.g. when a streamed reply finishes)."""
        with self._transaction(write=True) as conn:
            row = conn.execute(
                "SELECT * FROM messages WHERE id = ? AND conversation_id = ?", (message_id, conv_id)
            ).fetchone()
            if row is None:
                raise NotFound(f"Message {message_id!r} is not in conversation {conv_id!r}.")
            old = self._message_from_row(row)
            if content is not None and not isinstance(content, str):
                raise TypeError(f"content must be a str, not {type(content).__name__}")
            stored_meta = _dump_meta({**old.meta, **(meta or {})})
            new = Message(old.id, old.role, old.content if content is None else content,
                          json.loads(stored_meta), old.created_at)
            conn.execute("UPDATE messages SET content = ?, meta = ? WHERE id = ?", (new.content, stored_meta, new.id))
            self._touch(conn, conv_id, _now())
        return new

    def delete_messages_from(self, conv_id: str, message_id: str) -> int:
        """Drop this message and every later one (regenerate, edit the last question). Returns how many."""
        with self._transaction(write=True) as conn:
            row = conn.execute(
                "SELECT seq FROM messages WHERE id = ? AND conversation_id = ?", (message_id, conv_id)
            ).fetchone()
            if row is None:
                raise NotFound(f"Message {message_id!r} is not in conversation {conv_id!r}.")
            cursor = conn.execute(
                "DELETE FROM messages WHERE conversation_id = ? AND seq >= ?", (conv_id, row["seq"])
            )
            self._touch(conn, conv_id, _now())
        return cursor.rowcount

    # -- export / import -----------------------------------------------------------------------

    def _get_or_raise(self, conv_id: str) -> Conversation:
        conversation = self.get(conv_id)
        if conversation is None:
            raise NotFound(f"Conversation {conv_id!r} does not exist.")
        return conversation

    def export_json(self, conv_id: str) -> str:
        conversation = self._get_or_raise(conv_id)
        return json.dumps(
            {
                "format": EXPORT_FORMAT,
                "id": conversation.id,
                "title": conversation.title,
                "created_at": conversation.created_at,
                "messages": [{"role": m.role, "content": m.content, "meta": m.meta} for m in conversation.messages],
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
        with self._transaction(write=True) as conn:
            conv_id = self._insert_conversation(conn, title, owner, now)
            for role, content, meta in messages:
                self._insert_message(conn, conv_id, role, content, meta, now)
        return self._get_or_raise(conv_id)


def _open_code_fence(markdown: str) -> bool:
    return sum(1 for line in markdown.splitlines() if line.lstrip().startswith("```")) % 2 == 1
