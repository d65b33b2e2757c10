"""Compare: one question answered under two parameter sets, side by side.

A is the sidebar's settings; B has its own sliders (keys `b_<field>`), kept like the sidebar's.
Seed, system prompt and, on a family that thinks, the sidebar's think switch are shared. Both
requests are submitted at once (the engine's queue serves them in turn) and both are cancelled if the
run is interrupted, so nothing generates for nobody. A thinking reply's reasoning streams into a
block above its answer that collapses once the answer begins, as in the chat. Results live in
session state, not in the conversation store.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from minicpm_core.errors import MiniCPMError
from minicpm_core.params import GenerationParams
from ui import markdown_safe, state
from ui.captions import reasoning_label, reply_caption
from ui.i18n import t
from ui.notices import error_text
from ui.streaming import Thinking, ThinkingBlock, final_stats, follow_with_reasoning, queue_notice, reply_meta

RESULTS = "_compare_results"
SIDES = ("a", "b")


def params_summary(params: GenerationParams) -> str:
    """The sliders' values, e.g. "temperature 0.5 · top_p 0.8 · ..."; an advanced one only when it is set."""
    shown = [name for name in state.SLIDER_PARAMS if name in state.MAIN_SLIDERS
             or getattr(params, name) != GenerationParams.model_fields[name].default]
    return " · ".join(f"{name} {getattr(params, name):g}" for name in shown)


def run_both(backend, prompt: str, params: dict[str, GenerationParams], system_prompt: str,
             columns: dict[str, Any], enable_thinking: bool | None = None) -> dict[str, Any] | None:
    """Stream A into its column, then B into its; return both texts and stats (None on a refused request).
    `enable_thinking` (both sides) only where asked for: a backend without thinking need not take it."""
    messages = [{"role": "system", "content": system_prompt}] if system_prompt.strip() else []
    messages.append({"role": "user", "content": prompt})
    extra = {} if enable_thinking is None else {"enable_thinking": enable_thinking}
    generations: dict[str, Any] = {}
    try:
        for side in SIDES:
            generations[side] = backend.submit(messages, params[side], **extra)
    except MiniCPMError as exc:
        for generation in generations.values():
            generation.cancel()
        st.error(error_text(exc))
        return None
    results: dict[str, Any] = {"prompt": prompt}
    try:
        for side in SIDES:
            with columns[side]:
                header(side, params[side])
                generation = generations[side]
                thinking, block = Thinking(), ThinkingBlock(st.empty())  # block above the answer
                stream = follow_with_reasoning(generation, queue_notice(st.empty()), thinking, block)
                try:
                    with st.container(key=f"compare_reply_{side}"):
                        markdown_safe.write_stream(stream)
                except MiniCPMError as exc:
                    st.error(error_text(exc))
                finally:
                    stream.close()
                meta = reply_meta(final_stats(generation), params[side], thinking=thinking,
                                  model=backend.model_name)  # a later switch leaves it true
                if block.status is not None:  # its final label: time and token count, as the chat's
                    block.status.update(label=reasoning_label(meta), state="complete", expanded=False)
                cut_in_thinking_note(meta)
                results[side] = {"text": generation.text, "meta": meta}
                st.caption(reply_caption(meta))
    finally:
        for generation in generations.values():
            if not generation.done:
                generation.cancel()  # interrupted while A streamed: B must not generate for nobody
    return results


def cut_in_thinking_note(meta: dict[str, Any]) -> None:
    """The chat's warning for a reply that max_length cut inside its reasoning."""
    if meta.get("ended_in_reasoning"):
        st.warning(t("cut_in_thinking"), icon=":material/content_cut:")


def header(side: str, params: GenerationParams) -> None:
    st.subheader(t(f"compare_side_{side}"))
    st.caption(params_summary(params))


def show_results(results: dict[str, Any], columns: dict[str, Any]) -> None:
    for side in SIDES:
        if side not in results:
            continue
        with columns[side]:
            meta = results[side]["meta"]
            header(side, GenerationParams.parse(meta["params"]))
            if meta.get("reasoning"):
                with st.status(reasoning_label(meta), state="complete", expanded=False):
                    st.markdown(markdown_safe.safe_markdown(meta["reasoning"]))
                cut_in_thinking_note(meta)
            with st.container(key=f"compare_reply_{side}"):
                st.markdown(markdown_safe.safe_markdown(results[side]["text"]) or " ")
            st.caption(reply_caption(results[side]["meta"]))
