"""The API's endpoints: the seed's `POST /`, OpenAI's `/v1/chat/completions` and `/v1/models`, and
`/health`. Each route validates (protocol), hands the work to the chat service (serving) and shapes
the answer; errors are raised and answered by the handlers in errors.py.

Bodies are parsed strictly (`StrictJSONRoute`: no NaN, no key given twice).
"""

from __future__ import annotations

import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from fastapi.routing import APIRoute

from .errors import APIError
from .protocol import (
    ChatCompletion,
    ChatCompletionRequest,
    ErrorResponse,
    Health,
    ModelCard,
    ModelList,
    SeedRequest,
    SeedResponse,
    chat_completion,
    completion_id,
    now,
    parse_json_body,
)
from .serving import ChatService


class _StrictJSONRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = parse_json_body(await self.body())
        return self._json


class StrictJSONRoute(APIRoute):
    """Routes whose JSON body is parsed strictly (protocol.parse_json_body): no NaN, no duplicate key."""

    def get_route_handler(self):
        handler = super().get_route_handler()

        async def strict(request: Request):
            return await handler(_StrictJSONRequest(request.scope, request.receive))

        return strict


def api_router(service: ChatService) -> APIRouter:
    """Every endpoint, bound to one chat service (and through it, one engine and model name)."""
    router = APIRouter(route_class=StrictJSONRoute)
    engine, model_name = service.engine, service.model_name

    @router.post("/", response_model=SeedResponse, response_model_exclude_none=True,
                 responses={400: {"model": ErrorResponse}})
    async def seed_chat(body: SeedRequest, request: Request) -> SeedResponse:
        """The seed tutorial's endpoint: `{"prompt": ...}` in, `{"response", "status", "time"}` out."""
        options = body.options()
        messages, params = body.to_messages(), service.params(body, options.enable_thinking)
        reply = await service.submit(request, messages, params, options=options)
        try:
            text = await service.complete(request, reply)
        finally:
            service.log_reply("POST", "/", reply, messages)
        history = messages + [{"role": "assistant", "content": text}]
        stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
        return SeedResponse(response=text, reasoning=reply.reasoning or None, time=stamp, history=history)

    @router.post("/v1/chat/completions", response_model=ChatCompletion, response_model_exclude_unset=True,
                 responses={400: {"model": ErrorResponse}})
    async def chat_completions(body: ChatCompletionRequest, request: Request):
        options = body.options()
        messages, params, stops = body.to_messages(), service.params(body, options.enable_thinking), body.stop_strings()
        reply = await service.submit(request, messages, params, stops, options)
        request_id = completion_id()
        if body.stream:
            events = service.stream(reply, request_id, body.include_usage, request.url.path, messages)
            return StreamingResponse(events, media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        try:
            text = await service.complete(request, reply)
        finally:
            service.log_reply("POST", request.url.path, reply, messages)
        return chat_completion(request_id, model_name, text, reply.finish_reason, reply.usage(), reply.reasoning,
                               reply.calls)

    created = now()

    def card() -> ModelCard:
        return ModelCard(id=model_name, created=created, max_model_len=engine.context_length)

    @router.get("/v1/models", response_model=ModelList, response_model_exclude_none=True)
    async def list_models() -> ModelList:
        return ModelList(data=[card()])

    @router.get("/v1/models/{model_id:path}", response_model=ModelCard, response_model_exclude_none=True)
    async def get_model(model_id: str) -> ModelCard:
        if model_id != model_name:
            raise APIError(404, f"No model {model_id!r} here; this server serves {model_name!r}.", "model",
                           "model_not_found")
        return card()

    @router.get("/health", response_model=Health)
    async def health() -> Health:
        return Health(model_loaded=True, model=model_name, queue_depth=engine.queue_depth,
                      running=engine.running)

    return router
