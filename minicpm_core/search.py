"""Full-text search over every stored message, Chinese included: an SQLite FTS5 index kept by triggers.

The index is an FTS5 table with the trigram tokenizer over `messages.content` (external content: the
text is stored once, in `messages`). Trigrams need no word boundaries, so a query in Chinese, which has
no spaces, matches like one in English: any substring of three characters or more, case-insensitively.

- `ensure_index(conn)`: creates the table and the triggers that keep it in step with every insert,
  update and delete of a message (deleting a conversation cascades to its messages, and so through
  the triggers); rebuilds the index from `messages` when it or a trigger was missing, which indexes a
  database written before search existed. Called by the store on every open, inside its migration
  transaction, after the schema migrations: a migration that rebuilds `messages` drops our triggers,
  and the next open puts them back and reindexes. An SQLite built without FTS5 or its trigram
  tokenizer gets no index: every word is then looked for with the bounded LIKE scan below.
- `search(conn, query, owner)`: the newest matching messages of one owner's conversations, each with
  its conversation's title and a snippet around the match.

Any text is a valid query: it is never passed to FTS5 as query syntax (each term becomes a quoted
string), so `"`, `AND(`, `*` or `NEAR` are searched for as typed. Queries and results are bounded
(MAX_QUERY_CHARS, MAX_TERMS, MAX_RESULTS).

It deliberately does not know about conversation branches or what the page shows: a hit is a stored
message, found by its text.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from .errors import InvalidRequest

INDEX_TABLE = "messages_fts"
TRIGGERS = ("messages_fts_insert", "messages_fts_delete", "messages_fts_update")
TRIGRAM = 3  # the tokenizer's unit: FTS5 can only look up terms at least this long

MAX_QUERY_CHARS = 200
MAX_TERMS = 8
MAX_RESULTS = 50
DEFAULT_RESULTS = 20
SNIPPET_CHARS = 40  # shown on each side of the match
# A query whose terms are all shorter than a trigram (一个字 or 两个字, very common in Chinese: "猫",
# "天气") cannot use the index: it is a LIKE scan, over the newest SHORT_QUERY_SCAN messages only, so
# its cost stays bounded however large the database grows.
SHORT_QUERY_SCAN = 20_000

_SCHEMA = [
    (f"CREATE VIRTUAL TABLE {INDEX_TABLE} USING fts5("
     "content, content='messages', content_rowid='seq', tokenize='trigram')"),
    (f"CREATE TRIGGER {TRIGGERS[0]} AFTER INSERT ON messages BEGIN "
     f"INSERT INTO {INDEX_TABLE} (rowid, content) VALUES (new.seq, new.content); END"),
    (f"CREATE TRIGGER {TRIGGERS[1]} AFTER DELETE ON messages BEGIN "
     f"INSERT INTO {INDEX_TABLE} ({INDEX_TABLE}, rowid, content) VALUES ('delete', old.seq, old.content); END"),
    (f"CREATE TRIGGER {TRIGGERS[2]} AFTER UPDATE OF content ON messages BEGIN "
     f"INSERT INTO {INDEX_TABLE} ({INDEX_TABLE}, rowid, content) VALUES ('delete', old.seq, old.content); "
     f"INSERT INTO {INDEX_TABLE} (rowid, content) VALUES (new.seq, new.content); END"),
]


@dataclass(frozen=True)
class SearchHit:
    conversation_id: str
    title: str
    message_id: str
    role: str
    created_at: str  # the message's, UTC ISO 8601
    before: str  # the snippet: text before the match, the match, the text after (plain text, one line)
    match: str
    after: str


SearchHits = list[SearchHit]  # what search() returns (a name: ConversationStore's own `list` hides the builtin)


def ensure_index(conn: sqlite3.Connection) -> None:
    """Create the index and its triggers where missing; rebuild the index if anything was missing.
    Run inside the caller's write transaction."""
    existing = {row[0] for row in conn.execute(
        "SELECT name FROM sqlite_master WHERE name IN ({})".format(",".join("?" * (1 + len(TRIGGERS)))),
        (INDEX_TABLE, *TRIGGERS),
    )}
    if existing == {INDEX_TABLE, *TRIGGERS}:
        return
    for name in TRIGGERS:
        conn.execute(f"DROP TRIGGER IF EXISTS {name}")
    conn.execute(f"DROP TABLE IF EXISTS {INDEX_TABLE}")
    try:
        conn.execute(_SCHEMA[0])
    except sqlite3.OperationalError:  # an SQLite without FTS5 or its trigram tokenizer (< 3.34): no index
        return
    for statement in _SCHEMA[1:]:
        conn.execute(statement)
    conn.execute(f"INSERT INTO {INDEX_TABLE} ({INDEX_TABLE}) VALUES ('rebuild')")  # index every stored message


def has_index(conn: sqlite3.Connection) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (INDEX_TABLE,)).fetchone() is not None


def query_terms(query: str) -> list[str]:
    """The words of a query (split at whitespace, control characters dropped, duplicates removed);
    InvalidRequest if it is longer than MAX_QUERY_CHARS or has more than MAX_TERMS words."""
    if len(query) > MAX_QUERY_CHARS:
        raise InvalidRequest(f"A search is at most {MAX_QUERY_CHARS} characters; this one has {len(query)}. "
                             "Search for a shorter part of the text.", param="query", code="query_too_long",
                             limit=MAX_QUERY_CHARS, length=len(query))
    cleaned = "".join(char if char.isprintable() else " " for char in query)
    terms = list(dict.fromkeys(cleaned.split()))
    if len(terms) > MAX_TERMS:
        raise InvalidRequest(f"A search has at most {MAX_TERMS} words; this one has {len(terms)}.",
                             param="query", code="query_too_many_terms", limit=MAX_TERMS, count=len(terms))
    return terms


def fts_phrase(term: str) -> str:
    """`term` as an FTS5 string: in double quotes, its own quotes doubled, so no character is syntax."""
    return '"' + term.replace('"', '""') + '"'


def like_pattern(term: str) -> str:
    """`term` as a LIKE pattern matching it anywhere (with ESCAPE '\\'): %, _ and \\ stand for themselves."""
    return "%" + term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def search(conn: sqlite3.Connection, query: str, owner: str = "", limit: int = DEFAULT_RESULTS) -> SearchHits:
    """The newest messages of `owner`'s conversations holding every word of `query`, at most `limit`
    (≤ MAX_RESULTS). Words of three characters or more are looked up in the index; shorter ones are
    checked with LIKE among those (or, if no word is that long, among the newest SHORT_QUERY_SCAN messages)."""
    terms = query_terms(query)
    if not terms:
        return []
    limit = max(0, min(int(limit), MAX_RESULTS))
    indexed = has_index(conn)
    long_terms = [term for term in terms if len(term) >= TRIGRAM and indexed]
    short_terms = [term for term in terms if term not in long_terms]
    likes = "".join(" AND m.content LIKE ? ESCAPE '\\'" for _ in short_terms)
    patterns = [like_pattern(term) for term in short_terms]
    if long_terms:
        rows = conn.execute(
            "SELECT m.id, m.role, m.content, m.created_at, c.id AS conversation_id, c.title "
            f"FROM {INDEX_TABLE} f JOIN messages m ON m.seq = f.rowid "
            "JOIN conversations c ON c.id = m.conversation_id "
            f"WHERE {INDEX_TABLE} MATCH ? AND c.owner = ?{likes} ORDER BY f.rowid DESC LIMIT ?",  # rowid = seq
            (" ".join(fts_phrase(term) for term in long_terms), owner, *patterns, limit),
        ).fetchall()
    else:
        rows = conn.execute(
            "SELECT m.id, m.role, m.content, m.created_at, c.id AS conversation_id, c.title "
            "FROM (SELECT * FROM messages ORDER BY seq DESC LIMIT ?) m "
            "JOIN conversations c ON c.id = m.conversation_id "
            f"WHERE c.owner = ?{likes} ORDER BY m.seq DESC LIMIT ?",
            (SHORT_QUERY_SCAN, owner, *patterns, limit),
        ).fetchall()
    anchor = max(terms, key=len)  # the snippet shows the longest word's first match
    return [SearchHit(row[4], row[5], row[0], row[1], row[3], *snippet(row[2], anchor)) for row in rows]


def snippet(content: str, term: str, width: int = SNIPPET_CHARS) -> tuple[str, str, str]:
    """(before, match, after): the first case-insensitive occurrence of `term` in `content` with up to
    `width` characters of context on each side, on one line, with … where text was cut."""
    at = content.casefold().find(term.casefold())
    if at < 0 or len(content.casefold()) != len(content):  # folding changed lengths (ß): no exact position
        at, length = 0, 0
    else:
        length = len(term)
    start, end = max(0, at - width), min(len(content), at + length + width)
    before = ("…" if start > 0 else "") + content[start:at]
    after = content[at + length:end] + ("…" if end < len(content) else "")
    return _one_line(before), _one_line(content[at:at + length]), _one_line(after)


def _one_line(text: str) -> str:
    collapsed = " ".join(text.split())
    # keep a space that joined the match to its context
    if text[:1].isspace():
        collapsed = " " + collapsed
    if text[-1:].isspace() and collapsed.strip():
        collapsed += " "
    return collapsed
