"""Chat: the conversation in ?c=<id>, replayed from the store, and one streamed reply per question.

Order as in every Streamlit chat: title, history, actions on the last turn, input, stream. The logic
(saving before and while streaming, regenerate/edit/clear) lives in ui/ (chat, actions, streaming).
"""

import streamlit as st

from ui import actions, chat, examples, state
from ui.backend import active_backend, get_store, model_label, thinking_default
from ui.context_meter import remembered_context_usage
from ui.history import last_question
from ui.i18n import t
from ui.markdown_safe import plain_text, safe_markdown
from ui.streaming import settle_abandoned_reply

st.set_page_config(layout="centered")

store = get_store()
backend = active_backend()
settings = state.settings()
params = state.params_from(settings)
system_prompt = settings["system_prompt"]
family = backend.family
thinks = bool(family and family.thinking and backend.ready)
enable_thinking = state.enable_thinking(thinking_default(backend)) if thinks else None

settle_abandoned_reply()  # a Stop click's run: draw the stopped reply as saved, not half-saved
conv_id = state.current_conversation_id()
conversation = store.get(conv_id) if conv_id else None
if conv_id and conversation is None:
    st.warning(t("conversation_not_found"))
    state.set_conversation(None)
    conv_id = None

st.title(plain_text(conversation.title) if conversation and conversation.title
         else t("chat_title", model=model_label(backend)))

usage = remembered_context_usage(backend, conversation, params, system_prompt)
if usage is not None and conversation is not None:
    with st.container(key="context_meter"):
        st.progress(usage.fraction, text=t("context_meter", used=usage.tokens, budget=usage.budget))
        if usage.turns_dropped:
            st.caption(t("turns_dropped", n=usage.turns_dropped))

awaited = actions.awaited_question(conv_id)  # a question a new reply is about to answer
if conversation is not None:  # while that reply streams, the path ends at its question
    chat.show_conversation(store, conversation, conversation.up_to(awaited) if awaited else conversation.messages)

welcome = st.empty()
if conversation is None or not conversation.messages:
    with welcome.container():
        examples.welcome(backend.demo, family.name if family and backend.demo else None)

question_msg = last_question(conversation)
turn_actions = st.empty()  # emptied when a question is asked: the reply would come after it
if conversation is not None and question_msg is not None and awaited is None:  # hidden while a reply streams
    with turn_actions.container(horizontal=True, key="turn_actions"):
        st.button(t("regenerate"), key="regenerate", icon=":material/refresh:", type="tertiary",
                  on_click=actions.run_action, args=(actions.regenerate, store, conv_id))
        edit_key = f"edit_text_{question_msg.id}"  # one box per question, starting at its text
        with st.popover(t("edit_question"), icon=":material/edit:", type="tertiary", key="edit_question"):
            st.text_area(t("edit_question"), value=question_msg.content, key=edit_key, label_visibility="collapsed")
            st.button(t("edit_send"), key="edit_send", type="primary",
                      on_click=actions.run_action, args=(actions.edit_question, store, conv_id, edit_key))
        st.button(t("clear_conversation"), key="clear_conversation", icon=":material/delete_sweep:",
                  type="tertiary", on_click=actions.run_action, args=(actions.clear, store, conv_id))

question = st.chat_input(t("chat_placeholder", model=model_label(backend)), key="chat_input", submit_mode="disable")
question = question or examples.take_chosen_example()
if question and question.strip():
    welcome.empty()
    turn_actions.empty()
    conv_id, question_id = actions.ask(store, conv_id, question)  # stored before anything is generated
    state.set_conversation(conv_id)
    with st.chat_message("user"):
        st.markdown(safe_markdown(question))
    actions.await_reply(conv_id, question_id)

# (a question awaits only in a stored conversation, so conv_id is set whenever one is taken)
if (awaited_id := actions.take_awaited_question(conv_id)) is not None and conv_id is not None:
    if chat.answer_here(store, backend, conv_id, params, system_prompt, enable_thinking, awaited_id):
        st.rerun()  # redraw from the store: stats caption, meter, actions under the new reply
