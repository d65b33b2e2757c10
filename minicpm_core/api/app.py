"""The HTTP API around one `Engine`: `create_app(engine)` wires the layers together.

    protocol.py  request and response schemas (responses are the `openai` package's types)
    serving.py   the chat service: submit, follow a reply, stream it, log it
    errors.py    the core's errors mapped to HTTP once, and the handlers that answer with them
    guard.py     the ASGI guard: API key and body size, before the app reads anything
    routes.py    the endpoints

Nothing happens at import. The app never touches the model: it submits to the engine and waits for
text deltas in worker threads. Every failure leaves as OpenAI's `{"error": {...}}` with a 4xx
status, or a 500 only for `GenerationFailed` (the model broke). It does not implement tool calls,
log probabilities or n > 1; those are refused with a 400.
"""

from __future__ import annotations

from fastapi import FastAPI

from .errors import install_error_handlers
from .guard import BODIES_BUDGET_BYTES, BODY_TIMEOUT_S, BodyBudget, RequestGuard, check_api_key
from .protocol import ChatCompletionRequest, SeedRequest
from .routes import api_router
from .serving import ChatService

__all__ = ["check_api_key", "create_app"]

KNOWN_FIELDS = sorted(set(ChatCompletionRequest.model_fields) | set(SeedRequest.model_fields))


def create_app(engine, *, api_key: str | None = None, log_prompts: bool = False, model_name: str | None = None,
               body_timeout_s: float = BODY_TIMEOUT_S, bodies_budget_bytes: int = BODIES_BUDGET_BYTES) -> FastAPI:
    """The API for one loaded engine. `api_key` set: every endpoint but /health and the docs needs it.
    `app.state.bodies` is the budget of the bodies still arriving (guard.py)."""
    api_key = check_api_key(api_key)
    service = ChatService(engine, model_name or engine.model_name, log_prompts)
    app = FastAPI(title="MiniCPM-2B Chat API",
                  description="The seed tutorial's `POST /`, plus OpenAI-compatible `/v1/chat/completions`.")
    app.state.service = service
    install_error_handlers(app, KNOWN_FIELDS)
    app.state.bodies = BodyBudget(bodies_budget_bytes)
    app.add_middleware(RequestGuard, api_key=api_key, body_timeout_s=body_timeout_s, budget=app.state.bodies)
    app.include_router(api_router(service))
    return app
