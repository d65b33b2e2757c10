"""The sidebar every page shares: language, conversations (new, search, switch, rename, delete,
export, import; listed under date headings) and the generation settings (sliders from the
GenerationParams schema, presets, seed, system prompt, reset).

It is drawn by the entrypoint on every run, before the page. Values the user picks are kept under
our own session keys (`ui.state`), so they survive page switches and language changes.
"""

from __future__ import annotations

import math
import re
from datetime import date, datetime

import streamlit as st

from minicpm_core.errors import MiniCPMError
from minicpm_core.params import MODEL_CONTEXT, PRESETS, matching_preset
from minicpm_core.store import MAX_IMPORT_BYTES, ConversationStore
from ui import search, state
from ui.backend import active_backend, identity, kv_budget_of, thinking_default
from ui.i18n import LANGUAGE_KEY, LANGUAGES, has, t
from ui.markdown_safe import plain_text
from ui.notices import error_text

CONVERSATIONS_SHOWN = 50  # listed at first, and added by each "show more"
CONVERSATION_LIST_HEIGHT = 280  # px; longer lists scroll
SHOWN_KEY = "_conversations_shown"


def language_switch() -> None:
    """Auto (the browser's language), 中文 or English. Drawn first: every later label depends on it.
    A choice other than Auto is kept in the URL, so a reload keeps it."""
    chosen = state.initial_from_url(LANGUAGE_KEY, state.LANGUAGE_PARAM, LANGUAGES, "auto")
    names = {"auto": t("language_auto"), "zh": "中文", "en": "English"}
    with st.sidebar:
        choice = st.segmented_control(t("language"), LANGUAGES, format_func=names.__getitem__, default=chosen,
                                      key=LANGUAGE_KEY, required=True)
    state.keep_in_url(LANGUAGE_KEY, state.LANGUAGE_PARAM, choice or "auto", "auto")


def render_sidebar(store: ConversationStore) -> None:
    take_model_defaults()
    with st.sidebar:
        conversations(store)
        st.divider()
        settings()


# --- conversations ---------------------------------------------------------------------------------

def conversations(store: ConversationStore) -> None:
    st.subheader(t("conversations"))
    current = store.get(state.current_conversation_id() or "")
    st.button(t("new_conversation"), key="new_conversation", icon=":material/add:", width="stretch",
              on_click=open_conversation, args=(None,))
    search.search_box(store)
    conversation_list(store, current.id if current is not None else None)
    if current is not None:
        manage_current(store, current)
    st.file_uploader(t("import_json"), type=["json"], key="import_file", help=t("import_help"),
                     max_upload_size=math.ceil(MAX_IMPORT_BYTES / 2**20), on_change=import_uploaded, args=(store,))


def conversation_list(store: ConversationStore, current_id: str | None) -> None:
    """The newest conversations under date headings, in a scrolling box of fixed height; "show more"
    lists CONVERSATIONS_SHOWN more (older ones can also be found with the search box)."""
    shown = state.get(SHOWN_KEY, CONVERSATIONS_SHOWN)
    listed = store.list(search.OWNER, limit=shown + 1)  # one more: is there anything left to show?
    more, listed = len(listed) > shown, listed[:shown]
    if not listed:
        return
    zone = search.browser_timezone()
    today = datetime.now(zone).date()
    with st.container(height=CONVERSATION_LIST_HEIGHT if len(listed) > 6 else "content",
                      key="conversation_list", border=False):
        group = None
        for summary in listed:
            moment = search.local_time(summary.updated_at, zone)
            if (group_now := date_group(moment.date() if moment else None, today)) != group:
                group = group_now
                st.caption(t(f"group_{group}"))
            st.button(plain_text(summary.title) or t("untitled"), key=f"conv_{summary.id}", width="stretch",
                      type="secondary" if summary.id == current_id else "tertiary", on_click=open_conversation,
                      args=(summary.id,))
        if more:
            st.button(t("show_more_conversations"), key="show_more_conversations", type="tertiary",
                      icon=":material/expand_more:", on_click=state.keep,
                      args=(SHOWN_KEY, shown + CONVERSATIONS_SHOWN))


def date_group(day: date | None, today: date) -> str:
    """Which heading a conversation last updated on `day` goes under: today, yesterday, week (the
    previous 7 days) or older (also a date that cannot be read)."""
    if day is None:
        return "older"
    age = (today - day).days
    if age <= 0:  # a clock ahead of this one: still the newest
        return "today"
    if age == 1:
        return "yesterday"
    return "week" if age <= 7 else "older"


def open_conversation(conv_id: str | None) -> None:
    """A list entry's (or "new conversation"'s) click: no jump to a found message there."""
    search.forget_target()
    state.set_conversation(conv_id)


def manage_current(store: ConversationStore, conversation) -> None:
    left, right = st.columns(2)
    with left.popover(t("rename"), icon=":material/edit:", key="rename_popover", width="stretch"):
        # one widget per conversation, starting at its title (state.py: why not seeded through session_state)
        st.text_input(t("title"), value=conversation.title, key=rename_key(conversation.id), max_chars=200)
        st.button(t("save"), key="rename_save", type="primary",
                  on_click=_rename, args=(store, conversation.id))
    with right.popover(t("delete"), icon=":material/delete:", key="delete_popover", width="stretch"):
        st.caption(t("delete_warning"))
        st.button(t("delete_confirm"), key="delete_conversation", type="primary",
                  on_click=_delete, args=(store, conversation.id))
    stem = _file_stem(conversation.title) or conversation.id
    st.download_button(t("export_markdown"), store.export_markdown(conversation.id), file_name=f"{stem}.md",
                       mime="text/markdown", on_click="ignore", key="export_markdown",
                       icon=":material/download:", width="stretch")
    st.download_button(t("export_json"), store.export_json(conversation.id), file_name=f"{stem}.json",
                       mime="application/json", on_click="ignore", key="export_json",
                       icon=":material/download:", width="stretch")


def rename_key(conv_id: str) -> str:
    return f"rename_title_{conv_id}"


def _rename(store: ConversationStore, conv_id: str) -> None:
    if not store.rename(conv_id, st.session_state.get(rename_key(conv_id), "")):
        state.flash("error", t("conversation_gone"))


def _delete(store: ConversationStore, conv_id: str) -> None:
    store.delete(conv_id)
    state.set_conversation(None)
    state.flash("success", t("deleted"))


def import_uploaded(store: ConversationStore) -> None:
    """on_change of the uploader: runs once per newly chosen file, not on every rerun."""
    uploaded = st.session_state.get("import_file")
    if uploaded is None:
        return
    try:
        conversation = store.import_json(uploaded.getvalue())
    except MiniCPMError as exc:  # InvalidImport says what is wrong with the file
        state.flash("error", error_text(exc))
        return
    state.set_conversation(conversation.id)
    state.flash("success", t("imported", title=plain_text(conversation.title) or t("untitled"),
                             n=len(conversation.messages)))


def _file_stem(title: str) -> str:
    """A download file name from a title: letters (CJK included), digits, - and _."""
    return re.sub(r"[^\w-]+", "-", title, flags=re.UNICODE).strip("-")[:60]


# --- generation settings ---------------------------------------------------------------------------

def settings() -> None:
    st.subheader(t("settings"))
    preset_picker()
    param_sliders()
    max_length_note()
    thinking_switch()
    ignored_controls_note()
    state.keep("seed", st.number_input(t("param_seed"), min_value=0, max_value=2**32 - 1, step=1,
                                       value=state.initial("seed", None), key="seed",
                                       placeholder=t("seed_placeholder"), help=t("help_seed")))
    state.keep("system_prompt", st.text_area(t("system_prompt"), value=state.initial("system_prompt", ""),
                                             key="system_prompt", height=80,
                                             placeholder=t("system_prompt_placeholder"),
                                             help=t("system_prompt_help")))
    st.button(t("reset_settings"), key="reset_settings", icon=":material/restart_alt:", width="stretch",
              on_click=reset_settings)


def thinking_switch() -> None:
    """"Think before answering", only on a family whose template takes enable_thinking. It starts at
    the checkpoint's default (on where the template leaves it to the model); until flipped, nothing is
    passed and the template decides."""
    backend = active_backend()
    family = backend.family
    if family is None or not family.thinking or not backend.ready:
        return
    default = thinking_default(backend)
    value = st.toggle(t("think"), value=state.initial(state.THINKING_KEY, switch_default(backend)),
                      key=state.THINKING_KEY, help=t("think_help"), on_change=state.keep,
                      args=(state.THINKING_CHOSEN, True))
    state.keep(state.THINKING_KEY, value)
    if default is None and not state.get(state.THINKING_CHOSEN):
        st.caption(t("think_model_decides"))


def switch_default(backend) -> bool:
    """Where the think switch starts: on, unless the template's default is not to think."""
    return thinking_default(backend) is not False


def thinking_now(backend, family) -> bool | None:
    """The think switch's value as this run draws it (a flip is in the widget's state already);
    None where there is no switch."""
    if not family.thinking or not backend.ready:
        return None
    return bool(state.initial(state.THINKING_KEY, switch_default(backend)))


def model_presets() -> dict[str, dict[str, float]]:
    """The presets of the loaded checkpoint in the think switch's mode ("balanced" is its recommended
    values); the default family's while no model is known (a remote server)."""
    backend = active_backend()
    family = backend.family
    if family is None:
        return PRESETS
    presets = family.presets(backend.model_id, thinking_now(backend, family))
    return {name: {f: v for f, v in values.items() if f in state.SLIDER_PARAMS} for name, values in presets.items()}


def take_model_defaults() -> None:
    """The loaded checkpoint's recommended sampling values (for the think switch's mode: MiniCPM5-1B's
    temperature follows it) and its context become the sliders' defaults and max_length's range; a
    long context's default max_length is what its KV cache fits in memory."""
    backend = active_backend()
    family = backend.family
    if family is None:
        return
    thinking = thinking_now(backend, family)
    recommended = family.defaults_for(backend.model_id, thinking)
    values = {name: value for name, value in recommended.items() if name in state.SLIDER_PARAMS}
    high = {"max_length": family.context_length}
    budget = kv_budget_of(backend)
    if budget is not None:
        values["max_length"] = budget.max_length
        high["max_length"] = budget.context_length
    model = f"{family.name}@{identity(backend)}/thinking={thinking}"
    state.use_model_defaults(model, values, high)


def max_length_note() -> None:
    """Under the sliders, for a model whose context is longer than the slider's default: how the
    default max_length was chosen."""
    budget = kv_budget_of(active_backend())
    if budget is None or budget.context_length <= MODEL_CONTEXT:
        return
    st.caption(t("max_length_budget", context=budget.context_length, n=state.slider_spec("max_length").default,
                 kb=budget.bytes_per_token / 1024, free=budget.free_bytes / 2**30))


def param_sliders(prefix: str = "") -> None:
    """A slider per schema field that has one, the advanced ones in an expander; ranges and defaults
    from the schema; keys `<prefix><field name>`."""
    for name in state.MAIN_SLIDERS:
        param_slider(name, prefix)
    if state.ADVANCED_SLIDERS:
        with st.expander(t("advanced_settings")):
            for name in state.ADVANCED_SLIDERS:
                param_slider(name, prefix)


def param_slider(name: str, prefix: str = "") -> None:
    spec = state.slider_spec(name)
    key = prefix + name
    value = st.slider(t(f"param_{name}"), min_value=spec.low, max_value=spec.high, step=spec.step,
                      value=state.initial(key, spec.default, spec.low, spec.high), key=key,
                      help=t(f"help_{name}"))
    state.keep(key, value)


def ignored_controls_note() -> None:
    """Under the sliders: the sidebar's controls that the model server does not get (a strict remote
    server is sent only the standard OpenAI fields; see minicpm_core.remote)."""
    ignored = [t(f"param_{name}") for name in active_backend().ignored_controls if has(f"param_{name}")]
    if ignored:
        st.caption(t("server_ignores", controls=", ".join(ignored)))


def preset_picker(prefix: str = "") -> None:
    """Precise / balanced / creative buttons (keys `<prefix>preset_<name>`) that set the sliders; the
    preset the sliders match now carries a check mark. Buttons, not a selectable widget: a selection
    the server changes (when a slider moves) can race the browser's next rerun and re-apply a preset."""
    values = state.settings(prefix)
    # Drawn above the sliders: on the run a slider moved, only its widget state has the new value yet.
    values.update({name: st.session_state[prefix + name] for name in state.SLIDER_PARAMS
                   if prefix + name in st.session_state})
    presets = model_presets()
    active = matching_preset(values, presets)
    with st.container(horizontal=True, gap="xsmall", key=prefix + "presets"):
        for name, preset in presets.items():
            st.button(t(f"preset_{name}"), key=f"{prefix}preset_{name}", help=t(f"preset_{name}_help"),
                      icon=":material/check:" if name == active else None,
                      on_click=apply_preset, args=(preset, prefix))


def apply_preset(preset: dict[str, float], prefix: str = "") -> None:
    """A preset button's callback: the preset's values (model_presets, as drawn) into the sliders."""
    for field, value in preset.items():
        state.put(prefix + field, value)


def reset_settings(prefix: str = "") -> None:
    if not prefix:  # the think switch goes back to the checkpoint's default, and the template decides again
        state.kept().pop(state.THINKING_CHOSEN, None)
        if state.THINKING_KEY in st.session_state:  # drawn: set it (dropping it would leave the browser's value)
            state.put(state.THINKING_KEY, switch_default(active_backend()))
        else:
            state.kept().pop(state.THINKING_KEY, None)
    for name, value in state.default_settings().items():
        if prefix and name not in state.SLIDER_PARAMS:
            continue  # B has only sliders; seed and system prompt are shared
        state.put(prefix + name, value)
