"""min_p, the parameter added to GenerationParams alone: the engine samples with it, and /v1 (as an
extra body field), POST / and the remote backend carry it.

min_p = 1.0 keeps only the most likely token, so at temperature 1.0 any seed gives the greedy reply;
min_p = 0 is off, so a seeded reply is the one without the field.
"""

from __future__ import annotations

import pytest

from minicpm_core.params import GenerationParams
from minicpm_core.remote import HONOURED_EXTRAS, RemoteBackend, request_arguments

from .support import ask

SEEDS = (1, 2, 3, 4)
QUESTION = ask("hello there")
SAMPLED = {"temperature": 1.0, "top_p": 1.0, "max_new_tokens": 24}
GREEDY = {"temperature": 0, "max_new_tokens": 24}


@pytest.fixture(scope="module")
def greedy_reply(tiny_engine):
    return tiny_engine.chat(QUESTION, GREEDY)[0]


def test_min_p_1_at_temperature_1_gives_the_greedy_reply_for_any_seed(tiny_engine, greedy_reply):
    for seed in SEEDS:
        assert tiny_engine.chat(QUESTION, SAMPLED | {"min_p": 1.0, "seed": seed})[0] == greedy_reply, seed


def test_without_min_p_those_seeds_sample_away_from_the_greedy_reply(tiny_engine, greedy_reply):
    replies = {tiny_engine.chat(QUESTION, SAMPLED | {"seed": seed})[0] for seed in SEEDS}
    assert replies - {greedy_reply}  # so the test above can fail


def test_min_p_0_changes_nothing(tiny_engine):
    for seed in SEEDS[:2]:
        without = tiny_engine.chat(QUESTION, SAMPLED | {"seed": seed})[0]
        assert tiny_engine.chat(QUESTION, SAMPLED | {"seed": seed, "min_p": 0.0})[0] == without


def test_v1_takes_min_p_as_an_extra_body_field(tiny_client, greedy_reply):
    for seed in SEEDS[:2]:
        body = {"messages": QUESTION, "temperature": 1.0, "top_p": 1.0, "max_tokens": 24, "seed": seed,
                "min_p": 1.0}
        response = tiny_client.post("/v1/chat/completions", json=body)
        assert response.status_code == 200, response.text
        assert response.json()["choices"][0]["message"]["content"] == greedy_reply


def test_seed_endpoint_takes_min_p(tiny_client, greedy_reply):
    body = {"prompt": "hello there", "temperature": 1.0, "top_p": 1.0, "max_new_tokens": 24, "seed": 9,
            "min_p": 1.0}
    response = tiny_client.post("/", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["response"] == greedy_reply


@pytest.mark.parametrize("path", ["/", "/v1/chat/completions"])
@pytest.mark.parametrize("value", [-0.1, 1.5])
def test_an_out_of_range_min_p_is_a_400_naming_its_range(tiny_client, path, value):
    body = {"prompt": "hi"} if path == "/" else {"messages": ask("hi")}
    response = tiny_client.post(path, json=body | {"min_p": value})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["message"] == f"min_p must be between 0.0 and 1.0; got {value}." and error["param"] == "min_p"


def test_remote_backend_sends_min_p_as_an_extra_only_where_it_is_honoured(tiny_server, greedy_reply):
    params = GenerationParams.parse(SAMPLED | {"min_p": 1.0, "seed": 5})
    assert request_arguments(params)["extra_body"]["min_p"] == 1.0
    assert "min_p" not in request_arguments(GenerationParams.parse(SAMPLED)).get("extra_body", {})  # 0: off
    assert "min_p" not in request_arguments(params, leave_out=("min_p",)).get("extra_body", {})
    assert {"openbmb", "vllm", "sglang"} == {owner for owner, extras in HONOURED_EXTRAS.items() if "min_p" in extras}
    backend = RemoteBackend(f"{tiny_server.url}/v1", model="minicpm-tiny")
    try:
        assert "min_p" not in backend.ignored_controls  # our server says owned_by "openbmb"
        assert backend.chat(QUESTION, params)[0] == greedy_reply
    finally:
        backend.close()
