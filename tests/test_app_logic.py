"""The app's logic below the pages: strings, settings from the schema, and streaming a reply into
the store when the reader goes away (what a Streamlit rerun or Stop does to `st.write_stream`).
"""

from __future__ import annotations

import re
import string

from pathlib import Path

import pytest
import torch
from test_store import BAD_IMPORTS

import minicpm_core as core
from minicpm_core import download
from minicpm_core.engine import Engine, failure
from minicpm_core.errors import MiniCPMError
from minicpm_core.loader import load_model
from minicpm_core.params import PRESETS, GenerationParams, matching_preset
from minicpm_core.prompt import MAX_MESSAGES, validate_messages
from minicpm_core.store import ConversationStore
from testkit import checkpoint
from ui import actions, examples, i18n, notices, state
from ui import streaming as chat_streaming
from ui.captions import reply_caption
from ui.history import prompt_messages


# --- strings ----------------------------------------------------------------------------------------

def _placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_both_languages_have_the_same_keys_no_empty_values_and_the_same_placeholders():
    en, zh = i18n.STRINGS["en"], i18n.STRINGS["zh"]
    assert set(en) == set(zh)
    for key in en:
        assert en[key].strip() and zh[key].strip(), key
        assert _placeholders(en[key]) == _placeholders(zh[key]), key


def test_every_parameter_on_the_sidebar_has_a_label_and_help_in_both_languages():
    for name in (*state.SLIDER_PARAMS, "seed"):
        for language in ("en", "zh"):
            assert i18n.STRINGS[language][f"param_{name}"] and i18n.STRINGS[language][f"help_{name}"]
    assert i18n.STRINGS["en"]["help_temperature"] == GenerationParams.help("temperature")


@pytest.mark.parametrize(("choice", "locale", "expected"), [
    ("auto", "zh-CN", "zh"), ("auto", "zh-TW", "zh"), ("auto", "en-US", "en"), ("auto", None, "en"),
    ("en", "zh-CN", "en"), ("zh", "de-DE", "zh"), (None, "zh", "zh"),
])
def test_language_follows_the_choice_then_the_browser(choice, locale, expected):
    assert i18n.resolve_language(choice, locale) == expected


def test_every_string_key_used_in_the_code_exists():
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    used = set()
    for path in [root / "chat_app.py", *(root / "ui").glob("*.py"), *(root / "app_pages").glob("*.py")]:
        used |= set(re.findall(r'\bt\("([a-z0-9_]+)"', path.read_text(encoding="utf-8")))
    assert used and used <= set(i18n.STRINGS["en"])


# --- settings from the schema -----------------------------------------------------------------------

@pytest.mark.parametrize("name", state.SLIDER_PARAMS)
def test_sliders_take_range_and_default_from_the_schema(name):
    spec = state.slider_spec(name)
    low, high = GenerationParams.field_range(name)
    assert low <= spec.low < spec.high <= high
    assert spec.default == GenerationParams.model_fields[name].default
    GenerationParams.parse({name: spec.low})  # both ends are valid values
    GenerationParams.parse({name: spec.high})


@pytest.mark.parametrize("preset", PRESETS)
def test_presets_land_on_the_slider_grid(preset):
    for name, value in PRESETS[preset].items():
        spec = state.slider_spec(name)
        steps = (value - spec.low) / spec.step
        assert spec.low <= value <= spec.high and abs(steps - round(steps)) < 1e-6, (name, value)


@pytest.mark.parametrize("preset", PRESETS)
def test_a_preset_matches_itself_and_nothing_else(preset):
    values = dict(state.default_settings(), **PRESETS[preset])
    assert matching_preset(values) == preset
    values["top_p"] = 0.33
    assert matching_preset(values) is None


def test_demo_examples_are_questions_the_demo_model_knows():
    known = {question for question, _ in checkpoint.DEMO_QA}
    for language, questions in examples.DEMO_EXAMPLES.items():
        assert set(questions) <= known, language
        assert all(bool(re.search(r"[\u4e00-\u9fff]", q)) == (language == "zh") for q in questions), language


def test_default_settings_are_the_default_parameters():
    assert state.params_from(state.default_settings()) == GenerationParams()


# --- a reply streamed into the store, and what happens when its reader leaves ----------------------

class Interrupted(Exception):
    """Stands in for Streamlit's RerunException/StopException, raised by a drawing call."""


@pytest.fixture(scope="module")
def demo_engine(demo_ckpt):
    engine = Engine(load_model(demo_ckpt, device="cpu", dtype="float32"))
    yield engine
    engine.close()


@pytest.fixture
def store(tmp_path):
    store = ConversationStore(tmp_path / "chat.sqlite3")
    yield store
    store.close()


GREEDY = GenerationParams(temperature=0.0)


def _recorder(store, engine, question, on_queue=None):
    conv_id, _ = actions.ask(store, None, question)
    generation = engine.submit(prompt_messages(store.get(conv_id)), GREEDY)
    message = store.append(conv_id, "assistant", "", chat_streaming.reply_meta(None, GREEDY))
    return conv_id, generation, chat_streaming.ReplyRecorder(store, conv_id, message.id, generation, GREEDY, on_queue)


def test_a_finished_reply_is_stored_with_its_numbers(store, demo_engine):
    question, answer = checkpoint.DEMO_QA[0]
    conv_id, generation, recorder = _recorder(store, demo_engine, question)
    assert "".join(recorder.stream()) == answer
    reply = store.get(conv_id).messages[-1]
    assert reply.content == answer
    assert reply.meta["finish_reason"] == "stop"
    assert reply.meta["completion_tokens"] == generation.stats.completion_tokens


def test_leaving_mid_reply_keeps_the_partial_text_marked_stopped_and_frees_the_engine(store, demo_engine):
    question, answer = checkpoint.DEMO_QA[1]
    conv_id, generation, recorder = _recorder(store, demo_engine, question)
    stream = recorder.stream()
    first = next(stream)
    stream.close()  # what a rerun does to the generator st.write_stream was reading
    assert generation.wait(timeout=30)
    assert demo_engine.running == 0 and demo_engine.queue_depth == 0
    messages = store.get(conv_id).messages
    assert [m.role for m in messages] == ["user", "assistant"] and messages[0].content == question
    assert messages[1].content == first and answer.startswith(first) and first != answer
    assert messages[1].meta["finish_reason"] == "cancelled"
    assert "stopped" in reply_caption(messages[1].meta)


def test_leaving_while_queued_withdraws_the_request(store, demo_engine):
    busy = demo_engine.submit([{"role": "user", "content": checkpoint.DEMO_QA[2][0]}], GREEDY)
    positions = []

    def interrupt(position):
        positions.append(position)
        raise Interrupted

    conv_id, queued, recorder = _recorder(store, demo_engine, checkpoint.DEMO_QA[3][0], interrupt)
    with pytest.raises(Interrupted):
        next(recorder.stream())
    assert positions and positions[0] >= 1
    assert queued.done and queued.stats.finish_reason == "cancelled" and queued.stats.completion_tokens == 0
    assert store.get(conv_id).messages[-1].meta["finish_reason"] == "cancelled"
    busy.result()  # the request ahead is unaffected
    assert busy.stats.finish_reason == "stop"
    assert demo_engine.running == 0 and demo_engine.queue_depth == 0


# --- errors in Chinese ----------------------------------------------------------------------------

CJK = re.compile(r"[\u4e00-\u9fff]")


@pytest.fixture
def in_chinese(monkeypatch):
    monkeypatch.setattr(i18n, "current_language", lambda: "zh")


def caught(action) -> MiniCPMError:
    with pytest.raises(MiniCPMError) as info:
        action()
    return info.value


@pytest.mark.parametrize("data", [data for data, _ in BAD_IMPORTS.values()], ids=BAD_IMPORTS.keys())
def test_every_bad_import_file_is_explained_in_chinese(in_chinese, store, data):
    error = caught(lambda: store.import_json(data))
    text = notices.error_text(error)
    assert error.code in i18n.ERRORS_ZH and text.startswith("**无法导入这个文件。**")
    assert CJK.search(text.split("\n\n", 1)[1]) and "Cannot import" not in text


def test_chat_errors_are_explained_in_chinese_with_their_numbers(in_chinese, store, demo_engine):
    overflow = caught(lambda: demo_engine.submit([{"role": "user", "content": "river " * 5000}]))
    assert overflow.code == "context_overflow"  # tokenized: its exact length
    assert f"有 {overflow.details['tokens']} 个 token" in i18n.error_message(overflow)
    assert "最多 4096 个 token" in i18n.error_message(overflow)
    huge = caught(lambda: demo_engine.submit([{"role": "user", "content": "river " * 100_000}]))
    assert huge.code == "context_overflow_at_least"  # refused by its length, before tokenizing
    assert f"至少有 {huge.details['tokens']} 个 token" in i18n.error_message(huge)

    oom = failure(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert i18n.error_message(oom).startswith("生成时显存不足")

    gone = store.create()
    store.delete(gone.id)
    assert CJK.search(i18n.error_message(caught(lambda: store.append(gone.id, "user", "hi"))))


def test_english_shows_the_cores_own_message(store):
    error = caught(lambda: store.import_json(b"   "))
    assert i18n.error_message(error) == str(error)


def test_every_chinese_error_text_has_an_error_that_uses_it():
    sources = "".join(path.read_text(encoding="utf-8") for path in Path(core.__file__).parent.rglob("*.py"))
    # InvalidImport(problem, "empty") has the code "import_empty"; the others say code="...".
    unused = [code for code in i18n.ERRORS_ZH
              if f'code="{code}"' not in sources and f'"{code.removeprefix("import_")}"' not in sources]
    assert not unused


def test_model_errors_in_chinese_keep_the_path_and_the_command(in_chinese, tmp_path):
    missing = caught(lambda: download.check_model_dir(tmp_path / "typo"))
    partial = tmp_path / "OpenBMB" / "MiniCPM-2B-sft-bf16"
    partial.mkdir(parents=True)
    (partial / "config.json").write_text("{}")
    incomplete_dir = caught(lambda: download.check_model_dir(partial))
    incomplete_id = caught(lambda: download.resolve_source("OpenBMB/MiniCPM-2B-sft-bf16", tmp_path))
    for error, says in ((missing, "目录不存在"), (incomplete_dir, "不完整"), (incomplete_id, "下载不完整")):
        text = i18n.error_message(error)
        assert says in text and str(error.details.get("path") or error.details["target"]) in text
        assert f"    {error.details['command']}" in text  # drawn as a code line
    assert "tokenizer.model" in i18n.error_message(incomplete_dir)  # says what is missing


def test_the_prompt_of_a_conversation_longer_than_a_request_may_be_keeps_its_newest_messages(store):
    conv = store.create()
    for i in range(MAX_MESSAGES // 2):
        store.append(conv.id, "user", f"q{i}")
        store.append(conv.id, "assistant", f"a{i}")
    store.append(conv.id, "user", "the new question")
    messages = prompt_messages(store.get(conv.id), "Be brief.")
    assert len(messages) == MAX_MESSAGES and messages[0]["content"] == "Be brief."
    assert messages[-1]["content"] == "the new question" and validate_messages(messages)
