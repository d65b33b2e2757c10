"""Errors and notices as the user sees them: one translated headline per error class, then the
core's message (which says what to do). Never a traceback.
"""

from __future__ import annotations

import time

import streamlit as st

from minicpm_core.errors import (
    ContextOverflow,
    GenerationFailed,
    InvalidRequest,
    MiniCPMError,
    ModelNotFound,
    ModelSwitching,
    QueueFull,
)
from minicpm_core.store import InvalidImport, NotFound
from ui import state
from ui.i18n import error_message, t

# Most specific first: InvalidImport and ContextOverflow are InvalidRequests.
_HEADLINES = (
    (InvalidImport, "err_import"),
    (ContextOverflow, "err_context_overflow"),
    (InvalidRequest, "err_invalid_request"),
    (ModelNotFound, "err_model_not_found"),
    (GenerationFailed, "err_generation_failed"),
    (QueueFull, "err_busy"),
    (ModelSwitching, "err_model_switching"),
    (NotFound, "err_not_found"),
    (MiniCPMError, "err_generic"),
)


def error_text(exc: MiniCPMError) -> str:
    headline = next(key for cls, key in _HEADLINES if isinstance(exc, cls))
    return f"**{t(headline)}**\n\n{as_markdown(error_message(exc))}"


def as_markdown(message: str) -> str:
    """Keep a core message's line breaks, and show its indented command lines as code."""
    lines = []
    for line in message.splitlines():
        if line.startswith("    ") and line.strip():
            lines.append(f"`{line.strip()}`")
        else:
            lines.append(line)
    return "  \n".join(lines)


def show_error(exc: MiniCPMError) -> None:
    st.error(error_text(exc), icon=":material/error:")


def show_flashes() -> None:
    """Notices queued by callbacks (import results, failed actions), shown once."""
    for kind, text in state.take_flashes():
        getattr(st, kind, st.info)(text)


def gpu_problem_banner(problem: str) -> None:
    """An NVIDIA GPU that PyTorch cannot use: the model is on the CPU. The core says why and the fix."""
    with st.container(key="gpu_problem"):
        st.error(f"**{t('gpu_unusable')}**\n\n{as_markdown(problem)}", icon=":material/memory:")


def switch_notice(slot) -> bool:
    """While the server switches models: a banner on every run of every session. Once it has: the outcome,
    once per session that was open before it ended. Returns whether the switching banner was shown."""
    last = slot.last_switch
    if last is None:
        st.session_state[_SWITCH_TOLD] = 0  # open before any switch: told of the first one
        return False
    seen = st.session_state.get(_SWITCH_TOLD)
    if seen is None:  # this session's first run: only a switch still under way concerns it
        seen = last.number - 1 if not last.finished.is_set() else last.number
    at = time.strftime("%H:%M", time.localtime(last.asked_at))
    if not last.finished.is_set():
        with st.container(key="switch_notice"):
            st.info(t("switching_banner", source=last.source, target=last.target, time=at, drain=slot.drain_s),
                    icon=":material/swap_horiz:")
        st.session_state[_SWITCH_TOLD] = seen
        return True
    if seen < last.number:
        with st.container(key="switch_notice"):
            if last.state == "done":
                st.success(t("switched_notice", source=last.source, target=last.target, time=at),
                           icon=":material/swap_horiz:")
            else:
                st.error(f"**{t('switch_failed_notice', source=last.source, target=last.target)}**\n\n"
                         f"{as_markdown(last.error or '')}", icon=":material/error:")
    st.session_state[_SWITCH_TOLD] = last.number
    return False


_SWITCH_TOLD = "_switch_told"  # the number of the last switch whose outcome this session was shown


def loading_notice() -> None:
    with st.container(key="loading_notice"):
        st.info(t("loading_model"), icon=":material/hourglass_top:")


def demo_banner(model: str) -> None:
    with st.container(key="demo_banner"):
        st.warning(t("demo_banner", model=model), icon=":material/science:")
