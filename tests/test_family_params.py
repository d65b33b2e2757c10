"""Generation parameters per family: the schema's token-count bound is the longest context of any
family, the loaded family's context is checked by the engine with the schema's own message, presets
derive from each family's recommended values, and a checkpoint's published id is known from --model.
"""

from __future__ import annotations

import pytest

from minicpm_core.engine import Engine
from minicpm_core.errors import InvalidRequest
from minicpm_core.families import FAMILIES
from minicpm_core.families.minicpm2b import MINICPM_2B
from minicpm_core.families.minicpm5 import MINICPM5
from minicpm_core.loader import load_model
from minicpm_core.params import MAX_CONTEXT, PRESETS, GenerationParams, matching_preset

QUESTION = [{"role": "user", "content": "hello"}]  # the thinking demo answers it and stops, greedy

# What MiniCPM-2B's presets have always been (the seed's values are "balanced").
MINICPM_2B_PRESETS = {
    "precise": {"temperature": 0.1, "top_p": 0.5, "repetition_penalty": 1.02},
    "balanced": {"temperature": 0.5, "top_p": 0.8, "repetition_penalty": 1.02},
    "creative": {"temperature": 0.9, "top_p": 0.95, "repetition_penalty": 1.05},
}


@pytest.fixture(scope="module")
def m2b_engine(demo_ckpt):
    engine = Engine(load_model(demo_ckpt, device="cpu", dtype="float32"))
    yield engine
    engine.close()


def refusal(call) -> str:
    with pytest.raises(InvalidRequest) as caught:
        call()
    return str(caught.value)


# --- ranges ----------------------------------------------------------------------------------------

def test_the_schema_bounds_token_counts_by_the_longest_family_context():
    assert MAX_CONTEXT == max(family.context_length for family in FAMILIES) == MINICPM5.context_length
    assert GenerationParams.field_range("max_length") == (16, MAX_CONTEXT)
    assert GenerationParams.field_range("max_new_tokens") == (1, MAX_CONTEXT)
    assert GenerationParams.field_range("max_length", MINICPM_2B.context_length) == (16, 4096)
    assert GenerationParams.field_range("temperature", 4096) == (0.0, 2.0)  # not a token count
    assert GenerationParams().max_length == 4096  # the default stays the default family's context


def test_parse_with_a_context_refuses_beyond_it_in_the_schema_wording():
    assert GenerationParams.parse({"max_length": 8192}).max_length == 8192
    assert refusal(lambda: GenerationParams.parse({"max_length": 8192}, context=4096)) == \
        "max_length must be between 16 and 4096; got 8192."
    assert refusal(lambda: GenerationParams.parse({"max_new_tokens": 10 ** 6}, context=4096,
                                                  shown_as={"max_new_tokens": "max_tokens"})) == \
        "max_tokens must be between 1 and 4096; got 1000000."


def test_a_minicpm5_engine_takes_8192_new_tokens_and_refuses_one_past_its_context(m5_demo_engine):
    greedy = {"temperature": 0.0, "max_new_tokens": 8192}
    generation = m5_demo_engine.submit(QUESTION, greedy, enable_thinking=True)
    assert generation.result() and generation.stats.finish_reason == "stop"
    m5_demo_engine.submit(QUESTION, GenerationParams(max_length=MAX_CONTEXT, **greedy)).result()
    assert refusal(lambda: m5_demo_engine.submit(QUESTION, {"max_new_tokens": MAX_CONTEXT + 1})) == \
        f"max_new_tokens must be between 1 and {MAX_CONTEXT}; got {MAX_CONTEXT + 1}."


def test_a_minicpm_2b_engine_refuses_beyond_4096_even_as_built_params(m2b_engine):
    assert refusal(lambda: m2b_engine.submit(QUESTION, {"max_new_tokens": 4097})) == \
        "max_new_tokens must be between 1 and 4096; got 4097."
    assert refusal(lambda: m2b_engine.submit(QUESTION, GenerationParams(max_length=8192))) == \
        "max_length must be between 16 and 4096; got 8192."


# --- presets ---------------------------------------------------------------------------------------

def test_minicpm_2b_presets_are_what_they_always_were():
    assert MINICPM_2B.presets() == PRESETS == MINICPM_2B_PRESETS
    assert list(PRESETS) == ["precise", "balanced", "creative"]


def test_minicpm5_balanced_is_its_recommended_values_and_the_others_derive_from_them():
    presets = MINICPM5.presets()
    assert list(presets) == ["precise", "balanced", "creative"]
    assert presets["balanced"] == dict(MINICPM5.defaults)
    assert (presets["balanced"]["temperature"], presets["balanced"]["top_p"]) == (1.0, 0.95)
    assert presets["precise"]["temperature"] < 1.0 < presets["creative"]["temperature"]
    assert all(p["repetition_penalty"] == 1.0 and p["min_p"] == 0.0 for p in presets.values())
    assert matching_preset(dict(MINICPM5.defaults), presets) == "balanced"
    assert matching_preset(dict(MINICPM5.defaults)) is None  # not one of MiniCPM-2B's


@pytest.mark.parametrize(("thinking", "temperature"), [(True, 0.9), (False, 0.7), (None, 0.9)])
def test_minicpm5_1b_balanced_is_its_temperature_for_the_mode(thinking, temperature):
    balanced = MINICPM5.presets("OpenBMB/MiniCPM5-1B", thinking)["balanced"]
    assert (balanced["temperature"], balanced["top_p"]) == (temperature, 0.95)
    assert MINICPM5.presets("OpenBMB/MiniCPM5-2B", thinking)["balanced"]["temperature"] == 1.0


# --- which published checkpoint is loaded ----------------------------------------------------------

@pytest.mark.parametrize(("source", "expected"), [
    ("OpenBMB/MiniCPM5-1B", "OpenBMB/MiniCPM5-1B"),
    ("openbmb/minicpm5-1b-sft", "OpenBMB/MiniCPM5-1B-SFT"),
    ("/root/autodl-tmp/models/MiniCPM5-1B", "OpenBMB/MiniCPM5-1B"),
    ("/root/autodl-tmp/models/minicpm5-2b/", "OpenBMB/MiniCPM5-2B"),
    ("/root/models/MiniCPM5-1B-GGUF", None),
    ("/data/demo/model", None),
    ("OpenBMB/MiniCPM-2B-sft-bf16", None),  # another family's
    ("", None),
    (None, None),
])
def test_the_loaded_checkpoint_is_known_by_its_id_or_its_directory_name(source, expected):
    model = MINICPM5.known_model(source)
    assert (model.id if model else None) == expected
    assert MINICPM_2B.known_model("openbmb/minicpm-2b-SFT-fp32").id == "OpenBMB/MiniCPM-2B-sft-fp32"
