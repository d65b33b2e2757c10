"""Chat: the conversation in ?c=<id>, replayed from the store, and one streamed reply per question.

Order as in every Streamlit chat: title, history, actions on the last turn, input, stream. The logic
(saving before and while streaming, regenerate/edit/clear) lives in ui/chat.py.
"""

import streamlit as st

from ui import chat, search, state
from ui.backend import active_backend, family_of, get_store, model_label, thinking_default
from ui.i18n import t
from ui.markdown_safe import plain_text, safe_markdown

st.set_page_config(layout="centered")

store = get_store()
backend = active_backend()
settings = state.settings()
params = state.params_from(settings)
system_prompt = settings["system_prompt"]
family = family_of(backend)
thinks = bool(family and family.thinking and backend.ready)
enable_thinking = state.enable_thinking(thinking_default(backend)) if thinks else None

chat.settle_abandoned_reply()  # a Stop click's run: draw the stopped reply as saved, not half-saved
conv_id = state.current_conversation_id()
conversation = store.get(conv_id) if conv_id else None
if conv_id and conversation is None:
    st.warning(t("conversation_not_found"))
    state.set_conversation(None)
    conv_id = None

st.title(plain_text(conversation.title) if conversation and conversation.title else t("chat_title"))

usage = chat.context_usage(backend, conversation, params, system_prompt)
if usage is not None and conversation is not None:
    with st.container(key="context_meter"):
        st.progress(usage.fraction, text=t("context_meter", used=usage.tokens, budget=usage.budget))
        if usage.turns_dropped:
            st.caption(t("turns_dropped", n=usage.turns_dropped))

for message in conversation.messages if conversation else ():
    if message.role == "system":
        continue
    with st.chat_message(message.role):
        search.mark_target(message.id)  # a search result opened here: scroll to this message (ui/search.py)
        if message.role == "assistant" and message.meta.get("reasoning"):
            with st.status(chat.reasoning_label(message.meta), state="complete", expanded=False):
                st.markdown(safe_markdown(message.meta["reasoning"]))
            if message.meta.get("ended_in_reasoning"):
                st.warning(t("cut_in_thinking"), icon=":material/content_cut:")
        st.markdown(safe_markdown(message.content) or " ")
        caption = chat.reply_caption(message.meta) if message.role == "assistant" else ""
        if caption:
            st.caption(caption)

welcome = st.empty()
if conversation is None or not conversation.messages:
    with welcome.container():
        chat.welcome(backend.demo, family.name if family and backend.demo else None)

question_msg = chat.last_question(conversation)
if conversation is not None and question_msg is not None:
    with st.container(horizontal=True, key="turn_actions"):
        st.button(t("regenerate"), key="regenerate", icon=":material/refresh:", type="tertiary",
                  on_click=chat.run_action, args=(chat.regenerate, store, conv_id))
        edit_key = f"edit_text_{question_msg.id}"  # one box per question, starting at its text
        with st.popover(t("edit_question"), icon=":material/edit:", type="tertiary", key="edit_question"):
            st.text_area(t("edit_question"), value=question_msg.content, key=edit_key, label_visibility="collapsed")
            st.button(t("edit_send"), key="edit_send", type="primary",
                      on_click=chat.run_action, args=(chat.edit_question, store, conv_id, edit_key))
        st.button(t("clear_conversation"), key="clear_conversation", icon=":material/delete_sweep:",
                  type="tertiary", on_click=chat.run_action, args=(chat.clear, store, conv_id))

question = st.chat_input(t("chat_placeholder", model=model_label(backend)), key="chat_input", submit_mode="disable")
question = question or chat.take_chosen_example()
if question and question.strip():
    welcome.empty()
    conv_id = chat.ask(store, conv_id, question)  # stored before anything is generated
    state.set_conversation(conv_id)
    with st.chat_message("user"):
        st.markdown(safe_markdown(question))
    st.session_state[state.PENDING_REPLY] = conv_id

if conv_id and st.session_state.pop(state.PENDING_REPLY, None) == conv_id:
    if chat.answer_here(store, backend, conv_id, params, system_prompt, enable_thinking):
        st.rerun()  # redraw from the store: stats caption, meter, actions under the new reply
