"""A message's meta: the keys the app reads from it follow one schema, `MessageMeta`.

An import whose meta breaks the schema is refused (store_import); a stored meta that breaks it (an old or
hand-edited database) reads back without the bad keys (`readable_meta`), so a page never meets a count
that is not a number. Other keys are kept as they are.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .stats import FINISH_REASONS

MAX_MODEL_NAME = 300  # a model's name in meta: an id or a folder name, far below this
MAX_META_COUNT = 10**9  # token counts in meta: far above any context, far below SQLite's integer limit

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
    # a model switch cut the reply: the model switched to
    stopped_for: str | None = Field(default=None, strict=True, max_length=MAX_MODEL_NAME)
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
