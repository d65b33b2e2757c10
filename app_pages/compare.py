"""Compare: one prompt, two parameter sets (A = the sidebar, B = the sliders here), side by side;
on a model that thinks, both as the sidebar's think switch says."""

import streamlit as st

from ui import compare, sidebar, state
from ui.backend import active_backend, thinking_default
from ui.i18n import t

st.set_page_config(layout="wide")  # two replies side by side need the room
backend = active_backend()
family = backend.family
thinks = bool(family and family.thinking and backend.ready)  # both sides follow the sidebar's switch
enable_thinking = state.enable_thinking(thinking_default(backend)) if thinks else None
st.title(t("compare_title"))
st.caption(t("compare_intro"))

with st.expander(t("compare_b_settings"), expanded=True, key="compare_b_settings"):
    with st.container(horizontal=True, vertical_alignment="bottom", key="b_preset_row"):
        sidebar.preset_picker(prefix=state.B_PREFIX)
        st.button(t("reset_settings"), key="b_reset", icon=":material/restart_alt:",
                  on_click=sidebar.reset_settings, args=(state.B_PREFIX,))
    sidebar.param_sliders(prefix=state.B_PREFIX)

prompt = state.keep("compare_prompt", st.text_area(t("compare_prompt"), value=state.initial("compare_prompt", ""),
                                                   key="compare_prompt", height=100))
run = st.button(t("compare_run"), key="compare_run", type="primary", icon=":material/compare_arrows:",
                disabled=not prompt.strip())

shared = state.settings()
params = {"a": state.params_from(shared), "b": state.params_from(state.settings(state.B_PREFIX))}
left, right = st.columns(2)
columns = {"a": left, "b": right}
if run and prompt.strip():
    results = compare.run_both(backend, prompt, params, shared["system_prompt"], columns, enable_thinking)
    if results is not None:
        st.session_state[compare.RESULTS] = results
elif compare.RESULTS in st.session_state:
    compare.show_results(st.session_state[compare.RESULTS], columns)
