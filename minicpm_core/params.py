"""Generation parameters: defined once, used by the engine, the HTTP API and the sidebar.

Each field carries its default, its allowed range and its help text, so validation, the API's
error messages and the sliders' limits can never disagree. Defaults are the seed tutorial's
(temperature 0.5, top_p 0.8, repetition_penalty 1.02); `max_length` counts prompt + reply tokens,
as in the model's own `chat()`.

Each field's `json_schema_extra` says how the front ends carry it, so none of them lists the fields:
- `wire`: "standard" when OpenAI's chat completions has the field (under `OPENAI_NAMES`' name where
  that differs), "extra" for an extra body field under our own name (vLLM's way);
- `honoured_by`: for an extra, the other servers (by their /v1/models `owned_by`) known to honour it;
- `send_default`: False when the default means "off", which every server assumes unsent;
- `control`: where the sidebar shows it ("slider", "advanced" for the expander, or none), with `step`;
- `up_to_context`: True for a token count, which the loaded model's context bounds.

The schema's own bound on a token count is the longest context of any family (`MAX_CONTEXT`), so one
schema serves every model; the loaded family's context is checked where it is known:
`parse(..., context=N)` or `fit(N)`, with the same message as the schema's, naming the family's bound.
The presets come from the loaded family (`ModelFamily.presets`); `PRESETS` are the default family's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import InvalidRequest
from .families import DEFAULT_FAMILY, FAMILIES

MODEL_CONTEXT = DEFAULT_FAMILY.context_length  # the default family's (MiniCPM-2B's) context
MAX_CONTEXT = max(family.context_length for family in FAMILIES)  # the schema's bound on a token count
MIN_MAX_LENGTH = 16
OPENAI_NAMES = {"max_new_tokens": "max_tokens"}  # the one rename map: our field name -> OpenAI's
SERVERS_WITH_SAMPLING_EXTRAS = ("vllm", "sglang")  # owned_by of servers whose requests take top_k & co.


class GenerationParams(BaseModel):
    """Sampling and length settings for one reply. `temperature == 0` means greedy decoding."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    temperature: float = Field(
        0.5, ge=0.0, le=2.0,
        description="Randomness. 0 always picks the most likely token; higher values give more varied, "
        "less focused replies.",
        json_schema_extra={"wire": "standard", "control": "slider", "step": 0.05},
    )
    top_p: float = Field(
        0.8, gt=0.0, le=1.0,
        description="Nucleus sampling: sample only among the most likely tokens whose probabilities add "
        "up to top_p. Lower is more focused.",
        json_schema_extra={"wire": "standard", "control": "slider", "step": 0.05},
    )
    top_k: int = Field(
        0, ge=0, le=1000,
        description="Sample only among the k most likely tokens; 0 turns the limit off.",
        json_schema_extra={"wire": "extra", "honoured_by": list(SERVERS_WITH_SAMPLING_EXTRAS), "send_default": False},
    )
    min_p: float = Field(
        0.0, ge=0.0, le=1.0,
        description="Keep only tokens whose probability is at least min_p times the most likely token's; "
        "0 turns it off, 1 leaves only the most likely token.",
        json_schema_extra={"wire": "extra", "honoured_by": list(SERVERS_WITH_SAMPLING_EXTRAS), "send_default": False,
                           "control": "advanced", "step": 0.01},
    )
    repetition_penalty: float = Field(
        1.02, ge=1.0, le=2.0,
        description="Discourages repeating tokens already in the conversation. 1.0 is off; MiniCPM-2B "
        "answers suffer above about 1.1.",
        json_schema_extra={"wire": "extra", "honoured_by": list(SERVERS_WITH_SAMPLING_EXTRAS), "control": "slider",
                           "step": 0.01},
    )
    max_length: int = Field(
        MODEL_CONTEXT, ge=MIN_MAX_LENGTH, le=MAX_CONTEXT,
        description="Token budget for prompt plus reply, as in the model's chat(). Old turns are dropped "
        "when the conversation no longer fits.",
        json_schema_extra={"wire": "extra", "send_default": False, "control": "slider", "step": MIN_MAX_LENGTH,
                           "up_to_context": True},
    )
    max_new_tokens: int | None = Field(
        None, ge=1, le=MAX_CONTEXT,
        description="Optional cap on the reply's length in tokens.",
        json_schema_extra={"wire": "standard", "up_to_context": True},
    )
    seed: int | None = Field(
        None, ge=0, le=2**32 - 1,
        description="Random seed: the same seed, question and settings give the same reply.",
        json_schema_extra={"wire": "standard"},
    )

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    @classmethod
    def parse(cls, values: dict[str, Any] | None = None, *, shown_as: Mapping[str, str] | None = None,
              defaults: Mapping[str, Any] | None = None, context: int | None = None,
              **overrides: Any) -> GenerationParams:
        """Validate user input; raise InvalidRequest naming the field and its allowed range.

        `shown_as` renames fields in that message to the name the caller sent (OpenAI's `max_tokens`).
        `defaults` (a family's recommended values) stand in for fields the input leaves unset (None).
        `context` (the loaded family's) bounds the token counts; None: only the schema's MAX_CONTEXT."""
        data = {**(values or {}), **overrides}
        data = {**(defaults or {}), **{k: v for k, v in data.items() if v is not None}}
        try:
            params = cls.model_validate(data)
        except ValidationError as exc:
            raise invalid_request_from(exc, shown_as or {}, context) from None
        return params if context is None else params.fit(context, shown_as)

    def fit(self, context: int, shown_as: Mapping[str, str] | None = None) -> GenerationParams:
        """These parameters, if every token count fits a model whose context is `context`; else
        InvalidRequest, worded as the schema's own range errors."""
        for name in self.context_fields():
            value = getattr(self, name)
            if value is not None and value > context:
                shown = (shown_as or {}).get(name, name)
                raise InvalidRequest(f"{describe_range(name, shown, context)}; got {value!r}.", param=shown)
        return self

    @classmethod
    def context_fields(cls) -> tuple[str, ...]:
        """The token counts, which a model's context bounds."""
        return cls.fields_where("up_to_context", True)

    @classmethod
    def field_range(cls, name: str, context: int | None = None) -> tuple[float | None, float | None]:
        """(lowest, highest) allowed for a field, for sliders and messages; a token count's highest is
        at most `context` (a model's) where one is given."""
        low = high = None
        for rule in cls.model_fields[name].metadata:
            low = getattr(rule, "ge", getattr(rule, "gt", low))
            high = getattr(rule, "le", getattr(rule, "lt", high))
        if context is not None and cls.carried(name, "up_to_context"):
            high = context if high is None else min(high, context)
        return low, high

    @classmethod
    def help(cls, name: str) -> str:
        return cls.model_fields[name].description or ""

    @classmethod
    def carried(cls, name: str, key: str, default: Any = None) -> Any:
        """One of a field's carrying rules (see the module docstring), e.g. carried("top_k", "wire")."""
        extra = cls.model_fields[name].json_schema_extra
        return extra.get(key, default) if isinstance(extra, dict) else default

    @classmethod
    def fields_where(cls, key: str, *values: Any) -> tuple[str, ...]:
        """The fields whose rule `key` is one of `values`, in the schema's order."""
        return tuple(name for name in cls.model_fields if cls.carried(name, key) in values)


PRESETS: dict[str, dict[str, float]] = DEFAULT_FAMILY.presets()  # MiniCPM-2B's: precise, balanced, creative


def matching_preset(values: dict[str, float], presets: Mapping[str, Mapping[str, float]] | None = None) -> str | None:
    """The preset (of `presets`, else PRESETS) whose every value equals the one in `values` (to float
    precision), else None."""
    for name, preset in (PRESETS if presets is None else presets).items():
        if all(math.isclose(values.get(field, math.nan), value) for field, value in preset.items()):
            return name
    return None

def openai_name(name: str) -> str:
    """A field's name in OpenAI's chat completions (and as an extra body field)."""
    return OPENAI_NAMES.get(name, name)


def describe_range(name: str, shown: str | None = None, context: int | None = None) -> str:
    low, high = GenerationParams.field_range(name, context)
    return f"{shown or name} must be between {low} and {high}"


def invalid_request_from(exc: ValidationError, shown_as: Mapping[str, str] | None = None,
                         context: int | None = None) -> InvalidRequest:
    """Turn pydantic's first error into one sentence that names the field (as `shown_as` the caller
    called it) and what it accepts (a token count: up to `context`, the model's, where given)."""
    shown_as = shown_as or {}
    err = exc.errors()[0]
    field = err["loc"][0] if err["loc"] else None
    name = ".".join(str(shown_as.get(p, p) if isinstance(p, str) else p) for p in err["loc"]) or "request"
    if err["type"] == "extra_forbidden":
        allowed = ", ".join(GenerationParams.model_fields)
        return InvalidRequest(f"Unknown parameter '{name}'. Allowed: {allowed}.", param=name)
    if field in GenerationParams.model_fields and err["type"].startswith(("greater", "less")):
        return InvalidRequest(f"{describe_range(field, name, context)}; got {err.get('input')!r}.", param=name)
    return InvalidRequest(f"Invalid value for '{name}': {err['msg']} (got {err.get('input')!r}).", param=name)
