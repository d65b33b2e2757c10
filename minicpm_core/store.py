"""The conversation store: every chat kept in one SQLite file, so nothing is lost on reload or restart.

One `ConversationStore` is shared by every browser session in the process (Streamlit runs each
session in its own thread). It holds one connection, opened with `check_same_thread=False` and used
only under a lock, so calls from different threads run one at a time; every call is one transaction,
and writes begin with `BEGIN IMMEDIATE`, so another process using the same file waits (busy timeout)
instead of failing or interleaving. WAL mode lets that other process read while we write.

It also exports a conversation as JSON or Markdown and imports JSON, validating every field against
the named limits below (declared as the pydantic models ImportFile and ImportMessage), so a bad file
is refused with a message that says what is wrong.

It deliberately does not know about Streamlit, the model or prompts: messages are (role, content,
meta), and `meta` is a JSON object stored as given. The keys the app reads from it (a reply's token
counts, speed, finish reason, settings) follow one schema, `MessageMeta`: an import whose meta breaks
it is refused, and a stored meta that breaks it (an old or hand-edited database) reads back without
the bad keys, so a page never meets a count that is not a number.
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
from typing import Annotated, Any, Callable, Iterator, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from . import search as message_search
from .errors import InvalidRequest, MiniCPMError
from .paths import DATA_DIR_ENV, data_dir
from .prompt import MAX_MESSAGES  # a stored conversation is one the model can be asked to continue
from .stats import FINISH_REASONS

DB_FILENAME = "conversations.sqlite3"

SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 10.0

ROLES = ("user", "assistant", "system")
EXPORT_FORMAT = "minicpm-chat/v1"

AUTO_TITLE_CHARS = 40  # titles derived from the first question
MAX_TITLE_CHARS = 200
MAX_IMPORT_BYTES = 5 * 1024 * 1024
MAX_MESSAGE_CHARS = 200_000
MAX_MODEL_NAME = 300  # a model's name in meta: an id or a folder name, far below this
MAX_META_COUNT = 10**9  # token counts in meta: far above any context, far below SQLite's integer limit

_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")

_VALID_IMPORT_HINT = (
    f"A valid file is a JSON export from this app, "
    f'{{"format": "{EXPORT_FORMAT}", "title": "...", "messages": [{{"role": "user", "content": "Hi"}}, ...]}}, '
    f'or a JSON list of messages, [{{"role": "user", "content": "Hi"}}, '
    f'{{"role": "assistant", "content": "Hello!"}}]. Roles are {", ".join(ROLES)}.'
)
_LONE_SURROGATES = 'contains an invalid character escape (a lone surrogate such as "\\ud800")'


class InvalidImport(InvalidRequest):
    """An imported file is not a conversation we can read; the message says why and what is valid."""

    def __init__(self, problem: str, code: str, **details: Any):
        super().__init__(f"Cannot import this file: {problem}. {_VALID_IMPORT_HINT}", param="file",
                         code=f"import_{code}", **details)


_Count = Field(default=None, ge=0, le=MAX_META_COUNT, strict=True)


class MessageMeta(BaseModel):
    """The keys of a message's meta that the app reads; other keys are kept as they are."""

    model_config = ConfigDict(extra="allow")

    prompt_tokens: int | None = _Count
    completion_tokens: int | None = _Count
    turns_dropped: int | None = _Count
    tokens_per_second: float | None = Field(default=None, ge=0, allow_inf_nan=False, strict=True)
    finish_reason: Literal[FINISH_REASONS] | None = None  # type: ignore[valid-type]
    params: dict[str, Any] | None = None  # the GenerationParams that produced a reply
    model: str | None = Field(default=None, strict=True, max_length=MAX_MODEL_NAME)  # which model wrote it
    stopped_for: str | None = Field(default=None, strict=True, max_length=MAX_MODEL_NAME)  # a switch cut it: the new model
    # A thinking family's reply: what it thought before answering (never sent back to the model), how
    # many tokens and seconds that took, and whether max_length cut it before the answer began.
    reasoning: str | None = Field(default=None, strict=True)
    reasoning_tokens: int | None = _Count
    reasoning_seconds: float | None = Field(default=None, ge=0, allow_inf_nan=False, strict=True)
    ended_in_reasoning: bool | None = Field(default=None, strict=True)


def meta_problem(meta: dict[str, Any]) -> tuple[str, str] | None:
    """(key, what is wrong) for the first key of `meta` that breaks MessageMeta; None if it is valid."""
    try:
        MessageMeta.model_validate(meta)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        return str(error["loc"][0]), error["msg"]
    return None


def readable_meta(stored: str) -> dict[str, Any]:
    """A stored meta as the app may read it: the keys that break MessageMeta are left out."""
    try:
        meta = json.loads(stored)
    except (ValueError, RecursionError):
        return {}
    if not isinstance(meta, dict):
        return {}
    while (problem := meta_problem(meta)) is not None:  # one bad key less each time: it ends
        meta = {key: value for key, value in meta.items() if key != problem[0]}
    return meta


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

    def search(self, query: str, owner: str = "", limit: int = message_search.DEFAULT_RESULTS
               ) -> message_search.SearchHits:
        """This owner's messages holding every word of `query`, newest first (see minicpm_core.search)."""
        with self._transaction(write=False) as conn:
            return message_search.search(conn, query, owner, limit)

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


def parse_import(text: str | bytes) -> tuple[str, list[tuple[str, str, dict[str, Any]]]]:
    """(title, [(role, content, meta)]) from an import file; InvalidImport naming the first problem."""
    size = len(text) if isinstance(text, bytes) else len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_IMPORT_BYTES:
        raise InvalidImport(f"it is {size:,} bytes, more than the limit of {MAX_IMPORT_BYTES:,} bytes",
                            "too_big", size=size, limit=MAX_IMPORT_BYTES)
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise InvalidImport(f"it is not UTF-8 text (bad byte at position {exc.start})", "not_utf8",
                                position=exc.start) from None
    if not text.strip():
        raise InvalidImport("it is empty", "empty")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidImport(f"it is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})",
                            "not_json", line=exc.lineno, column=exc.colno) from None
    except RecursionError:
        raise InvalidImport("its JSON is nested too deeply to be a conversation", "too_deep") from None

    if isinstance(data, list):  # a bare OpenAI-style message list
        data = {"messages": data}
    elif not isinstance(data, dict):
        raise InvalidImport(f"it holds {_kind(data)}, not a conversation", "not_conversation")
    try:
        imported = ImportFile.model_validate(data)
    except ValidationError as exc:
        raise _invalid_import(exc.errors(include_url=False)[0]) from None
    return imported.title, [(m.role, m.content, m.meta) for m in imported.messages]


# --- what an import file may hold -------------------------------------------------------------------
# Declared as pydantic models. A failed check is a problem code: the validators below raise theirs (_Problem),
# _PYDANTIC_PROBLEMS names pydantic's own complaints (a wrong type, a missing key, a limit passed) by
# where they are, and IMPORT_PROBLEMS words each code. Pydantic reports fields in declaration order
# and messages in file order; the first problem is the one the user is told.

IMPORT_PROBLEMS = {  # code -> what is wrong; {where} is "message N", {kind} the kind of the bad value
    "wrong_format": 'its "format" is {found!r}; this app reads {expected!r}',
    "no_messages": 'the JSON object has no "messages" list',
    "title_type": 'its "title" is {kind}, not a string',
    "title_surrogates": f'its "title" {_LONE_SURROGATES}',
    "messages_type": 'its "messages" is {kind}, not a list',
    "too_many_messages": "it has {count} messages, more than the limit of {limit}",
    "message_type": "{where} is {kind}, not an object with a role and content",
    "message_no_role": '{where} has no "role"',
    "message_bad_role": "{where} has role {role!r}, which is not one of {roles}",
    "message_no_content": '{where} has no "content"',
    "message_content_parts": '{where} has content parts that are not text ({{"type": "text", "text": ...}})',
    "message_content_type": '{where} has "content" that is {kind}, not a string',
    "message_content_surrogates": f'{{where}} has "content" that {_LONE_SURROGATES}',
    "message_too_long": "{where} is {length} characters long, more than the limit of {limit}",
    "message_meta_type": '{where} has "meta" that is {kind}, not an object',
    "message_meta_surrogates": f'{{where}} has "meta" that {_LONE_SURROGATES}',
    "message_meta_invalid": '{where} has "meta" whose "{key}" is wrong ({reason})',
}


def _bad_role(value: Any) -> dict[str, Any]:
    return {"role": value, "roles": ", ".join(ROLES)}


# (where pydantic complains, its error type) -> (our code, the details its message needs from the bad value)
_PYDANTIC_PROBLEMS: dict[tuple[str, str], tuple[str, Callable[[Any], dict[str, Any]] | None]] = {
    ("format", "literal_error"): ("wrong_format", lambda value: {"found": value, "expected": EXPORT_FORMAT}),
    ("title", "string_type"): ("title_type", None),
    ("messages", "missing"): ("no_messages", None),
    ("messages", "list_type"): ("messages_type", None),
    ("messages", "too_long"): ("too_many_messages", lambda value: {"count": len(value), "limit": MAX_MESSAGES}),
    ("messages.*", "model_type"): ("message_type", None),
    ("messages.*.role", "missing"): ("message_no_role", None),
    ("messages.*.role", "literal_error"): ("message_bad_role", _bad_role),
    ("messages.*.role", "string_unicode"): ("message_bad_role", _bad_role),  # a lone surrogate
    ("messages.*.content", "missing"): ("message_no_content", None),
    ("messages.*.content", "string_type"): ("message_content_type", None),
    ("messages.*.content", "string_unicode"): ("message_content_surrogates", None),
    ("messages.*.content", "string_too_long"): ("message_too_long",
                                                lambda value: {"length": len(value), "limit": MAX_MESSAGE_CHARS}),
    ("messages.*.meta", "dict_type"): ("message_meta_type", None),
}


class _Problem(ValueError):
    """A failed check inside a validator; pydantic carries it to `_invalid_import` as a value_error."""

    def __init__(self, code: str, **details: Any):
        super().__init__(code)
        self.code, self.details = code, details


def _storable(code: str) -> AfterValidator:
    """Refuse, as `code`, text that SQLite cannot store: a lone surrogate (in a meta's keys too)."""
    def check(value: Any) -> Any:
        if not _is_utf8(value if isinstance(value, str) else _dump_meta(value)):
            raise _Problem(code)
        return value
    return AfterValidator(check)


def _null_as(empty: Any) -> BeforeValidator:
    """An explicit null reads as the empty value (pydantic copies it: a {} here is never shared)."""
    return BeforeValidator(lambda value: empty if value is None else value)


def _text_content(content: Any) -> Any:
    """OpenAI content parts: the text ones joined; images and the like refused."""
    if content is None:
        raise _Problem("message_no_content")
    if isinstance(content, list):
        if not all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
                   for p in content):
            raise _Problem("message_content_parts")
        return "".join(p["text"] for p in content)
    return content


def _true_to_message_meta(meta: dict[str, Any]) -> dict[str, Any]:
    """The keys the app reads must follow MessageMeta; the dict is kept as given."""
    problem = meta_problem(meta)
    if problem is not None:
        key, reason = problem
        raise _Problem("message_meta_invalid", key=key, reason=reason)
    return meta


class ImportMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")  # OpenAI's "name" and the like

    role: Literal[ROLES]  # type: ignore[valid-type]
    content: Annotated[str, Field(strict=True, max_length=MAX_MESSAGE_CHARS), BeforeValidator(_text_content),
                       _storable("message_content_surrogates")]
    meta: Annotated[dict[str, Any], _null_as({}), _storable("message_meta_surrogates"),
                    AfterValidator(_true_to_message_meta)] = {}


class ImportFile(BaseModel):
    """This app's export; a bare message list is read as {"messages": [...]}."""

    model_config = ConfigDict(extra="ignore")  # "id", "created_at": a new conversation gets its own

    format: Literal[EXPORT_FORMAT] = EXPORT_FORMAT  # type: ignore[valid-type]
    title: Annotated[str, Field(strict=True), _null_as(""), _storable("title_surrogates")] = ""
    messages: Annotated[list[ImportMessage], Field(max_length=MAX_MESSAGES)]


def _invalid_import(error: dict[str, Any]) -> InvalidImport:
    """Pydantic's first complaint about an import file as the InvalidImport that says it in our words."""
    loc = error["loc"]
    path = ".".join("*" if isinstance(part, int) else str(part) for part in loc)
    details: dict[str, Any] = {"number": loc[1] + 1} if len(loc) > 1 and isinstance(loc[1], int) else {}
    failed = (error.get("ctx") or {}).get("error")
    if isinstance(failed, _Problem):  # one of the validators above
        code = failed.code
        details |= failed.details
    elif (path, error["type"]) in _PYDANTIC_PROBLEMS:
        code, details_of = _PYDANTIC_PROBLEMS[(path, error["type"])]
        details |= details_of(error["input"]) if details_of else {}
    else:  # a complaint the tables do not foresee: still a clear refusal, in pydantic's words
        subject = f"message {details['number']}" if "number" in details else "it"
        return InvalidImport(f"{subject} is not valid at {path} ({error['msg']})", "invalid", **details)
    message = IMPORT_PROBLEMS[code].format(where=f"message {details.get('number')}", kind=_kind(error.get("input")),
                                           **details)
    return InvalidImport(message, code, **details)


def _is_utf8(text: str) -> bool:
    """False for strings holding lone surrogates (JSON allows "\\ud800"; SQLite cannot store them)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _open_code_fence(markdown: str) -> bool:
    return sum(1 for line in markdown.splitlines() if line.lstrip().startswith("```")) % 2 == 1


def _kind(value: Any) -> str:
    """'a number', 'a list', ... for error messages about JSON values."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"
