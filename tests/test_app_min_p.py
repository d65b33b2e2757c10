"""min_p in the app: a slider under the sidebar's "advanced" expander, carried into the reply.

On the demo checkpoint (its answers are readable and end at EOS): min_p = 1.0 at temperature 1.0
keeps only the most likely token, so the reply is the greedy one, whatever the seed.
"""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from minicpm_core.store import ConversationStore, default_db_path
from test_app import APP, TIMEOUT, app_env, ok  # noqa: F401 - app_env is a fixture
from ui.i18n import EN

QUESTION = "hello"


def reply_to(at: AppTest, question: str) -> str:
    at.chat_input(key="chat_input").set_value(question).run()
    return ok(at).chat_message[-1].markdown[0].value


def test_min_p_has_a_slider_under_advanced_and_reaches_the_reply(app_env):
    at = ok(AppTest.from_file(str(APP), default_timeout=TIMEOUT).run())
    advanced = next(e for e in at.sidebar.expander if e.label == EN["advanced_settings"])
    assert advanced.slider(key="min_p").value == 0.0
    at.sidebar.slider(key="temperature").set_value(0.0).run()
    greedy = reply_to(at, QUESTION)
    for seed in (1, 2):
        at.sidebar.button(key="new_conversation").click().run()
        at.sidebar.slider(key="temperature").set_value(1.0).run()
        at.sidebar.slider(key="top_p").set_value(1.0).run()
        advanced = next(e for e in ok(at).sidebar.expander if e.label == EN["advanced_settings"])
        advanced.slider(key="min_p").set_value(1.0).run()
        at.sidebar.number_input(key="seed").set_value(seed).run()
        assert reply_to(at, QUESTION) == greedy, seed
    store = ConversationStore(default_db_path())
    try:
        assert store.get(at.query_params["c"]).messages[-1].meta["params"]["min_p"] == 1.0
    finally:
        store.close()
