"""Session state that must outlive a rerun or a page switch, kept in one place.

Streamlit deletes a widget's state on any run that does not draw it (a page switch, a run stopped
early), so every value the user chose is copied into our own dict under `KEEP`, and each widget is
drawn with that value as its own default (`value=`, see `initial`). Not by writing st.session_state
before drawing it: a widget seeded that way goes to the browser with its real default, and a browser
that mounts it from a message it had not finished applying (a page link clicked during that run) shows
that default and reports it back as the user's change; the think switch turned itself off that way.

The conversation on screen lives in the URL (`?c=<id>`), and so does a chosen interface language
(`?lang=`), so a reload or a new tab shows them again; `st.session_state` alone would lose them.

Generation settings are read from `GenerationParams` (which fields get a slider, and where; ranges,
steps, defaults, help text), never restated here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import streamlit as st

from minicpm_core.params import MODEL_CONTEXT, GenerationParams

KEEP = "_keep"  # {widget key: value} that survives page switches
FLASH = "_flash"  # notices to show once on the next run: [(kind, text)]
PENDING_REPLY = "_pending_reply"  # (conversation id, question id): a question that awaits a (new) reply
STREAMING_REPLY = "_streaming_reply"  # the reply a run of this session is streaming (ui.streaming.StreamingReply)
CURRENT_CONVERSATION = "_conversation"  # mirror of ?c=, for when a page switch drops the query string
CONVERSATION_PARAM = "c"
LANGUAGE_PARAM = "lang"

MAIN_SLIDERS = GenerationParams.fields_where("control", "slider")
ADVANCED_SLIDERS = GenerationParams.fields_where("control", "advanced")  # drawn in an expander
SLIDER_PARAMS = MAIN_SLIDERS + ADVANCED_SLIDERS
B_PREFIX = "b_"  # the compare page's second parameter set
MODEL_DEFAULTS = "_model_defaults"  # the loaded model's {"for": id, "values": {field: default}, "high": {field: max}}


@dataclass(frozen=True)
class SliderSpec:
    name: str
    low: float | int
    high: float | int
    step: float | int
    default: float | int


def slider_spec(name: str) -> SliderSpec:
    """Range and default from the schema; an exclusive bound (top_p > 0) becomes one step inside.
    A token count goes up to the loaded model's context, the default family's while none is known."""
    field = GenerationParams.model_fields[name]
    step = GenerationParams.carried(name, "step")
    model = model_defaults()
    low, high = GenerationParams.field_range(name, None if model else MODEL_CONTEXT)
    if low is None or high is None:
        raise ValueError(f"{name} has no range for a slider")  # every field with a slider has both bounds
    if any(getattr(rule, "gt", None) is not None for rule in field.metadata):
        low = low + step
    if any(getattr(rule, "lt", None) is not None for rule in field.metadata):
        high = high - step
    cast = int if isinstance(step, int) else float
    high = min(high, model.get("high", {}).get(name, high))  # e.g. max_length up to the model's context
    default = min(high, model.get("values", {}).get(name, field.default))
    return SliderSpec(name, cast(low), cast(high), step, cast(default))


def model_defaults() -> dict[str, Any]:
    """The loaded model family's defaults and ranges (see use_model_defaults); {} outside a session."""
    try:
        return st.session_state.get(MODEL_DEFAULTS) or {}
    except Exception:  # no Streamlit session (a plain function call in a test): the schema's
        return {}


def use_model_defaults(model: str, values: dict[str, Any], high: dict[str, Any]) -> None:
    """Make `values` the sliders' defaults and `high` their upper ends, for the model `model` names.
    On the first run with a new model, a slider still at the old default moves to the new one and one
    above its new end comes down to it; a value the user chose stays. Call before the sliders are drawn."""
    if model_defaults().get("for") == model:
        return
    old = {name: slider_spec(name).default for name in SLIDER_PARAMS}
    st.session_state[MODEL_DEFAULTS] = {"for": model, "values": dict(values), "high": dict(high)}
    for name in SLIDER_PARAMS:
        spec = slider_spec(name)
        for key in (name, B_PREFIX + name):
            if key not in kept():
                continue  # seeded from the new default when drawn
            if kept()[key] == old[name] and spec.default != old[name]:
                put(key, spec.default)
            elif kept()[key] > spec.high:
                put(key, spec.high)


def default_settings() -> dict[str, Any]:
    """The sidebar's values when nothing was chosen: schema defaults, no seed, no system prompt."""
    values: dict[str, Any] = {name: slider_spec(name).default for name in SLIDER_PARAMS}
    values.update(seed=None, system_prompt="")
    return values


THINKING_KEY = "enable_thinking"  # the sidebar's switch on a family that thinks
THINKING_CHOSEN = "_thinking_chosen"  # set once the user flips it: until then the template decides


def enable_thinking(default: bool | None) -> bool | None:
    """What to pass the model as enable_thinking: the switch once the user flipped it, else `default`
    (the checkpoint's own, None: the model decides)."""
    return get(THINKING_KEY) if get(THINKING_CHOSEN) else default


def params_from(values: dict[str, Any]) -> GenerationParams:
    """GenerationParams from sidebar-style values (extra keys such as system_prompt are ignored)."""
    chosen = {name: values.get(name) for name in (*SLIDER_PARAMS, "seed")}
    if chosen["seed"] is not None:
        chosen["seed"] = int(chosen["seed"])
    return GenerationParams.parse(chosen)


# --- values that survive page switches ------------------------------------------------------------

def kept() -> dict[str, Any]:
    return st.session_state.setdefault(KEEP, {})


def initial(key: str, default: Any, low: Any = None, high: Any = None) -> Any:
    """The `value=` (or `default=`) to draw widget `key` with: its value now (the browser's, or what it
    showed last), else `default`. A slider's is brought within its range: Streamlit makes a slider whose
    range changed (a model with another context was switched to) a new widget, which starts at this."""
    value = st.session_state[key] if key in st.session_state else kept().setdefault(key, default)
    if low is not None and high is not None:
        value = min(max(value, low), high)
    return value


def keep(key: str, value: Any) -> Any:
    """After drawing a widget: remember what it returned."""
    kept()[key] = value
    return value


def put(key: str, value: Any) -> None:
    """Set a widget's value from a callback (presets, reset): both the widget and the kept copy."""
    kept()[key] = value
    st.session_state[key] = value


def get(key: str, default: Any = None) -> Any:
    return kept().get(key, default)


def initial_from_url(key: str, param: str, choices: tuple[str, ...], default: str) -> str:
    """`initial` for a choice that also lives in the URL (`?param=`): a new session (a reload, a new
    tab) starts from the URL's value if it is one of `choices`."""
    from_url = st.query_params.get(param)
    if key not in kept() and from_url in choices:
        kept()[key] = from_url
    return initial(key, default)


def keep_in_url(key: str, param: str, value: str, default: str) -> str:
    """`keep`, and mirror the value in the URL; the default is no parameter at all. Called on every
    run, so a page switch (which drops the query string) gets it back."""
    keep(key, value)
    if value == default:
        st.query_params.pop(param, None)
    elif st.query_params.get(param) != value:
        st.query_params[param] = value
    return value


def settings(prefix: str = "") -> dict[str, Any]:
    """The sidebar's values (prefix "") or the compare page's B set (prefix "b_"): B has its own
    sliders and shares the sidebar's seed and system prompt."""
    defaults = default_settings()
    values = {name: get(prefix + name, defaults[name]) for name in SLIDER_PARAMS}
    values.update(seed=get("seed"), system_prompt=get("system_prompt", ""))
    return values


# --- the conversation on screen -------------------------------------------------------------------

def current_conversation_id() -> str | None:
    """?c= from the URL; if a page switch dropped it, the id this session last showed."""
    from_url = st.query_params.get(CONVERSATION_PARAM)
    if from_url:
        st.session_state[CURRENT_CONVERSATION] = from_url
        return from_url
    remembered = st.session_state.get(CURRENT_CONVERSATION)
    if remembered:
        st.query_params[CONVERSATION_PARAM] = remembered
    return remembered


def set_conversation(conv_id: str | None) -> None:
    if conv_id:
        st.query_params[CONVERSATION_PARAM] = conv_id
        st.session_state[CURRENT_CONVERSATION] = conv_id
    else:
        st.query_params.pop(CONVERSATION_PARAM, None)
        st.session_state.pop(CURRENT_CONVERSATION, None)


# A long conversation draws only its newest messages: RECENT_MESSAGES at first, as many more with each
# "show earlier" (ui.chat), or enough to reach a search hit (ui.search).
RECENT_MESSAGES = 20
SHOWN_COUNTS = "_shown_counts"  # {conversation id: how many of its newest messages are drawn}


def shown_count(conv_id: str) -> int:
    return st.session_state.get(SHOWN_COUNTS, {}).get(conv_id, RECENT_MESSAGES)


def show_at_least(conv_id: str, count: int) -> None:
    st.session_state.setdefault(SHOWN_COUNTS, {})[conv_id] = max(shown_count(conv_id), count)


# --- one-shot notices ------------------------------------------------------------------------------

def flash(kind: str, text: str) -> None:
    """Queue a notice ("error", "warning", "success", "info") for the next run, e.g. from a callback."""
    st.session_state.setdefault(FLASH, []).append((kind, text))


def take_flashes() -> list[tuple[str, str]]:
    return st.session_state.pop(FLASH, [])
