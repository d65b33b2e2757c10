"""The hostile corpus, app half: every import file in tests/hostile_inputs.py is refused with a clear
message (or, if valid, shown safely), every hostile chat text is answered or refused in the app,
and after each one the store and the chat still work.

Through the store (every file, fast) and through the app itself (AppTest: the sidebar's uploader and
the chat input; no `at.exception` ever, an st.error or a safely rendered page each time).
"""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1 import element_tree

from minicpm_core.errors import InvalidRequest
from minicpm_core.store import IMPORT_PROBLEMS, MAX_MESSAGE_CHARS, ConversationStore, InvalidImport
from ui import i18n
from ui.markdown_safe import safe_links, safe_markdown

from hostile_inputs import CHAT_TEXTS, IMPORT_FILES, MARKDOWN_PAYLOADS, VALID_HOSTILE_IMPORTS
from test_app import APP, TIMEOUT, app_env, demo_qa, ok  # noqa: F401 - fixtures

HEALTHY = b'[{"role": "user", "content": "still fine?"}, {"role": "assistant", "content": "yes"}]'
UPLOADS = hasattr(getattr(element_tree, "FileUploader", None), "set_value")  # AppTest uploads: Streamlit 1.67+


def test_the_corpus_is_big_enough(capsys):
    total = len(IMPORT_FILES) + len(VALID_HOSTILE_IMPORTS) + len(CHAT_TEXTS)
    with capsys.disabled():
        print(f"\nhostile app inputs: {total} ({len(IMPORT_FILES)} refused imports, "
              f"{len(VALID_HOSTILE_IMPORTS)} hostile but valid imports, {len(CHAT_TEXTS)} chat texts)")
    assert total >= 100


def test_every_hostile_import_is_refused_with_a_translated_message_and_the_store_stays_healthy(tmp_path):
    store = ConversationStore(tmp_path / "store.sqlite3")
    for name, data in IMPORT_FILES.items():
        with pytest.raises(InvalidImport) as info:
            store.import_json(data)
        error = info.value
        assert str(error).startswith("Cannot import this file: ") and "A valid file is" in str(error), name
        assert error.code in i18n.ERRORS_ZH, (name, error.code)
        i18n.ERRORS_ZH[error.code].format(**error.details)  # the Chinese text can be filled in
        assert store.list() == [], name  # nothing half-imported
    assert store.import_json(HEALTHY).messages[1].content == "yes"


def test_every_import_problem_the_store_declares_has_a_chinese_text():
    assert {f"import_{code}" for code in IMPORT_PROBLEMS} <= set(i18n.ERRORS_ZH)


def test_hostile_but_valid_imports_are_stored_and_read_back_as_they_were(tmp_path):
    store = ConversationStore(tmp_path / "store.sqlite3")
    for name, data in VALID_HOSTILE_IMPORTS.items():
        conversation = store.import_json(data)
        assert store.get(conversation.id) == conversation, name
    assert len(store.list(limit=1000)) == len(VALID_HOSTILE_IMPORTS)


def rendered_markdown(at: AppTest) -> list[str]:
    return [m.value for m in at.markdown] + [b.label for b in at.sidebar.button]


def assert_rendered_safely(at: AppTest, name: str) -> None:
    ok(at)
    for text in rendered_markdown(at):
        assert safe_links(text) == text, (name, text[:200])  # nothing left that loads or runs


@pytest.mark.skipif(not UPLOADS, reason="AppTest cannot upload files in this Streamlit")
def test_every_hostile_upload_gets_an_error_or_a_safe_page_and_the_app_keeps_working(app_env):
    at = ok(AppTest.from_file(str(APP), default_timeout=TIMEOUT).run())
    for name, data in {**IMPORT_FILES, **VALID_HOSTILE_IMPORTS}.items():
        at.sidebar.file_uploader(key="import_file").set_value((f"{name}.json", data, "application/json"))
        at.run()
        assert_rendered_safely(at, name)
        if name in IMPORT_FILES:
            assert at.error and "Cannot import this file" in at.error[0].value, name
        else:
            assert at.success and not at.error, (name, [e.value for e in at.error])
    at.sidebar.file_uploader(key="import_file").set_value(("healthy.json", HEALTHY, "application/json"))
    at.run()
    assert ok(at).success and [m.markdown[0].value for m in at.chat_message] == ["still fine?", "yes"]


def test_every_hostile_chat_text_is_answered_or_refused_and_the_chat_keeps_working(app_env, demo_qa):
    at = ok(AppTest.from_file(str(APP), default_timeout=TIMEOUT).run())
    at.sidebar.slider(key="temperature").set_value(0.0).run()
    for name, text in CHAT_TEXTS.items():
        at.sidebar.button(key="new_conversation").click().run()
        at.chat_input(key="chat_input").set_value(text).run()
        assert_rendered_safely(at, name)
        if len(text) > MAX_MESSAGE_CHARS:  # refused before it is stored
            assert at.error and f"{MAX_MESSAGE_CHARS:,}" in at.error[0].value and not at.chat_message, name
        elif text.strip():
            assert at.chat_message and (len(at.chat_message) == 2 or at.error), name  # a reply or a message
    at.sidebar.button(key="new_conversation").click().run()
    question, answer = demo_qa["en"]
    at.chat_input(key="chat_input").set_value(question).run()
    assert [m.markdown[0].value for m in ok(at).chat_message] == [question, answer]


@pytest.mark.parametrize("payload", MARKDOWN_PAYLOADS)
def test_payloads_render_with_no_image_and_no_unsafe_link(payload):
    assert safe_markdown(safe_markdown(payload)) == safe_markdown(payload)


def test_a_message_over_the_limit_is_refused_by_the_store_itself(tmp_path):
    """What a client that skips the browser's own limits sends reaches store.append unchecked: it checks."""
    store = ConversationStore(tmp_path / "store.sqlite3")
    conversation = store.create()
    with pytest.raises(InvalidRequest) as info:
        store.append(conversation.id, "user", "x" * (MAX_MESSAGE_CHARS + 1))
    assert info.value.code == "message_too_long" and f"{MAX_MESSAGE_CHARS:,}" in str(info.value)
    i18n.ERRORS_ZH["message_too_long"].format(**info.value.details)
    assert store.get(conversation.id).messages == []
    assert store.append(conversation.id, "user", "x" * MAX_MESSAGE_CHARS).content  # the limit itself is fine


def test_a_3_mb_question_in_the_chat_gets_a_message_and_is_not_stored(app_env):
    at = ok(AppTest.from_file(str(APP), default_timeout=TIMEOUT).run())
    at.chat_input(key="chat_input").set_value("q" * (3 << 20)).run()
    assert at.error and f"{MAX_MESSAGE_CHARS:,}" in at.error[0].value
    store = ConversationStore(app_env / "data" / "conversations.sqlite3")
    assert store.list(limit=100) == []  # not even an empty conversation is left behind
    at.chat_input(key="chat_input").set_value("still fine?").run()
    assert ok(at).chat_message[0].markdown[0].value == "still fine?"
