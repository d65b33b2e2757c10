"""Pages shown instead of the app when the model cannot be loaded.

No weights yet (ModelNotFound): say where we looked (the core's message names it), offer a
download button, show the exact command to run instead, and point at `--demo`. Any other load
error: its message, never a traceback.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import streamlit as st

from minicpm_core import catalog, download
from minicpm_core.errors import MiniCPMError
from minicpm_core.settings import AppSettings
from ui.backend import forget_backend
from ui.i18n import t
from ui.notices import show_error


def looks_like_model_id(model: str) -> bool:
    """`OpenBMB/MiniCPM-2B-sft-fp32` can be downloaded; an existing or path-like folder cannot."""
    return not Path(model).expanduser().is_dir() and download.MODEL_ID_PATTERN.fullmatch(model) is not None


def download_size(model_id: str) -> str:
    gb = catalog.download_size_gb(model_id)
    return t("setup_size_unknown") if gb is None else t("setup_size_known", gb=gb)


def missing_model_page(options: AppSettings, error: MiniCPMError) -> None:
    model = options.model
    st.title(t("setup_title"))
    show_error(error)
    if looks_like_model_id(model.model):
        st.markdown(t("setup_download_intro", model=model.model, size=download_size(model.model),
                      target=download.default_model_dir(model.model, model.cache_dir)))
        if st.button(t("setup_download"), key="download_model", type="primary", icon=":material/download:"):
            download_here(options)
        st.markdown(t("setup_or_command"))
        st.code(download.download_command(model.model, model.cache_dir), language="bash", wrap_lines=True)
    else:
        st.markdown(t("setup_local_dir", path=model.model))
        target = download.default_model_dir(download.DEFAULT_MODEL_ID, download.DEFAULT_CACHE_DIR)
        st.code(f"{download.download_command()}\nstreamlit run chat_app.py -- --model {shlex.quote(str(target))}",
                language="bash", wrap_lines=True)
    st.info(t("setup_try_demo"), icon=":material/science:")
    st.code("streamlit run chat_app.py -- --demo", language="bash")


def download_here(options: AppSettings) -> None:
    """Download in the background, reporting the size on disk in an st.status; then load and rerun."""
    model = options.model
    job = download.start_or_follow(model.model, str(model.cache_dir))
    with st.status(t("setup_downloading", model=model.model, target=job.target), expanded=True) as status:
        line = st.empty()
        while job.is_alive():
            line.caption(t("setup_progress", size=job.bytes_on_disk() / 2**30, target=job.target))
            job.join(download.PROGRESS_EVERY_S)
        if job.error is not None:
            status.update(label=t("setup_download_failed"), state="error")
            show_error(job.error)
            return
        status.update(label=t("setup_downloaded", path=job.path), state="complete")
    forget_backend()  # the failed load is not kept, but a stale entry must not survive either
    st.rerun()


def load_error_page(error: MiniCPMError) -> None:
    st.title(t("load_failed_title"))
    show_error(error)
