"""Thinking in the app, through AppTest on the shipped MiniCPM5 demo (`--demo-family minicpm5`): the
switch, the reasoning block, what is stored and exported, and what the next prompt holds. MiniCPM-2B
(the plain demo checkpoint) shows none of it.

Greedy decoding makes the demo's replies exact: its qa.jsonl holds each question's reasoning and answer.
"""

from __future__ import annotations

import json

import pytest
from streamlit.testing.v1 import AppTest

from minicpm_core.store import ConversationStore, default_db_path
from test_app import APP, TIMEOUT, ask, greedy, ok, stored
from testkit.minicpm5 import demo_qa

QA = {question: (reasoning, answer) for question, reasoning, answer in demo_qa()}


@pytest.fixture
def thinking_demo(use_local_model, tmp_path, monkeypatch):
    use_local_model(tmp_path / "unused", tmp_path / "data")
    monkeypatch.setenv("MINICPM_DEMO_FAMILY", "minicpm5")  # implies --demo
    return tmp_path


def start() -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    return greedy(ok(at))


def reasoning_blocks(at: AppTest) -> list:
    return list(at.status)


def test_the_thinking_demo_offers_its_own_questions_and_the_switch(thinking_demo):
    at = start()
    examples = [b.label for b in at.button if (b.key or "").startswith("example_")]
    assert examples[:2] == ["hello", "What is 2 + 3?"]  # from its qa.jsonl, English ones first
    assert set(examples) <= set(QA)
    assert [toggle.label for toggle in at.sidebar.toggle] == ["Think before answering"]
    assert at.sidebar.toggle(key="enable_thinking").value is True  # the template leaves it to the model
    at.sidebar.segmented_control(key="language").set_value("zh").run()
    assert [b.label for b in ok(at).button if (b.key or "").startswith("example_")][0] == "你好"
    assert [toggle.label for toggle in at.sidebar.toggle] == ["先思考再回答"]


def test_the_pages_name_the_loaded_models_family(thinking_demo, use_local_model, tmp_path, demo_ckpt):
    at = start()
    assert at.chat_input(key="chat_input").placeholder == "Ask MiniCPM5 anything…"
    assert "real MiniCPM5 checkpoint" in at.warning[0].value
    use_local_model(demo_ckpt, tmp_path / "data2")  # clears MINICPM_DEMO_FAMILY: the MiniCPM-2B demo
    at = start()
    assert at.chat_input(key="chat_input").placeholder == "Ask MiniCPM-2B anything…"


def test_the_reasoning_is_stored_shown_collapsed_and_never_sent_back(thinking_demo, monkeypatch):
    at = start()
    engine = at.session_state["_backend"]
    prompts = []
    prepare = engine.prepare

    def recording_prepare(messages, *args, **kwargs):
        prompt = prepare(messages, *args, **kwargs)
        prompts.append(engine.tokenizer.decode(prompt.ids))
        return prompt
    monkeypatch.setattr(engine, "prepare", recording_prepare)

    reasoning, answer = QA["hello"]
    at = ask(at, "hello")
    [block] = reasoning_blocks(at)
    assert block.proto.expanded is False and block.label.startswith("Thought for ")
    assert block.markdown[0].value == reasoning
    message = at.chat_message[1]
    assert message.markdown[-1].value == answer  # the answer, below its block
    meta = stored(at.query_params["c"]).messages[1].meta
    assert meta["reasoning"] == reasoning and meta["reasoning_tokens"] > 0
    assert f"{meta['reasoning_tokens']} tokens" in block.label
    assert stored(at.query_params["c"]).messages[1].content == answer

    reloaded = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    reloaded.query_params["c"] = at.query_params["c"]
    [block] = reasoning_blocks(ok(reloaded.run()))  # a new session: drawn again from the store
    assert block.proto.expanded is False and block.markdown[0].value == reasoning

    prompts.clear()
    ask(at, "What is 2 + 3?")
    sent = [p for p in prompts if "What is 2 + 3?" in p]
    assert sent, prompts
    assert all(reasoning not in p for p in sent) and all(answer in p for p in sent)


def test_a_reply_cut_inside_think_says_so(thinking_demo):
    at = start()
    at.sidebar.slider(key="max_length").set_value(32).run()
    at = ask(ok(at), "hello")
    assert len(reasoning_blocks(at)) == 1
    assert any("still thinking" in w.value for w in at.warning)
    meta = stored(at.query_params["c"]).messages[1].meta
    assert meta["ended_in_reasoning"] is True and meta["finish_reason"] == "length"


def test_switching_thinking_off_reaches_the_template(thinking_demo, monkeypatch):
    at = start()
    engine = at.session_state["_backend"]
    asked = []
    submit = engine.submit

    def recording_submit(messages, params=None, **kwargs):
        asked.append(getattr(kwargs.get("options"), "enable_thinking", None))
        return submit(messages, params, **kwargs)
    monkeypatch.setattr(engine, "submit", recording_submit)
    at = ask(at, "hello")
    at.sidebar.toggle(key="enable_thinking").set_value(False).run()
    at = ask(ok(at), "What is 2 + 3?")
    assert asked == [None, False]  # the model decides until the switch is flipped
    assert not stored(at.query_params["c"]).messages[3].meta.get("reasoning")


def test_export_and_import_keep_the_reasoning(thinking_demo):
    at = ask(start(), "hello")
    store = ConversationStore(default_db_path())
    try:
        exported = store.export_json(at.query_params["c"])
        markdown = store.export_markdown(at.query_params["c"])
        imported = store.import_json(exported)
        old_style = json.loads(exported)  # an export from before reasoning was stored still imports
        for message in old_style["messages"]:
            for key in ("reasoning", "reasoning_tokens", "reasoning_seconds", "ended_in_reasoning"):
                message["meta"].pop(key, None)
        plain = store.import_json(json.dumps(old_style).encode())
        bad = json.loads(exported)
        bad["messages"][1]["meta"]["reasoning"] = 42
        with pytest.raises(Exception, match="reasoning"):
            store.import_json(json.dumps(bad).encode())
    finally:
        store.close()
    assert imported.messages[1].meta["reasoning"] == QA["hello"][0]
    assert f"> {QA['hello'][0]}\n\n{QA['hello'][1]}" in markdown  # the reasoning quoted above the answer
    assert "reasoning" not in plain.messages[1].meta


def test_minicpm_2b_shows_no_switch_and_no_block(use_local_model, tmp_path, demo_ckpt):
    use_local_model(demo_ckpt, tmp_path / "data")
    at = ask(start(), "hello")
    assert not at.sidebar.toggle and not reasoning_blocks(at)
    assert "reasoning" not in stored(at.query_params["c"]).messages[1].meta


# --- the family's defaults and the KV budget ------------------------------------------------------

def test_the_sidebar_takes_the_familys_defaults_and_says_how_max_length_was_chosen(thinking_demo):
    at = ok(AppTest.from_file(str(APP), default_timeout=TIMEOUT).run())
    family = at.session_state["_backend"].lm.family
    for name, value in family.defaults.items():
        if name in ("temperature", "top_p", "repetition_penalty", "min_p"):
            assert at.sidebar.slider(key=name).value == value, name
    assert any("context is 131,072 tokens" in c.value for c in at.sidebar.caption)


def test_minicpm_2b_keeps_its_defaults(use_local_model, tmp_path, demo_ckpt):
    use_local_model(demo_ckpt, tmp_path / "data")
    at = ok(AppTest.from_file(str(APP), default_timeout=TIMEOUT).run())
    values = {name: at.sidebar.slider(key=name).value for name in ("temperature", "top_p", "max_length")}
    assert values == {"temperature": 0.5, "top_p": 0.8, "max_length": 4096}
    assert not any("context is" in c.value for c in at.sidebar.caption)


def test_a_long_contexts_default_max_length_is_what_its_kv_cache_fits(monkeypatch):
    from minicpm_core import engine, paths
    from minicpm_core.loader import load_model

    lm = load_model(paths.demo_model_dir("minicpm5"), device="cpu", dtype="float32")
    config = lm.model.config
    per_token = 2 * config.num_hidden_layers * config.num_key_value_heads * config.head_dim * 4
    assert lm.family.kv_bytes_per_token(config.to_dict(), lm.model.dtype.itemsize) == per_token
    monkeypatch.setattr(engine, "free_memory_bytes", lambda device: 1000 * per_token)
    budget = engine.kv_budget(lm)
    assert budget.max_length == int(1000 * engine.KV_MEMORY_SHARE) // 16 * 16 and budget.limited_by_memory
    monkeypatch.setattr(engine, "free_memory_bytes", lambda device: 10**15)
    assert engine.kv_budget(lm).max_length == lm.context_length == 131072
    two_b = load_model(paths.demo_model_dir(), device="cpu", dtype="float32")
    monkeypatch.setattr(engine, "free_memory_bytes", lambda device: 0)
    assert engine.kv_budget(two_b).max_length == 4096  # MiniCPM-2B's default is its context, as before
