"""The backend contract (minicpm_core.backend): the Engine and the RemoteBackend implement it themselves,
and the app's backend module adds no forwarder in between."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from minicpm_core.backend import Backend, ReplyStream
from minicpm_core.params import GenerationParams
from minicpm_core.remote import RemoteBackend

from .support import GREEDY, ask

ROOT = Path(__file__).resolve().parents[2]


def protocol_members(protocol: type) -> set[str]:
    """The names a Protocol declares: its annotations, methods and properties."""
    names = set(getattr(protocol, "__annotations__", {}))
    names |= {name for name, value in vars(protocol).items()
              if not name.startswith("_") and (callable(value) or isinstance(value, property))}
    return names


def test_the_protocols_declare_what_the_pages_and_the_api_use():
    assert protocol_members(Backend) >= {"ready", "demo", "gpu_problem", "submit", "prepare", "budget",
                                         "context_length", "queue_depth", "running", "recent",
                                         "ignored_controls", "info", "model_name", "family", "model_id",
                                         "loaded_path", "base_url", "kv_budget", "wait", "retire"}
    assert protocol_members(ReplyStream) >= {"text", "reasoning", "stats", "stopped_for", "parts", "cancel",
                                             "result", "wait", "done", "position"}


@pytest.fixture(scope="module")
def remote(m2b_demo_server):
    backend = RemoteBackend(f"{m2b_demo_server.url}/v1")
    yield backend
    backend.close()


def test_the_engine_is_a_backend_and_answers_through_it(m2b_demo_engine):
    backend: Backend = m2b_demo_engine
    assert isinstance(backend, Backend)
    assert backend.ready and backend.ignored_controls == () and backend.gpu_problem == m2b_demo_engine.lm.gpu_problem
    assert backend.budget(GenerationParams(max_length=64)) == 64
    assert len(backend.prepare(ask("What is 2+3?"), GenerationParams.parse(GREEDY)).ids) > 0
    reply = backend.submit(ask("What is 2+3?"), GREEDY)
    assert isinstance(reply, ReplyStream)
    assert "".join(reply) == reply.text and reply.stats.finish_reason == "stop"
    assert backend.recent[-1] is reply.stats
    info = backend.info()
    assert info["backend"] == "local" and info["context_length"] == backend.context_length
    assert backend.model_name == m2b_demo_engine.lm.path.name  # a local folder: by its name only
    assert reply.stopped_for is None


def test_the_engine_says_what_is_loaded_through_the_contract(m2b_demo_engine):
    backend: Backend = m2b_demo_engine
    assert backend.family is m2b_demo_engine.lm.family and backend.family.name == "minicpm-2b"
    assert backend.loaded_path == m2b_demo_engine.lm.path and backend.base_url is None
    assert backend.model_id is None  # a local folder is no published id
    budget = backend.kv_budget()
    assert budget is not None and budget.max_length == budget.context_length == backend.context_length
    assert backend.wait() is backend


def test_an_engine_started_from_a_published_id_names_it(m2b_demo_engine):
    import dataclasses

    from minicpm_core.engine import Engine

    engine = Engine(dataclasses.replace(m2b_demo_engine.lm, source="OpenBMB/MiniCPM-2B-dpo-bf16", demo=False))
    try:
        assert engine.model_id == "OpenBMB/MiniCPM-2B-dpo-bf16"
    finally:
        engine.close()


def test_the_remote_backend_is_a_backend_and_answers_as_the_engine_does(remote, m2b_demo_engine):
    backend: Backend = remote
    assert isinstance(backend, Backend)
    assert backend.ready and not backend.demo and backend.gpu_problem is None
    assert backend.context_length == m2b_demo_engine.context_length
    assert backend.budget(GenerationParams(max_length=64)) == 64
    assert backend.prepare(ask("What is 2+3?"), GenerationParams.parse(GREEDY)) is None  # no tokenizer here
    reply = backend.submit(ask("What is 2+3?"), GREEDY)
    assert isinstance(reply, ReplyStream)
    assert "".join(reply) == m2b_demo_engine.chat(ask("What is 2+3?"), GREEDY)[0]
    assert backend.recent[-1] is reply.stats
    assert backend.info()["reachable"] is True
    assert backend.model_name == "minicpm-demo"  # what the server calls its model
    assert reply.stopped_for is None


def test_the_remote_backend_knows_only_its_url_of_what_is_loaded(remote):
    backend: Backend = remote
    assert backend.base_url == remote.base_url and backend.base_url.endswith("/v1")
    assert backend.family is None and backend.model_id is None and backend.loaded_path is None
    assert backend.kv_budget() is None and backend.wait() is backend
    backend.retire("another model", 0)  # holds no model: nothing to free, and it still answers
    assert "".join(backend.submit(ask("What is 2+3?"), GREEDY))


def test_the_app_defines_no_forwarder_around_a_backend():
    tree = ast.parse((ROOT / "ui" / "backend.py").read_text(encoding="utf-8"))
    classes = {node.name for node in ast.walk(tree) if isinstance(node, ast.ClassDef)}
    assert not classes & {"LocalBackend", "RemoteAdapter", "Backend", "ReplyStream"}
    assert classes <= {"PendingBackend"}, "a new class in ui/backend.py: is it a forwarder?"


def test_the_apps_stand_in_while_loading_is_a_backend_too():
    from minicpm_core.slot import ModelSlot
    from ui import backend as ui_backend

    options = ui_backend.parse_app_options(["--demo"])
    pending = ui_backend.PendingBackend(ModelSlot(options.model, build=None))  # a load that is never started
    assert isinstance(pending, Backend)
    assert not pending.ready and pending.demo and pending.prepare(ask("hi")) is None
    assert pending.model_name == "minicpm-2b-demo"
    assert pending.queue_depth == pending.running == 0 and list(pending.recent) == []
    assert pending.family is not None and pending.family.name == "minicpm-2b"  # a demo's family is known at once
    assert pending.model_id is None and pending.loaded_path is None and pending.base_url is None
    assert pending.kv_budget() is None
    not_a_demo = ui_backend.PendingBackend(ModelSlot(ui_backend.parse_app_options([]).model, build=None))
    assert not_a_demo.family is None
