"""The MiniCPM5 test kit against the facts about OpenBMB's files (tests/minicpm5_facts.py): where the
factory and the facts differ, one of these fails."""

from __future__ import annotations

import json
from pathlib import Path

import minicpm5_facts as facts
import pytest
from transformers import AutoTokenizer

from minicpm_core.families.minicpm5 import MINICPM5
from testkit import minicpm5
from testkit.minicpm5 import demo_tool, make_config, write_checkpoint


@pytest.fixture(scope="module")
def ckpt(m5_ckpt) -> Path:
    return m5_ckpt


@pytest.fixture(scope="module")
def tok(ckpt):
    return AutoTokenizer.from_pretrained(ckpt, trust_remote_code=False)


def read(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def test_bos_is_id_0_added_by_the_tokenizer_and_written_by_the_template(ckpt, tok):
    assert (tok.bos_token, tok.bos_token_id) == facts.BOS
    assert (tok("x").input_ids[0] == facts.BOS[1]) is facts.TOKENIZER_ADDS_BOS
    template = (ckpt / "chat_template.jinja").read_text(encoding="utf-8")
    assert template.startswith(facts.TEMPLATE_WRITES_BOS)
    rendered = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert tok(rendered).input_ids[:2] == [facts.BOS[1]] * 2  # the double BOS every engine must avoid
    assert MINICPM5.encode_rendered(rendered, tok).count(facts.BOS[1]) == 1


def test_pad_eos_and_generation_config(ckpt, tok):
    config, generation = read(ckpt / "config.json"), read(ckpt / "generation_config.json")
    assert tok.pad_token_id == facts.PAD_ID == config["pad_token_id"]
    eos = [facts.EOS_IDS[0], tok.convert_tokens_to_ids(facts.EOS_IDS[1])]
    assert generation["eos_token_id"] == eos == config["eos_token_id"]
    assert {k: generation[k] for k in facts.GENERATION_CONFIG} == facts.GENERATION_CONFIG


def test_think_tags_are_single_added_tokens_at_their_ids(tok):
    for token, token_id in facts.THINK_TOKENS.items():
        assert tok.convert_tokens_to_ids(token) == token_id
        assert tok(token, add_special_tokens=False).input_ids == [token_id]


def test_tool_tags_are_special_tokens(tok):
    special = {t.content for t in tok.added_tokens_decoder.values() if t.special}
    assert set(facts.TOOL_TAGS_SPECIAL) <= special


def test_the_2b_shape_and_its_kv_cache(tok):
    config = make_config(size="2b")
    assert {k: config[k] for k in facts.SHAPE_2B} == facts.SHAPE_2B
    assert MINICPM5.kv_bytes_per_token(config, 2) == facts.KV_BYTES_PER_TOKEN_2B_BF16


@pytest.mark.parametrize("variant, sent_back_early", [("2b", True), ("1b", False)])
def test_earlier_reasoning_as_each_template_renders_it(tmp_path, variant, sent_back_early):
    minicpm5.write_tokenizer(tmp_path, template=variant)
    tok = AutoTokenizer.from_pretrained(tmp_path, trust_remote_code=False)
    messages = [{"role": "user", "content": "q1"}, {"role": "assistant", "content": "A1", "reasoning_content": "r1"},
                {"role": "assistant", "content": "A2"}, {"role": "user", "content": "q2"}]
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert ("<think>\nr1\n</think>\n\nA1" in text) is sent_back_early
    assert f"<|im_start|>assistant\n{facts.EMPTY_THINK}A2" in text  # none sent: the empty block


def test_tools_go_in_the_system_turn_and_results_come_back_as_tool_responses(tok):
    tool = demo_tool()["tool"]
    messages = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "a<b"}}}]},
        {"role": "tool", "content": "sunny"}]
    text = tok.apply_chat_template(messages, tools=[tool], tokenize=False, add_generation_prompt=True)
    system = text.split("<|im_end|>")[0]
    assert system.startswith("<s><|im_start|>system\n") and facts.TOOLS_IN_SYSTEM[0] in system
    assert json.dumps(tool["function"]) in system.split(facts.TOOLS_IN_SYSTEM[0])[1].split(facts.TOOLS_IN_SYSTEM[1])[0]
    assert '<function name="get_weather"><param name="city"><![CDATA[a<b]]></param></function>' in text
    assert f"{facts.TOOL_RESULT[0]}\nsunny\n{facts.TOOL_RESULT[1]}" in text


def test_a_factory_that_drifts_fails(tmp_path, monkeypatch):
    """The check can fail: a factory whose tokenizer adds no BOS is caught."""
    path = write_checkpoint(tmp_path)
    spec = read(path / "tokenizer.json")
    spec["post_processor"] = None
    (path / "tokenizer.json").write_text(json.dumps(spec), encoding="utf-8")
    settings = read(path / "tokenizer_config.json")
    (path / "tokenizer_config.json").write_text(json.dumps(dict(settings, add_bos_token=False)), encoding="utf-8")
    drifted = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    with pytest.raises(AssertionError):
        test_bos_is_id_0_added_by_the_tokenizer_and_written_by_the_template(path, drifted)
