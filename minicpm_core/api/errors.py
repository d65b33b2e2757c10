"""The API's errors: the core's classes mapped to HTTP statuses once, and the handlers that answer
every failure as OpenAI's `{"error": {...}}` body (the seed's `POST /` adds `status`).

Only `GenerationFailed` (the model broke) and unexpected exceptions are a 5xx; those are logged
with their traceback, every other refusal with one INFO line. This module knows nothing about
the engine, the routes or the wire formats beyond the error body.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import ContextOverflow, GenerationFailed, InvalidRequest, MiniCPMError, ModelNotFound, QueueFull
from .protocol import ErrorDetail, describe_validation_error

log = logging.getLogger(__name__)


class APIError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 type: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.type = status, message, param, code, type
        self.retry_after: int | None = None


def api_error_from(exc: Exception) -> APIError:
    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, ContextOverflow):
        return APIError(400, str(exc), exc.param, "context_length_exceeded")
    if isinstance(exc, InvalidRequest):
        return APIError(400, str(exc), exc.param)
    if isinstance(exc, QueueFull):  # OpenAI's clients retry a 429 after Retry-After by themselves
        err = APIError(429, str(exc), type="rate_limit_error", code="queue_full")
        err.retry_after = exc.retry_after
        return err
    if isinstance(exc, ModelNotFound):
        return APIError(503, str(exc), type="model_not_loaded", code="model_not_found")
    if isinstance(exc, GenerationFailed):
        return APIError(500, str(exc), type="server_error", code="generation_failed")
    if isinstance(exc, MiniCPMError):
        return APIError(500, str(exc), type="server_error")
    return APIError(500, "Internal server error; the server log has the details.", type="server_error")


def error_body(err: APIError, path: str) -> dict:
    body: dict[str, Any] = {"error": ErrorDetail(message=err.message, type=err.type, param=err.param,
                                                 code=err.code).model_dump()}
    if path.rstrip("/") == "":
        body["status"] = err.status  # the seed's clients read `status` from the body
    return body


def error_response(err: APIError, path: str) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if err.status == 401 else None
    if err.retry_after is not None:
        headers = {"Retry-After": str(err.retry_after)}
    return JSONResponse(error_body(err, path), status_code=err.status, headers=headers)


def install_error_handlers(app: FastAPI, known_fields: Sequence[str]) -> None:
    """Every failure as an error body; `known_fields` are offered for a misspelt parameter."""
    async def on_error(request: Request, exc: Exception) -> JSONResponse:
        err = api_error_from(exc)
        if err.status >= 500 and not isinstance(exc, MiniCPMError):
            log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        log.info("%s %s -> %d %s", request.method, request.url.path, err.status, err.message)
        return error_response(err, request.url.path)

    # Starlette types every handler as taking any Exception; it calls each for its own class only
    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        if not isinstance(exc, RequestValidationError):
            return await on_error(request, exc)
        message, param = describe_validation_error(list(exc.errors()), known_fields)
        return await on_error(request, APIError(400, message, param))

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        if not isinstance(exc, StarletteHTTPException):
            return await on_error(request, exc)
        messages = {404: f"No such endpoint: {request.method} {request.url.path}. Try POST / or POST "
                         "/v1/chat/completions.",
                    405: f"{request.method} is not allowed on {request.url.path}."}
        message = messages.get(exc.status_code, str(exc.detail))
        return await on_error(request, APIError(exc.status_code, message, code=str(exc.status_code)))

    app.add_exception_handler(APIError, on_error)
    app.add_exception_handler(MiniCPMError, on_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_error)
