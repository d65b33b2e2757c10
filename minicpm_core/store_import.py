"""What a conversation file may hold, checked before anything is stored.

`parse_import` reads this app's JSON export or a bare OpenAI-style message list and checks every
field against the named limits below (declared as the pydantic models ImportFile and ImportMessage),
so a bad file is refused with an `InvalidImport` that says what is wrong and what a valid file looks
like. It does not touch the database: ConversationStore.import_json stores what this returns.

Two formats are read. "minicpm-chat/v2" (the export since alternatives are kept) carries every branch:
each message has an "id" and a "parent" (the id of an earlier message, null for a first one) and
whether it is "shown" among its siblings. "minicpm-chat/v1" files and bare lists are one line of
messages, each following the one before it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from .errors import InvalidRequest
from .message_meta import meta_problem
from .prompt import MAX_MESSAGES  # a stored conversation is one the model can be asked to continue

ROLES = ("user", "assistant", "system")
EXPORT_FORMAT = "minicpm-chat/v2"
LINEAR_FORMAT = "minicpm-chat/v1"  # the export before branches: still read
MAX_MESSAGE_ID = 64  # a message id in a v2 file (ours are 11 characters)
MAX_IMPORT_BYTES = 5 * 1024 * 1024
MAX_MESSAGE_CHARS = 200_000

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


@dataclass(frozen=True)
class ImportedMessage:
    role: str
    content: str
    meta: dict[str, Any]
    parent: int | None  # the index of its parent in the file's list; None for a first message
    shown: bool = False  # marked as the shown version among its siblings


def parse_import(text: str | bytes) -> tuple[str, list[ImportedMessage]]:
    """(title, messages in file order, each after its parent) from an import file; InvalidImport naming
    the first problem."""
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
    if imported.format == LINEAR_FORMAT:  # one line of messages; any "id" or "parent" is not ours
        return imported.title, [ImportedMessage(m.role, m.content, m.meta, index - 1 if index else None)
                                for index, m in enumerate(imported.messages)]
    return imported.title, _tree(imported.messages)


def _tree(messages: list[ImportMessage]) -> list[ImportedMessage]:
    """A v2 file's messages with each parent's id resolved to its place in the file. A message without
    a "parent" follows the one before it, as in a v1 file."""
    places: dict[str, int] = {}
    tree = []
    for index, message in enumerate(messages):
        where = f"message {index + 1}"
        if "parent" not in message.model_fields_set:
            parent = index - 1 if index else None
        elif message.parent is None:
            parent = None
        elif message.parent in places:
            parent = places[message.parent]
        else:
            raise InvalidImport(IMPORT_PROBLEMS["message_bad_parent"].format(where=where, parent=message.parent),
                                "message_bad_parent", number=index + 1, parent=message.parent)
        if message.id is not None:
            if message.id in places:
                raise InvalidImport(IMPORT_PROBLEMS["message_duplicate_id"].format(where=where, id=message.id),
                                    "message_duplicate_id", number=index + 1, id=message.id)
            places[message.id] = index
        tree.append(ImportedMessage(message.role, message.content, message.meta, parent, bool(message.shown)))
    return tree


# --- what an import file may hold -------------------------------------------------------------------
# Declared as pydantic models. A failed check is a problem code: the validators below raise theirs (_Problem),
# _PYDANTIC_PROBLEMS names pydantic's own complaints (a wrong type, a missing key, a limit passed) by
# where they are, and IMPORT_PROBLEMS words each code. Pydantic reports fields in declaration order
# and messages in file order; the first problem is the one the user is told.

IMPORT_PROBLEMS = {  # code -> what is wrong; {where} is "message N", {kind} the kind of the bad value
    "wrong_format": 'its "format" is {found!r}; this app reads {expected!r} (and the older {older!r})',
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
    # a v2 file's branches
    "message_duplicate_id": '{where} has the "id" {id!r}, which an earlier message already has',
    "message_bad_parent": '{where} has the "parent" {parent!r}, which is not the "id" of an earlier message',
}


def _bad_role(value: Any) -> dict[str, Any]:
    return {"role": value, "roles": ", ".join(ROLES)}


# (where pydantic complains, its error type) -> (our code, the details its message needs from the bad value)
_PYDANTIC_PROBLEMS: dict[tuple[str, str], tuple[str, Callable[[Any], dict[str, Any]] | None]] = {
    ("format", "literal_error"): ("wrong_format", lambda value: {"found": value, "expected": EXPORT_FORMAT,
                                                                 "older": LINEAR_FORMAT}),
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
        if not _is_utf8(value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)):
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
    # v2: where the message sits in the tree (read in a "minicpm-chat/v2" file only)
    id: Annotated[str, Field(strict=True, max_length=MAX_MESSAGE_ID)] | None = None
    parent: Annotated[str, Field(strict=True, max_length=MAX_MESSAGE_ID)] | None = None
    shown: Annotated[bool, Field(strict=True)] | None = None


class ImportFile(BaseModel):
    """This app's export; a bare message list is read as {"messages": [...]}."""

    model_config = ConfigDict(extra="ignore")  # "id", "created_at": a new conversation gets its own

    format: Literal[EXPORT_FORMAT, LINEAR_FORMAT] = LINEAR_FORMAT  # type: ignore[valid-type]
    title: Annotated[str, Field(strict=True), _null_as(""), _storable("title_surrogates")] = ""
    messages: Annotated[list[ImportMessage], Field(max_length=MAX_MESSAGES)]


def _invalid_import(error: Mapping[str, Any]) -> InvalidImport:
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
