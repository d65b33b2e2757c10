"""The Model page's model list: every supported model (minicpm_core.catalog), whether it is loaded or
downloaded, its size, a download button with progress, and "Use this model", which switches the whole
server (minicpm_core.slot) for every session.

Buttons act in the page's script, after the entrypoint's password gate, never in a callback: a
switch is asked for only by a session that has passed the gate, and `may_switch` checks it again.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import streamlit as st

from minicpm_core import catalog, download
from minicpm_core.backend import Backend
from minicpm_core.catalog import ModelChoice
from minicpm_core.errors import MiniCPMError
from minicpm_core.families import FAMILIES
from ui import auth, state
from ui.i18n import model_note, t
from ui.notices import error_text, show_error

if TYPE_CHECKING:
    from streamlit.delta_generator import DeltaGenerator

GB = 1e9  # KnownModel.size_gb is in decimal gigabytes, as ModelScope shows sizes


def may_switch() -> bool:
    """Switching changes the model for everyone: with a password set, only a logged-in session may."""
    return auth.logged_in()


def model_list(slot, backend: Backend) -> None:
    """The list, by family, then the demos; downloads under way are followed at the end of the page."""
    st.subheader(t("models_header"))
    if backend.base_url is not None:  # a remote server chooses its own models
        st.caption(t("models_remote", url=backend.base_url))
        return
    st.caption(t("models_intro"))
    if not may_switch():
        st.caption(t("models_login_to_switch"))
    loaded_path = backend.loaded_path
    every = catalog.choices(slot.settings)
    progress: dict[str, DeltaGenerator] = {}  # a progress bar's place, by the name of the model it downloads
    for family in FAMILIES:
        st.markdown(f"**{family.label}**")
        for choice in every:
            if choice.family is family and not choice.demo:
                progress[choice.name] = model_row(choice, slot, loaded_path)
    st.markdown(f"**{t('models_demo_header')}**")
    for choice in every:
        if choice.demo:
            model_row(choice, slot, loaded_path)
    follow_downloads([choice for choice in every if choice.name in st.session_state.get(_ASKED, ())], progress)


_ASKED = "_downloads_asked"  # the models whose download this session started and has not yet been told about


def running(choice: ModelChoice):
    job = download.latest_download(choice.settings.model, choice.settings.cache_dir)
    return job if job is not None and job.is_alive() else None


def model_row(choice: ModelChoice, slot, loaded_path) -> DeltaGenerator:
    """One model: name, facts, state and its button; returns the place for its progress bar."""
    slug = re.sub(r"[^A-Za-z0-9]+", "_", choice.name).strip("_").lower()
    loaded = choice.is_loaded(slot.settings, loaded_path)
    job = None if choice.demo else running(choice)
    downloaded = choice.downloaded()  # reads the folder's files: once per row and run
    with st.container(border=True, key=f"model_{slug}"):
        name, status, action = st.columns([5, 2, 2], vertical_alignment="center")
        name.markdown(f"**{choice.name}**")
        name.caption(facts(choice))
        with status:
            if loaded:
                st.badge(t("model_state_loading") if slot.switching else t("model_state_loaded"),
                         icon=":material/check_circle:", color="green")
            elif choice.demo:
                st.badge(t("model_state_builtin"), color="violet")
            elif job is None:
                st.badge(t("model_state_downloaded") if downloaded else t("model_state_missing"),
                         color="blue" if downloaded else "gray")
            else:  # another session's download: its progress is shown to that session
                st.badge(t("model_state_downloading"), icon=":material/download:", color="orange")
        with action:
            if not loaded and job is None:
                row_button(choice, slot, slug, downloaded)
        return st.empty()


def facts(choice: ModelChoice) -> str:
    context = choice.family.context_length
    if choice.demo:
        text = t("model_facts_demo", context=context)
    else:
        text = t("model_facts", size=f"{choice.size_gb:g} GB", dtype=choice.dtype, context=context)
    extras = [text] + ([t("model_thinks")] if choice.family.thinking else [])
    extras += [model_note(choice.note)] if choice.note else []
    return " · ".join(extras)


def row_button(choice: ModelChoice, slot, slug: str, downloaded: bool) -> None:
    if downloaded:
        if st.button(t("model_use"), key=f"use_{slug}", type="primary", disabled=slot.switching or not may_switch()):
            switch_to(choice, slot)
    elif st.button(t("model_download"), key=f"download_{slug}", icon=":material/download:",
                   disabled=not may_switch()):
        if may_switch():
            download.start_or_follow(choice.settings.model, choice.settings.cache_dir)
            st.session_state[_ASKED] = {*st.session_state.get(_ASKED, ()), choice.name}
            st.rerun()


def switch_to(choice: ModelChoice, slot) -> None:
    """Ask the slot to switch (it carries it out in the background), then redraw: the entrypoint shows
    the switching notice (the one notice of it: no flash here saying the same) and waits for the new model."""
    if not may_switch():
        return
    try:
        slot.switch(choice.settings, choice.name)
    except MiniCPMError as exc:
        show_error(exc)
        return
    st.rerun()


def follow_downloads(asked: list[ModelChoice], progress: dict[str, DeltaGenerator]) -> None:
    """Report the size on disk of the downloads this session started until they end; then say how each
    went (once) and redraw."""
    jobs = [(choice, job) for choice in asked
            if (job := download.latest_download(choice.settings.model, choice.settings.cache_dir)) is not None]
    if not jobs:
        return
    while alive := [job for _, job in jobs if job.is_alive()]:
        for choice, job in jobs:
            done = job.bytes_on_disk()
            size = (choice.size_gb or 0.0) * GB  # only a catalogued checkpoint (size known) is downloaded
            progress[choice.name].progress(min(1.0, done / size) if size else 0.0, text=t(
                "model_downloading", model=choice.name, done=done / GB, size=choice.size_gb))
        alive[0].join(download.PROGRESS_EVERY_S)  # each redraw above is also where a newer run can take over
    for choice, job in jobs:
        if job.error is not None:
            state.flash("error", error_text(job.error))
        else:
            state.flash("success", t("model_downloaded_now", model=choice.name))
    st.session_state[_ASKED] = set(st.session_state.get(_ASKED, ())) - {choice.name for choice, _ in jobs}
    st.rerun()
