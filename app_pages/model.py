"""Model: what is loaded (source, device, dtype, attention, size, load time, context), the queue,
the speed of the last replies, and every supported model, to download and switch to (ui/models.py)."""

import streamlit as st

from ui import model_info, models
from ui.backend import active_backend, active_slot
from ui.i18n import t

st.set_page_config(layout="centered")

backend = active_backend()
slot = active_slot()
st.title(t("model_title"))
st.button(t("refresh"), key="refresh_model", icon=":material/refresh:")

st.subheader(t("model_loaded"))
info = backend.info()  # waits for a model still loading
if "load_seconds" in info and slot is not None and slot.load_seconds is not None:
    info["load_seconds"] = slot.load_seconds  # from the start of the load to ready, as the loading notice showed
st.table(model_info.info_rows(info), hide_index=True)

st.subheader(t("queue_state"))
running, waiting = st.columns(2)
running.metric(t("queue_running"), backend.running)
waiting.metric(t("queue_waiting"), backend.queue_depth)

st.subheader(t("recent_replies"))
rows = model_info.recent_rows(backend.recent)
if rows:
    st.dataframe(rows, hide_index=True, key="recent_replies")
else:
    st.caption(t("no_replies_yet"))

models.model_list(slot, backend)
