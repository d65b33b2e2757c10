"""The API's parameter ranges and defaults follow the LOADED model: a MiniCPM5 server takes token
counts up to its 131,072-token context, a MiniCPM-2B server refuses what it always refused, with the
same message; MiniCPM5-1B's recommended temperature (0.9 thinking, 0.7 not) fills an unset one.

The MiniCPM5 servers run the shipped thinking demo: once as it ships (a directory no published id
names: the family's values), once copied into a directory named as MiniCPM5-1B's id, as a download
lays it out. What the engine was given is read from the Generation the API submitted.
"""

from __future__ import annotations

import shutil

import pytest

from minicpm_core.families import FAMILIES
from testkit.minicpm5 import DEMO_MODEL_DIR

from .support import ask, served

LONGEST = max(family.context_length for family in FAMILIES)  # MiniCPM5's 131,072
QUESTION = "hello"  # one the demo knows: greedy, it answers and stops


@pytest.fixture(scope="module")
def one_b(tmp_path_factory):
    """(engine, client) of the thinking demo in a directory named as OpenBMB/MiniCPM5-1B's last part."""
    path = tmp_path_factory.mktemp("download") / "MiniCPM5-1B"
    shutil.copytree(DEMO_MODEL_DIR, path)
    engine, client = served(path, "MiniCPM5-1B")
    yield engine, client
    client.__exit__(None, None, None)
    engine.close()


@pytest.fixture(scope="module")
def m5_demo():
    engine, client = served(DEMO_MODEL_DIR, "m5-demo")
    yield engine, client
    client.__exit__(None, None, None)
    engine.close()


def submissions(engine, monkeypatch) -> list:
    """The Generations the API submits to `engine` from now on, in order (submit itself runs as ever)."""
    generations = []
    submit = engine.submit

    def recording(*args, **kwargs):
        generation = submit(*args, **kwargs)
        generations.append(generation)
        return generation
    monkeypatch.setattr(engine, "submit", recording)
    return generations


def thinking(mode: bool | None) -> dict:
    return {} if mode is None else {"chat_template_kwargs": {"enable_thinking": mode}}


def seed_thinking(mode: bool | None) -> dict:
    return {} if mode is None else {"enable_thinking": mode}


def error_of(response, status: int = 400) -> dict:
    assert response.status_code == status, response.text
    return response.json()["error"]


# --- ranges ----------------------------------------------------------------------------------------

def test_a_minicpm5_server_takes_max_tokens_beyond_minicpm_2b_context(m5_demo):
    _, client = m5_demo
    response = client.post("/v1/chat/completions",
                           json={"messages": ask(QUESTION), "temperature": 0, "max_tokens": 8192})
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["finish_reason"] == "stop"
    seed = client.post("/", json={"prompt": QUESTION, "temperature": 0, "max_length": LONGEST,
                                  "max_new_tokens": 8192})
    assert seed.status_code == 200, seed.text


def test_a_minicpm5_server_refuses_more_than_its_context_saying_its_range(m5_demo):
    _, client = m5_demo
    error = error_of(client.post("/v1/chat/completions", json={"messages": ask(QUESTION), "max_tokens": LONGEST + 1}))
    assert error["message"] == f"max_tokens must be between 1 and {LONGEST}; got {LONGEST + 1}."
    assert error["param"] == "max_tokens"
    error = error_of(client.post("/", json={"prompt": QUESTION, "max_length": LONGEST + 1}))
    assert error["message"] == f"max_length must be between 16 and {LONGEST}; got {LONGEST + 1}."


@pytest.mark.parametrize(("path", "body", "message"), [
    ("/v1/chat/completions", {"max_tokens": 4097}, "max_tokens must be between 1 and 4096; got 4097."),
    ("/v1/chat/completions", {"max_completion_tokens": 8192},
     "max_completion_tokens must be between 1 and 4096; got 8192."),
    ("/v1/chat/completions", {"max_length": 8192}, "max_length must be between 16 and 4096; got 8192."),
    ("/", {"max_length": 8192}, "max_length must be between 16 and 4096; got 8192."),
    ("/", {"max_new_tokens": LONGEST + 1}, "max_new_tokens must be between 1 and 4096; got 131073."),
], ids=["v1-max_tokens", "v1-max_completion_tokens", "v1-max_length", "seed-max_length", "seed-beyond-any"])
def test_a_minicpm_2b_server_refuses_beyond_4096_as_it_always_did(tiny_client, path, body, message):
    request = {"messages": ask("hi")} if path != "/" else {"prompt": "hi"}
    assert error_of(tiny_client.post(path, json=request | body))["message"] == message


# --- MiniCPM5-1B's temperature per mode ------------------------------------------------------------

# None: the demo's template, like MiniCPM5's, leaves thinking to the model, which then thinks.
@pytest.mark.parametrize(("mode", "temperature"), [(True, 0.9), (False, 0.7), (None, 0.9)],
                         ids=["thinking-on", "thinking-off", "thinking-not-given"])
def test_minicpm5_1b_gets_its_temperature_for_the_mode_asked_when_the_request_sets_none(
        one_b, monkeypatch, mode, temperature):
    engine, client = one_b
    submitted = submissions(engine, monkeypatch)
    response = client.post("/v1/chat/completions", json={"messages": ask(QUESTION), "max_tokens": 4, **thinking(mode)})
    assert response.status_code == 200, response.text
    seed = client.post("/", json={"prompt": QUESTION, "max_new_tokens": 4, **seed_thinking(mode)})
    assert seed.status_code == 200, seed.text
    assert [(g.params.temperature, g.params.top_p) for g in submitted] == [(temperature, 0.95)] * 2


@pytest.mark.parametrize("mode", [True, False], ids=["thinking-on", "thinking-off"])
def test_a_temperature_the_request_sets_wins_over_the_per_mode_one(one_b, monkeypatch, mode):
    engine, client = one_b
    submitted = submissions(engine, monkeypatch)
    body = {"messages": ask(QUESTION), "max_tokens": 4, "temperature": 0.2, **thinking(mode)}
    assert client.post("/v1/chat/completions", json=body).status_code == 200
    assert client.post("/", json={"prompt": QUESTION, "max_new_tokens": 4, "temperature": 0.2,
                                  **seed_thinking(mode)}).status_code == 200
    assert [(g.params.temperature, g.params.top_p) for g in submitted] == [(0.2, 0.95)] * 2


@pytest.mark.parametrize("mode", [True, False], ids=["thinking-on", "thinking-off"])
def test_a_minicpm5_checkpoint_no_published_id_names_gets_the_family_values_in_both_modes(m5_demo, monkeypatch, mode):
    engine, client = m5_demo
    submitted = submissions(engine, monkeypatch)
    body = {"messages": ask(QUESTION), "max_tokens": 4, **thinking(mode)}
    assert client.post("/v1/chat/completions", json=body).status_code == 200
    [generation] = submitted
    assert (generation.params.temperature, generation.params.top_p, generation.params.repetition_penalty) == \
        (1.0, 0.95, 1.0)
