"""Versions in the app (AppTest): what the model reads next is the shown path, and a thinking reply
keeps its reasoning block and its model's caption when another version is shown and back."""

from __future__ import annotations

import pytest

from ui.markdown_safe import plain_text

from test_app import ask, greedy, ok, start, stored
from test_app_thinking import QA, thinking_demo  # noqa: F401  (a fixture)
from test_app_thinking import start as start_thinking


@pytest.fixture
def app_env(use_local_model, tmp_path, demo_ckpt):
    use_local_model(demo_ckpt, tmp_path / "data")
    return tmp_path


def record_prompts(at, monkeypatch) -> list[list[dict]]:
    """The message lists the engine is asked to encode, from now on."""
    engine = at.session_state["_backend"]
    prompts: list[list[dict]] = []
    prepare = engine.prepare

    def recording_prepare(messages, *args, **kwargs):
        prompts.append([dict(m) for m in messages])
        return prepare(messages, *args, **kwargs)
    monkeypatch.setattr(engine, "prepare", recording_prepare)
    return prompts


def test_the_model_reads_the_shown_branch_and_not_the_hidden_one(app_env, monkeypatch):
    at = ask(greedy(start()), "hello")
    first_question = stored(at.query_params["c"]).messages[0]
    at.text_area(key=f"edit_text_{first_question.id}").input("你好")
    at.button(key="edit_send").click().run()
    at.button(key=f"older_{stored(at.query_params['c']).messages[0].id}").click().run()  # back to "hello"
    prompts = record_prompts(ok(at), monkeypatch)
    ask(at, "What is 2+3?")
    asked = [m["content"] for m in prompts[-1] if m["role"] == "user"]
    assert asked == ["hello", "What is 2+3?"]


def test_a_thinking_reply_keeps_its_block_and_caption_when_another_version_is_shown(thinking_demo):  # noqa: F811
    at = ask(start_thinking(), "hello")
    reasoning, answer = QA["hello"]
    first = stored(at.query_params["c"]).messages[1]
    at.sidebar.toggle(key="enable_thinking").set_value(False).run()
    at.button(key="regenerate").click().run()
    second = stored(ok(at).query_params["c"]).messages[1]
    assert second.id != first.id and "reasoning" not in second.meta
    assert not at.status  # the shown version did not think
    at.button(key=f"older_{second.id}").click().run()
    [block] = ok(at).status
    assert block.markdown[0].value == reasoning
    assert at.chat_message[1].markdown[-1].value == answer
    assert at.chat_message[1].caption[0].value.startswith(plain_text(first.meta["model"]))  # the model that wrote it
