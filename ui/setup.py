"""Pages shown instead of the app when the model cannot be loaded.

No weights yet (ModelNotFound): say where we looked (the core's message names it), offer a
download button, show the exact command to run instead, and point at `--demo`. Any other load
error: its message, never a traceback.
"""

from __future__ import annotations

import inspect
import shlex
from pathlib import Path

import streamlit as st

from minicpm_core.errors import MiniCPMError

from ui.backend import AppOptions, load_backend
from ui.i18n import t
from ui.notices import show_error

DOWNLOAD_MODULE = "minicpm_core.download"


def looks_like_model_id(model: str) -> bool:
    """`OpenBMB/MiniCPM-2B-sft-fp32` can be downloaded; a directory path cannot."""
    if model.startswith(("/", ".", "~")) or Path(model).expanduser().exists():
        return False
    return model.count("/") == 1


def download_command(options: AppOptions) -> str:
    model = options.model
    return (f"python -m {DOWNLOAD_MODULE} {shlex.quote(model.model)} "
            f"--cache-dir {shlex.quote(str(model.cache_dir))}")


def run_command(options: AppOptions) -> str:
    return f"streamlit run chat_app.py -- --model {shlex.quote(options.model.model)}"


def missing_model_page(options: AppOptions, error: MiniCPMError) -> None:
    st.title(t("setup_title"))
    show_error(error)
    if looks_like_model_id(options.model.model):
        st.markdown(t("setup_download_intro", model=options.model.model, cache_dir=options.model.cache_dir))
        if st.button(t("setup_download"), key="download_model", type="primary", icon=":material/download:"):
            download_here(options)
        st.markdown(t("setup_or_command"))
        st.code(download_command(options), language="bash")
    else:
        st.markdown(t("setup_local_dir", path=options.model.model))
        st.code(f"python -m {DOWNLOAD_MODULE} OpenBMB/MiniCPM-2B-sft-fp32 --cache-dir /root/autodl-tmp\n"
                "streamlit run chat_app.py -- --model /root/autodl-tmp/OpenBMB/MiniCPM-2B-sft-fp32",
                language="bash")
    st.info(t("setup_try_demo"), icon=":material/science:")
    st.code("streamlit run chat_app.py -- --demo", language="bash")


def download_here(options: AppOptions) -> None:
    """Download in this session, reporting progress in an st.status, then load and rerun."""
    from minicpm_core import download

    model = options.model
    with st.status(t("setup_downloading", model=model.model, cache_dir=model.cache_dir), expanded=True) as status:
        line = st.empty()

        def progress(message: str) -> None:
            line.caption(str(message))

        kwargs = {}
        if "progress" in inspect.signature(download.download_model).parameters:
            kwargs["progress"] = progress
        try:
            path = download.download_model(model.model, model.cache_dir, **kwargs)
        except MiniCPMError as exc:
            status.update(label=t("setup_download_failed"), state="error")
            show_error(exc)
            return
        status.update(label=t("setup_downloaded", path=path), state="complete")
    load_backend.clear()
    st.rerun()


def load_error_page(error: MiniCPMError) -> None:
    st.title(t("load_failed_title"))
    show_error(error)
