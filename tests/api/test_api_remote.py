"""RemoteBackend against this project's live server: the same consumer interface as the local Engine."""

from __future__ import annotations

import socket

import httpx
import openai
import pytest

from minicpm_core.errors import ContextOverflow, GenerationFailed, InvalidRequest
from minicpm_core.params import GenerationParams
from minicpm_core.remote import EXTRA_FIELDS, RemoteBackend, make_remote_backend, refused_fields, request_arguments
from minicpm_core.settings import AppSettings

from .support import GREEDY, ask, wait_until


@pytest.fixture(scope="module")
def remote(m2b_demo_server):
    backend = RemoteBackend(f"{m2b_demo_server.url}/v1")
    yield backend
    backend.close()


def test_greedy_reply_and_stats_match_the_local_engine(remote, m2b_demo_engine):
    expected, local = m2b_demo_engine.chat(ask("What is 2+3?"), GREEDY)
    generation = remote.submit(ask("What is 2+3?"), GREEDY)
    assert generation.position == 0 and generation.stats is None
    deltas = list(generation)
    assert "".join(deltas) == generation.text == expected
    assert generation.position is None
    stats = generation.stats
    assert (stats.prompt_tokens, stats.completion_tokens) == (local.prompt_tokens, local.completion_tokens)
    assert stats.finish_reason == "stop" and stats.ttft_seconds > 0
    assert remote.recent[-1] is stats


def test_max_new_tokens_ends_with_length(remote):
    text, stats = remote.chat(ask("Tell me a story."), {"temperature": 0, "max_new_tokens": 4})
    assert stats.completion_tokens == 4 and stats.finish_reason == "length" and text


def test_parameters_and_messages_are_validated_before_any_request(remote):
    with pytest.raises(InvalidRequest, match="temperature must be between"):
        remote.submit(ask("hi"), {"temperature": 5})
    with pytest.raises(InvalidRequest, match="last message must be"):
        remote.prepare([{"role": "assistant", "content": "hi"}])
    assert remote.prepare(ask("hi"), GREEDY) is None  # token counts need the server's tokenizer


def test_server_refusals_arrive_as_our_errors(remote):
    with pytest.raises(ContextOverflow, match="limit is 4096 tokens"):
        remote.submit(ask("mountain river " * 3000))


def test_cancel_closes_the_stream_and_stops_the_server(tiny_server, idle_tiny_engine):
    backend = RemoteBackend(f"{tiny_server.url}/v1", model="minicpm-tiny")
    generation = backend.submit(ask("hello"), {"temperature": 0, "max_new_tokens": 4000})
    for count, _ in enumerate(generation, 1):
        if count == 3:
            generation.cancel()
    assert generation.stats.finish_reason == "cancelled"
    wait_until(lambda: idle_tiny_engine.running == 0 and idle_tiny_engine.recent, what="the server to stop")
    assert idle_tiny_engine.recent[-1].finish_reason == "cancelled"
    assert idle_tiny_engine.recent[-1].completion_tokens < 400


def test_cancel_before_reading_finishes_the_handle(remote):
    generation = remote.submit(ask("Tell me a story."), GREEDY)
    generation.cancel()
    assert generation.done and generation.position is None and generation.stats.finish_reason == "cancelled"
    assert list(generation) == []


def test_unreachable_server_is_a_generation_failure_naming_the_url():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}/v1"  # nothing listens once the probe closes
    backend = RemoteBackend(url, model="m")
    with pytest.raises(GenerationFailed, match=f"Could not reach the model server at {url}"):
        backend.submit(ask("hi"))
    assert backend.info()["reachable"] is False
    assert backend.queue_depth == 0 and backend.running == 0


def test_info_names_the_served_models_when_ours_is_not_there(m2b_demo_server):
    info = RemoteBackend(f"{m2b_demo_server.url}/v1", model="gpt-4o").info()
    assert info["reachable"] is True and "has no model 'gpt-4o'; it serves minicpm-demo" in info["error"]


def test_info_and_status_come_from_the_server(remote, m2b_demo_engine):
    info = remote.info()
    assert info["reachable"] and info["model"] == "minicpm-demo" and info["base_url"].endswith("/v1")
    assert info["context_length"] == remote.context_length == m2b_demo_engine.context_length
    assert info["health"]["status"] == "ok"
    assert remote.queue_depth == 0 and remote.running == 0
    assert remote.ignored_controls == () and info["ignored_controls"] is None  # ours honours every control


def test_every_parameter_maps_to_a_request_field_in_one_place():
    params = GenerationParams.parse({"temperature": 0.3, "top_p": 0.7, "top_k": 5, "repetition_penalty": 1.1,
                                     "max_length": 100, "max_new_tokens": 9, "seed": 3})
    arguments = request_arguments(params)
    assert {k: v for k, v in arguments.items() if k not in ("stop", "extra_body")} == {
        "temperature": 0.3, "top_p": 0.7, "max_tokens": 9, "seed": 3}
    assert arguments["extra_body"] == {"top_k": 5, "repetition_penalty": 1.1, "max_length": 100}
    assert "extra_body" not in request_arguments(params, EXTRA_FIELDS)
    defaults = request_arguments(GenerationParams())  # unset and "unlimited" values are not sent
    assert set(defaults) == {"stop", "temperature", "top_p", "extra_body"} and set(defaults["extra_body"]) == {
        "repetition_penalty"}


def _refusal(status: int, body) -> openai.APIStatusError:
    response = httpx.Response(status, request=httpx.Request("POST", "http://127.0.0.1/v1/chat/completions"))
    return openai.APIStatusError("refused", response=response, body=body)


@pytest.mark.parametrize("status, body, refused", [
    (422, {"detail": "Unexpected fields in the request: {'repetition_penalty', 'top_k'}"},
     {"repetition_penalty", "top_k"}),  # transformers serve
    (400, {"error": {"message": "Unrecognized request argument supplied: top_k", "param": None}}, {"top_k"}),
    (422, {"detail": [{"loc": ["body", "seed"], "msg": "Extra inputs are not permitted"}]}, {"seed"}),
    (400, {"error": {"message": "temperature must be between 0 and 2", "param": "temperature"}}, set()),
    (422, {"detail": "Unexpected fields in the request: {'logit_bias'}"}, set()),  # not a field we sent
    (500, {"detail": "Unexpected fields in the request: {'top_k'}"}, set()),  # not a 4xx
])
def test_only_a_4xx_naming_fields_we_sent_is_a_refusal(status, body, refused):
    sent = {"temperature", "top_p", "seed", "top_k", "repetition_penalty", "stream_options"}
    assert refused_fields(_refusal(status, body), sent) == refused


def test_backend_flags_build_the_remote_backend(m2b_demo_server):
    def remote_settings(*argv: str):
        return AppSettings.parse(argv, environ={}, ignore_unknown=True).remote

    settings = remote_settings("--backend", "openai", "--base-url", f"{m2b_demo_server.url}/v1", "--api-key", "k",
                               "--remote-model", "minicpm-demo")
    backend = make_remote_backend(settings)
    assert isinstance(backend, RemoteBackend) and backend.model == "minicpm-demo"
    assert make_remote_backend(remote_settings("--backend", "local")) is None
    with pytest.raises(InvalidRequest, match="needs --base-url"):
        make_remote_backend(remote_settings("--backend", "openai"))
