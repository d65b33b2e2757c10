"""The Streamlit app through AppTest, on the demo checkpoint: one behaviour per test.

AppTest runs chat_app.py in this process, so the model (st.cache_resource, keyed by the options)
is loaded once and shared by every test; each test gets its own conversation store through
MINICPM_DATA_DIR. Greedy decoding (temperature 0, set with the sidebar slider, as a user would)
makes the demo model's canned answers exact.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

from minicpm_core import download, loader, paths
from minicpm_core.store import ConversationStore, default_db_path
from testkit import checkpoint
from ui import state
from ui.markdown_safe import plain_text

APP = Path(__file__).resolve().parent.parent / "chat_app.py"
TIMEOUT = 60  # seconds per script run; the first one imports torch and loads the model


@pytest.fixture(scope="module")
def demo_qa():
    by_question = dict(checkpoint.DEMO_QA)
    return {"en": ("hello", by_question["hello"]), "zh": ("你好", by_question["你好"])}


@pytest.fixture
def app_env(use_local_model, tmp_path, demo_ckpt):
    use_local_model(demo_ckpt, tmp_path / "data")
    return tmp_path


def start(query: dict | None = None, context: dict | None = None) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.query_params.update(query or {})
    if context:
        at.context.update(context)
    return at.run()


def ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    return at


def greedy(at: AppTest) -> AppTest:
    at.sidebar.slider(key="temperature").set_value(0.0).run()
    return ok(at)


def ask(at: AppTest, question: str) -> AppTest:
    at.chat_input(key="chat_input").set_value(question).run()
    return ok(at)


def bubbles(at: AppTest) -> list[tuple[str, str]]:
    return [(m.name, m.markdown[0].value) for m in at.chat_message]


def stored(conv_id: str):
    store = ConversationStore(default_db_path())
    try:
        return store.get(conv_id)
    finally:
        store.close()


def engine(at: AppTest):
    return at.session_state["_backend"]


# --- pages --------------------------------------------------------------------------------------

@pytest.mark.parametrize("page", ["app_pages/chat.py", "app_pages/compare.py", "app_pages/model.py"])
def test_each_page_renders_without_exception(app_env, page):
    at = ok(start())
    at.switch_page(page).run()
    ok(at)
    assert at.title, "every page has a title"
    assert at.sidebar.slider(key="temperature"), "the shared sidebar is on every page"


def test_model_page_shows_device_dtype_and_recent_replies(app_env, demo_qa):
    at = ask(greedy(start()), demo_qa["en"][0])
    at.switch_page("app_pages/model.py").run()
    table = ok(at).table[0].value.to_string()
    assert "cpu" in table and "float32" in table and "sdpa" in table
    assert len(at.dataframe[0].value) >= 1  # the reply just generated


def test_demo_flag_shows_the_banner_on_every_page(app_env, monkeypatch, demo_ckpt):
    monkeypatch.setenv("MINICPM_DEMO", "1")
    monkeypatch.setattr(paths, "demo_checkpoint_dir", lambda: Path(demo_ckpt))
    at = ok(start())
    for page in ("app_pages/chat.py", "app_pages/compare.py", "app_pages/model.py"):
        at.switch_page(page).run()
        assert "answers are canned" in ok(at).warning[0].value
    at.sidebar.segmented_control(key="language").set_value("zh").run()
    assert "回答是预设的" in ok(at).warning[0].value


def test_an_nvidia_gpu_pytorch_cannot_use_is_shown_on_every_page(app_env, monkeypatch):
    monkeypatch.setattr(loader, "nvidia_gpu_present", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # e.g. a driver older than torch's CUDA
    monkeypatch.setenv("MINICPM_DEVICE", "auto")  # a model of its own: the cached ones were loaded on "cpu"
    at = ok(start())
    for page in ("app_pages/chat.py", "app_pages/model.py"):
        at.switch_page(page).run()
        banner = ok(at).error[0].value
        assert "PyTorch cannot use it" in banner and "download.pytorch.org/whl/cu126" in banner


# --- chat -----------------------------------------------------------------------------------------

def examples(at: AppTest) -> dict[str, object]:
    """The example-question buttons of an empty chat, by label."""
    return {b.label: b for b in at.button if (b.key or "").startswith("example_")}


def test_an_empty_chat_offers_examples_that_go_once_it_starts(app_env):
    at = ok(start())
    assert list(examples(at))[1] == "Write a Python function that checks whether a number is prime."
    at.sidebar.segmented_control(key="language").set_value("zh").run()
    assert list(examples(ok(at)))[1] == "写一个判断素数的 Python 函数。"
    at = ask(at, "hi")
    assert not examples(at)
    at.sidebar.button(key="new_conversation").click().run()
    assert examples(ok(at))


def test_clicking_a_demo_example_asks_it_once(app_env, monkeypatch, demo_ckpt):
    monkeypatch.setenv("MINICPM_DEMO", "1")
    monkeypatch.setattr(paths, "demo_checkpoint_dir", lambda: Path(demo_ckpt))
    at = greedy(start())
    question = list(examples(at))[0]
    assert question == "Tell me a story."  # the demo offers what it was trained on
    examples(at)[question].click().run()
    expected = [("user", question), ("assistant", dict(checkpoint.DEMO_QA)[question])]
    assert bubbles(ok(at)) == expected
    assert not examples(at)
    assert [m.content for m in stored(at.query_params["c"]).messages][0] == question
    at.sidebar.slider(key="top_p").set_value(0.5).run()  # the next run, like the one a Stop click starts
    assert bubbles(ok(at)) == expected
    assert len(stored(at.query_params["c"]).messages) == 2, "the example was asked once"

def test_demo_question_gets_its_canned_answer_and_both_are_stored(app_env, demo_qa):
    question, answer = demo_qa["en"]
    at = ask(greedy(start()), question)
    assert bubbles(at) == [("user", question), ("assistant", answer)]
    conversation = stored(at.query_params["c"])
    assert [(m.role, m.content) for m in conversation.messages] == [("user", question), ("assistant", answer)]
    meta = conversation.messages[1].meta
    assert meta["finish_reason"] == "stop" and meta["completion_tokens"] > 0
    assert meta["params"]["temperature"] == 0.0
    assert meta["tokens_per_second"] is not None
    assert engine(at).running == 0 and engine(at).queue_depth == 0
    caption = at.chat_message[1].caption[0].value
    assert f"{meta['completion_tokens']} tokens" in caption and "finished" in caption


def test_reload_with_the_conversation_in_the_url_restores_it(app_env, demo_qa):
    question, answer = demo_qa["zh"]
    first = ask(greedy(start()), question)
    again = ok(start(query={"c": first.query_params["c"]}))
    assert bubbles(again) == [("user", question), ("assistant", answer)]
    assert again.title[0].value == question  # the conversation is named after its first question


def test_a_chosen_language_is_kept_in_the_url_across_reloads_and_pages_and_auto_removes_it(app_env):
    at = ok(start())
    at.sidebar.segmented_control(key="language").set_value("zh").run()
    assert ok(at).query_params["lang"] == "zh"
    reloaded = ok(start(query={"lang": "zh"}))  # a reload: a new session, only the URL remembers
    assert reloaded.title[0].value == "MiniCPM-2B 聊天"
    assert reloaded.sidebar.segmented_control(key="language").value == "zh"
    reloaded.switch_page("app_pages/model.py").run()
    assert ok(reloaded).query_params["lang"] == "zh" and reloaded.title[0].value == "模型"
    reloaded.sidebar.segmented_control(key="language").set_value("auto").run()
    assert "lang" not in ok(reloaded).query_params


def test_an_unknown_language_in_the_url_is_ignored(app_env):
    at = ok(start(query={"lang": "fr"}))
    assert at.sidebar.segmented_control(key="language").value == "auto"
    assert at.title[0].value == "MiniCPM-2B Chat"


def test_unknown_conversation_in_the_url_starts_a_new_one(app_env):
    at = ok(start(query={"c": "doesnotexist"}))
    assert at.warning and not at.chat_message
    assert "c" not in at.query_params


def test_regenerate_adds_a_version_of_the_reply_and_keeps_the_old_one(app_env, demo_qa):
    question, answer = demo_qa["en"]
    at = ask(greedy(start()), question)
    old_reply = stored(at.query_params["c"]).messages[1]
    at.button(key="regenerate").click().run()
    assert bubbles(ok(at)) == [("user", question), ("assistant", answer)]
    conversation = stored(at.query_params["c"])
    new_reply = conversation.messages[1]
    assert len(conversation.messages) == 2 and new_reply.id != old_reply.id
    assert conversation.versions[new_reply.id] == (old_reply.id, new_reply.id)
    assert at.button(key=f"newer_{new_reply.id}").disabled
    at.button(key=f"older_{new_reply.id}").click().run()
    assert stored(at.query_params["c"]).messages[1].id == old_reply.id  # the shown path is the old version
    assert not at.button(key=f"newer_{old_reply.id}").disabled


def test_editing_the_last_question_starts_a_branch_and_keeps_the_old_one(app_env, demo_qa):
    at = ask(greedy(start()), demo_qa["en"][0])
    old_question = stored(at.query_params["c"]).messages[0]
    edit_box = at.text_area(key=f"edit_text_{old_question.id}")
    assert edit_box.value == demo_qa["en"][0]
    edit_box.input(demo_qa["zh"][0])
    at.button(key="edit_send").click().run()
    assert bubbles(ok(at)) == [("user", demo_qa["zh"][0]), ("assistant", demo_qa["zh"][1])]
    conversation = stored(at.query_params["c"])
    assert len(conversation.messages) == 2
    at.button(key=f"older_{conversation.messages[0].id}").click().run()
    assert bubbles(ok(at)) == [("user", demo_qa["en"][0]), ("assistant", demo_qa["en"][1])]


def test_a_long_conversation_draws_its_newest_messages_and_shows_earlier_ones_on_request(app_env):
    store = ConversationStore(default_db_path())
    conv_id = store.create("long").id
    for i in range(25):
        store.append(conv_id, "user", f"question {i}")
        store.append(conv_id, "assistant", f"answer {i}")
    store.close()
    at = ok(start(query={"c": conv_id}))
    shown = bubbles(at)
    assert len(shown) == state.RECENT_MESSAGES and shown[-1] == ("assistant", "answer 24")
    assert shown[0] == ("user", f"question {25 - state.RECENT_MESSAGES // 2}")
    at.button(key="show_earlier").click().run()
    assert len(bubbles(ok(at))) == 2 * state.RECENT_MESSAGES
    at.button(key="show_earlier").click().run()
    assert bubbles(ok(at))[0] == ("user", "question 0") and len(bubbles(at)) == 50
    assert "show_earlier" not in [button.key for button in at.button]


def test_clear_removes_every_message(app_env, demo_qa):
    at = ask(greedy(start()), demo_qa["en"][0])
    at.button(key="clear_conversation").click().run()
    assert not ok(at).chat_message
    assert stored(at.query_params["c"]).messages == []


def test_a_refused_question_is_kept_and_the_error_shown(app_env):
    at = start()
    at.sidebar.slider(key="max_length").set_value(16).run()
    question = "How do I load the real model? " * 20  # far more than 16 tokens
    ask(at, question)
    assert "does not fit" in at.error[0].value
    assert [(m.role, m.content) for m in stored(at.query_params["c"]).messages] == [("user", question)]


def test_context_meter_counts_the_conversation(app_env, demo_qa):
    at = ask(greedy(start()), demo_qa["en"][0])
    meta = stored(at.query_params["c"]).messages[1].meta
    used = meta["prompt_tokens"] + meta["completion_tokens"]
    assert f"{used:,} / 4,096 tokens" in at.get("progress")[0].proto.text


def test_dropped_old_turns_are_announced(app_env, demo_qa):
    at = greedy(start())
    at.sidebar.slider(key="max_length").set_value(160).run()  # room for one exchange, not two
    ask(ask(at, demo_qa["en"][0]), demo_qa["zh"][0])
    assert stored(at.query_params["c"]).messages[-1].meta["turns_dropped"] == 1
    assert any("1 oldest turn" in caption.value for caption in at.caption)
    assert len(at.chat_message) == 4  # dropped from the prompt, never from the page or the store


# --- sidebar --------------------------------------------------------------------------------------

def test_sliders_and_settings_persist_across_page_switches(app_env):
    at = start()
    at.sidebar.slider(key="temperature").set_value(1.5).run()
    at.sidebar.number_input(key="seed").set_value(42).run()
    at.sidebar.text_area(key="system_prompt").input("Be brief.").run()
    for page in ("app_pages/compare.py", "app_pages/model.py", "app_pages/chat.py"):
        at.switch_page(page).run()
        ok(at)
        assert at.sidebar.slider(key="temperature").value == 1.5
        assert at.sidebar.number_input(key="seed").value == 42
        assert at.sidebar.text_area(key="system_prompt").value == "Be brief."


def checked_presets(at: AppTest) -> list[str]:
    return [b.key.removeprefix("preset_") for b in at.sidebar.button
            if b.key.startswith("preset_") and b.proto.icon]


def test_presets_set_the_sliders_and_reset_restores_the_schema_defaults(app_env):
    at = start()
    assert checked_presets(at) == ["balanced"]  # the defaults are the balanced preset
    at.sidebar.button(key="preset_precise").click().run()
    assert ok(at).sidebar.slider(key="temperature").value == 0.1
    assert at.sidebar.slider(key="top_p").value == 0.5
    assert checked_presets(at) == ["precise"]
    at.sidebar.slider(key="temperature").set_value(0.3).run()
    assert checked_presets(ok(at)) == []  # no preset has these values any more
    at.sidebar.slider(key="max_length").set_value(512).run()
    at.sidebar.button(key="reset_settings").click().run()
    values = {key: ok(at).sidebar.slider(key=key).value
              for key in ("temperature", "top_p", "repetition_penalty", "max_length")}
    assert values == {"temperature": 0.5, "top_p": 0.8, "repetition_penalty": 1.02, "max_length": 4096}


def test_language_switch_changes_labels(app_env):
    at = start()
    assert at.sidebar.button(key="new_conversation").label == "New conversation"
    at.sidebar.segmented_control(key="language").set_value("zh").run()
    assert ok(at).sidebar.button(key="new_conversation").label == "新对话"
    assert at.sidebar.slider(key="temperature").label == "温度 (temperature)"
    at.switch_page("app_pages/model.py").run()
    assert ok(at).title[0].value == "模型"  # the choice survives a page switch


# AppTest can fake the browser's locale from Streamlit 1.66 (Python 3.11+); 1.65 is the newest for 3.10.
@pytest.mark.skipif(not hasattr(AppTest.from_string(""), "context"), reason="this AppTest cannot set a locale")
def test_auto_language_follows_the_browser(app_env):
    chinese_browser = ok(start(context={"locale": "zh-CN"}))
    assert chinese_browser.sidebar.button(key="new_conversation").label == "新对话"


def test_conversations_can_be_switched_renamed_and_deleted(app_env, demo_qa):
    at = ask(greedy(start()), demo_qa["en"][0])
    first = at.query_params["c"]
    at.sidebar.button(key="new_conversation").click().run()
    assert not ok(at).chat_message and "c" not in at.query_params
    ask(at, demo_qa["zh"][0])
    second = at.query_params["c"]
    at.sidebar.button(key=f"conv_{first}").click().run()
    assert ok(at).query_params["c"] == first and bubbles(at)[0] == ("user", demo_qa["en"][0])
    at.sidebar.text_input(key=f"rename_title_{first}").input("Greetings")
    at.sidebar.button(key="rename_save").click().run()
    assert ok(at).sidebar.button(key=f"conv_{first}").label == "Greetings"
    at.sidebar.button(key="delete_conversation").click().run()
    assert stored(first) is None and stored(second) is not None
    assert "c" not in ok(at).query_params


def test_export_offers_markdown_and_json(app_env, demo_qa):
    at = ask(greedy(start()), demo_qa["en"][0])
    assert at.sidebar.download_button(key="export_markdown")
    assert at.sidebar.download_button(key="export_json")


def test_importing_a_bad_file_shows_why_without_an_exception(app_env):
    at = start()
    at.sidebar.file_uploader(key="import_file").set_value(("chat.json", b"{not json", "application/json")).run()
    assert "Cannot import this file" in ok(at).error[0].value
    at.sidebar.segmented_control(key="language").set_value("zh").run()
    at.sidebar.file_uploader(key="import_file").set_value(("chat.json", b"", "application/json")).run()
    assert "文件是空的" in ok(at).error[0].value


def test_importing_an_export_opens_it(app_env):
    at = start()
    exported = json.dumps([{"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "**Hello**"}])
    at.sidebar.file_uploader(key="import_file").set_value(("chat.json", exported.encode(), "application/json")).run()
    assert bubbles(ok(at)) == [("user", "Hi there"), ("assistant", "**Hello**")]
    assert at.success


# --- compare --------------------------------------------------------------------------------------

def test_compare_answers_one_prompt_under_two_settings(app_env, demo_qa, demo_ckpt):
    question, answer = demo_qa["en"]
    at = greedy(start())
    at.switch_page("app_pages/compare.py").run()
    at.slider(key="b_temperature").set_value(0.0).run()
    at.slider(key="b_max_length").set_value(1024).run()
    at.text_area(key="compare_prompt").input(question).run()
    at.button(key="compare_run").click().run()
    ok(at)
    left, right = at.main.columns[-2], at.main.columns[-1]
    assert any(m.value == answer for m in left.markdown)
    assert any(m.value == answer for m in right.markdown)
    assert "max_length 1024" in right.caption[0].value and "max_length 4096" in left.caption[0].value
    for side in (left, right):  # the model that answered first, as under a chat reply
        assert side.caption[-1].value.startswith(f"{plain_text(demo_ckpt.name)} · "), side.caption[-1].value
        assert re.search(r"· \d+ tokens · ", side.caption[-1].value)
    assert engine(at).running == 0 and engine(at).queue_depth == 0


# --- gates ----------------------------------------------------------------------------------------

def test_password_gate_blocks_until_the_right_password(app_env, monkeypatch):
    monkeypatch.setenv("MINICPM_PASSWORD", "s3cret")
    at = ok(start())
    assert not at.chat_input and not at.sidebar.slider
    at.text_input(key="password").input("wrong")
    at.button(key="login_submit").click().run()
    assert "Wrong password" in ok(at).error[0].value and not at.chat_input
    at.text_input(key="password").input("s3cret")
    at.button(key="login_submit").click().run()
    assert ok(at).chat_input(key="chat_input")


def test_missing_model_page_says_where_it_looked_and_what_to_run(app_env, monkeypatch):
    empty = app_env / "no-model-here"
    empty.mkdir()
    monkeypatch.setenv("MINICPM_MODEL", str(empty))
    at = ok(start())
    assert str(empty) in at.error[0].value
    assert not at.chat_input
    assert "download_model" not in [button.key for button in at.button]  # nothing to download into a folder
    assert any("--demo" in block.value for block in at.code)


def test_missing_model_page_speaks_chinese_too(app_env, monkeypatch):
    model_id = "OpenBMB/MiniCPM-2B-sft-fp32"
    monkeypatch.setenv("MINICPM_MODEL", model_id)
    monkeypatch.setenv("MINICPM_CACHE_DIR", str(app_env / "models"))
    at = ok(start())
    at.sidebar.segmented_control(key="language").set_value("zh").run()
    message = at.error[0].value
    assert "还没有下载" in message and str(download.default_model_dir(model_id, app_env / "models")) in message
    assert f"`{download.download_command(model_id, str(app_env / 'models'))}`" in message
    assert "has not been downloaded" not in message


def test_download_button_fetches_the_model_and_opens_the_chat(app_env, monkeypatch, demo_ckpt):
    model_id = "OpenBMB/MiniCPM-2B-sft-bf16"
    monkeypatch.setenv("MINICPM_MODEL", model_id)
    monkeypatch.setenv("MINICPM_CACHE_DIR", str(app_env / "models"))
    target = download.default_model_dir(model_id, app_env / "models")
    at = ok(start())
    assert str(target) in at.error[0].value  # where it looked
    assert any(block.value == download.download_command(model_id, str(app_env / "models")) for block in at.code)

    def fake_download(model, cache_dir):  # ModelScope is out of reach in tests: copy the demo model
        assert (model, Path(cache_dir)) == (model_id, app_env / "models")
        shutil.copytree(demo_ckpt, target)
        return target

    monkeypatch.setattr(download, "download_model", fake_download)
    at.button(key="download_model").click().run()
    assert ok(at).chat_input(key="chat_input") and not at.error


def test_password_can_come_from_secrets(app_env):
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.secrets["password"] = "from-secrets"
    assert not ok(at.run()).chat_input
    at.text_input(key="password").input("from-secrets")
    at.button(key="login_submit").click().run()
    assert ok(at).chat_input(key="chat_input")
