"""The HTTP API's wire formats: every request and response schema, in one place.

Two dialects are served:
- the seed tutorial's `POST /` (`{"prompt": ...}` → `{"response", "status", "time"}`), extended
  compatibly with `history` and the generation parameters;
- OpenAI's chat completions (`/v1/chat/completions`, `/v1/models`), fields in the order of the
  OpenAI reference, our extras (`top_k`, `repetition_penalty`, `max_length`, ...) fenced off at the end.

Neither request lists the generation parameters: both take one optional field per `GenerationParams`
field (`with_sampling_fields`), OpenAI's request under OpenAI's names (`params.OPENAI_NAMES`).

Parameter resolution happens once, in `ChatCompletionRequest.to_params()` / `SeedRequest.to_params()`:
a value the request sets wins, anything unset takes the loaded checkpoint's recommended value for
the request's mode (`ModelFamily.defaults_for`, passed in by the chat service), else the
`GenerationParams` default; token counts are checked against the loaded family's context. For MiniCPM-2B
both are the seed's (temperature 0.5, top_p 0.8, repetition_penalty 1.02), NOT OpenAI's temperature
1.0: that model answers worse that hot; MiniCPM5's are temperature 1.0, top_p 0.95, repetition_penalty
1.0. Ranges live in `GenerationParams` only.

Requests are validated strictly (`"0.5"` is not a number, unknown fields are refused, naming the
closest known one), because a silently ignored typo such as `temprature` is worse than a 400.
The `model` field accepts any name: this server serves one model, and clients written for other
servers (`gpt-4o-mini`, a path, `minicpm`) should work unchanged; responses carry our model's name.

Thinking (MiniCPM5) follows vLLM's and SGLang's convention: both endpoints take
`chat_template_kwargs: {"enable_thinking": bool}` (no other key), `POST /` also an `enable_thinking` field,
described by `THINKING_HELP`; unset, the checkpoint's template decides. A family without thinking
ignores it. Tools (MiniCPM5) are OpenAI's: `tools`, `tool_choice`, assistant `tool_calls` and `tool`
messages in the history; the calls come back as `message.tool_calls` / `delta.tool_calls`. What a
request asks of the template travels as one `prompt.ChatOptions` (`options()`). The reasoning goes
in `message.reasoning_content` / `delta.reasoning_content` and in the seed's `reasoning`, only when
there was some; `content` / `response` hold only the answer.

Responses reuse the `openai` package's types (ChatCompletion, ChatCompletionChunk, Model), so they
cannot drift from what OpenAI's clients parse; ours are only the seed's, /health and the errors.
This module knows nothing about FastAPI, the engine or threads.
"""

from __future__ import annotations

import difflib
import json
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from openai.types import CompletionUsage, Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk, ChatCompletionMessage
from openai.types.chat.chat_completion import Choice
from openai.types.chat.chat_completion_chunk import (
    Choice as ChunkChoice,
    ChoiceDelta,
    ChoiceDeltaToolCall,
    ChoiceDeltaToolCallFunction,
)
from openai.types.chat.chat_completion_message_function_tool_call import (
    ChatCompletionMessageFunctionToolCall,
    Function as CallFunction,
)
from openai.types.completion_usage import CompletionTokensDetails
from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from ..errors import InvalidRequest
from ..params import OPENAI_NAMES, GenerationParams, openai_name
from ..prompt import MAX_MESSAGES, ROLES, TOOL_ROLE, ChatOptions, check_text
from ..tools import ToolCall

MAX_BODY_BYTES = 8 << 20  # far above any 4,096-token conversation; stops a runaway upload early
UNKNOWN_POSITION = -1  # a JSONDecodeError's position when the message says where (or cannot)
MAX_INT_DIGITS = 100  # no number this API reads has more digits; Python's own limit (4,300) raises elsewhere
MAX_STOP_STRINGS = 4  # OpenAI's limit
MAX_STOP_LENGTH = 100
MAX_NAME_LENGTH = 256  # `model` and `user`: names, never text for the model
MAX_METADATA_PAIRS, MAX_METADATA_KEY, MAX_METADATA_VALUE = 16, 64, 512  # OpenAI's limits
ROLE_ALIASES = {"developer": "system"}  # OpenAI's newer name for the system role

_Strict = ConfigDict(strict=True, extra="forbid")
TEMPLATE_KWARGS = ("enable_thinking",)  # the chat_template_kwargs this server accepts
THINKING_HELP = ("Think before answering (the chat template's enable_thinking), on a model that can (MiniCPM5): "
                 "true or false; unset, the model's own default. Ignored by MiniCPM-2B.")


# --- the body: strict JSON, valid text ----------------------------------------------------------

def parse_json_body(body: bytes) -> Any:
    """The request body as JSON, strictly: raises json.JSONDecodeError with a sentence for a human.

    Python's json module accepts what JSON does not (NaN, Infinity, a key given twice: the last
    silently wins) and raises other errors for undecodable bytes, endless digits or deep nesting;
    all of them are refused here as "not valid JSON", which the API answers with a 400.
    """
    try:
        return json.loads(body, object_pairs_hook=_object_without_duplicates, parse_constant=_no_constant,
                          parse_int=_bounded_int)
    except json.JSONDecodeError:
        raise
    except UnicodeDecodeError as exc:
        raise json.JSONDecodeError(f"it is not UTF-8 text: byte {body[exc.start]:#04x} at byte {exc.start}",
                                   "", UNKNOWN_POSITION) from None
    except RecursionError:
        raise json.JSONDecodeError("it is nested too deeply", "", UNKNOWN_POSITION) from None
    except ValueError as exc:  # raised by the hooks below
        raise json.JSONDecodeError(str(exc), "", UNKNOWN_POSITION) from None


def _first_repeated_key(pairs: list[tuple[str, Any]]) -> str:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            return key
        seen.add(key)
    raise ValueError("no key appears twice")


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        duplicate = _first_repeated_key(pairs)
        raise ValueError(f"the key {_short(duplicate)} appears twice in one object")
    return obj


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _bounded_int(digits: str) -> int:
    if len(digits) > MAX_INT_DIGITS:
        raise ValueError(f"a number has {len(digits)} digits; at most {MAX_INT_DIGITS} are accepted")
    return int(digits)


def check_body_text(data: Any) -> Any:
    """Refuse any string in the body (a value or a key, at any depth) that is not valid Unicode text.

    JSON may escape half a surrogate pair ("\\ud800"); Python decodes it into a str that no UTF-8
    encoder or tokenizer accepts. The error names the field, e.g. messages[2].content.
    """
    stack: list[tuple[str, Any]] = [("", data)]
    while stack:  # iterative: the nesting depth is the client's choice
        where, value = stack.pop()
        if isinstance(value, str):
            check_text(value, where or "the request body")
        elif isinstance(value, dict):
            for key, item in value.items():
                name = f"{where}.{key}" if where else str(key)
                if isinstance(key, str):
                    check_text(key, f"a key in {where or 'the request body'}")
                stack.append((name, item))
        elif isinstance(value, list):
            stack.extend((f"{where}[{i}]", item) for i, item in enumerate(value))
    return data


def _screened(data: Any, list_field: str) -> Any:
    """Before pydantic builds anything: valid text everywhere, and no more messages than are served."""
    check_body_text(data)
    if isinstance(data, dict) and isinstance(data.get(list_field), list) and len(data[list_field]) > MAX_MESSAGES:
        raise InvalidRequest(f"{list_field} has {len(data[list_field])} entries; at most {MAX_MESSAGES} are "
                             "accepted.", list_field)
    return data


# --- errors -------------------------------------------------------------------------------------

class ErrorDetail(BaseModel):
    message: str
    type: str = "invalid_request_error"
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """OpenAI's error body. The seed endpoint adds `status`, as its clients read that field."""

    error: ErrorDetail
    status: int | None = None


# --- the seed tutorial's endpoint ---------------------------------------------------------------

# --- the sampling fields, derived from GenerationParams ------------------------------------------

def _annotation(name: str) -> Any:
    annotation = GenerationParams.model_fields[name].annotation
    if annotation is None:  # pydantic's type allows it; every GenerationParams field is annotated
        raise TypeError(f"GenerationParams.{name} has no type annotation")
    return annotation


def _sampling_field(name: str, openai_names: bool) -> tuple[str, Any]:
    """One GenerationParams field as an optional request field: its type and help, unset by default
    (so the server default applies), its range checked by GenerationParams alone."""
    field = GenerationParams.model_fields[name]
    help_text = GenerationParams.help(name)
    if field.default is not None:
        help_text += f" Unset: the loaded model family's recommended value, else {field.default}."
    return (openai_name(name) if openai_names else name,
            (_annotation(name) | None, Field(None, description=help_text)))


def with_sampling_fields(base: type[BaseModel], *, openai_names: bool) -> type[BaseModel]:
    """`base` plus every GenerationParams field: OpenAI's standard ones, then the extras (vLLM's order)."""
    names = (*GenerationParams.fields_where("wire", "standard"), *GenerationParams.fields_where("wire", "extra"))
    fields: dict[str, Any] = dict(_sampling_field(name, openai_names) for name in names)
    return create_model(f"{base.__name__}WithSampling", __base__=base, __module__=__name__, **fields)


def sampling_values(request: BaseModel, openai_names: bool) -> dict[str, Any]:
    """The request's sampling fields by GenerationParams name (unset ones are None)."""
    return {name: getattr(request, openai_name(name) if openai_names else name)
            for name in GenerationParams.model_fields}


# --- the seed tutorial's endpoint ---------------------------------------------------------------

class _SeedFields(BaseModel):
    model_config = _Strict

    prompt: str = Field(description="The user's question.")
    history: list[Any] | None = Field(
        None, description="Earlier turns: OpenAI-shaped messages, or the seed era's [[question, answer], ...].")
    enable_thinking: bool | None = Field(None, description=THINKING_HELP)
    chat_template_kwargs: dict[str, Any] | None = Field(
        None, description=f"As on /v1: only {{\"enable_thinking\": true|false}}. {THINKING_HELP}")


# mypy cannot follow a base class built at runtime (create_model); the fields are checked by the tests
class SeedRequest(with_sampling_fields(_SeedFields, openai_names=False)):  # type: ignore[misc]
    """`POST /`: the seed's `{"prompt": ...}`; everything else is optional and ours (every
    GenerationParams field under its own name)."""

    @model_validator(mode="before")
    @classmethod
    def _screen(cls, data: Any) -> Any:
        return _screened(data, "history")

    def to_messages(self) -> list[dict[str, str]]:
        if not self.prompt.strip():
            raise InvalidRequest("prompt is empty: send the question as a non-empty string.", "prompt")
        return history_messages(self.history) + [{"role": "user", "content": self.prompt}]

    def options(self) -> ChatOptions:
        """The template's options: `enable_thinking`, given directly or in chat_template_kwargs (not both
        at odds)."""
        from_kwargs = thinking_of(self.chat_template_kwargs)
        if None not in (from_kwargs, self.enable_thinking) and from_kwargs != self.enable_thinking:
            raise InvalidRequest("enable_thinking and chat_template_kwargs.enable_thinking disagree; send only one.",
                                 "enable_thinking")
        return ChatOptions(enable_thinking=self.enable_thinking if self.enable_thinking is not None else from_kwargs)

    def to_params(self, defaults: Mapping[str, Any] | None = None, context: int | None = None) -> GenerationParams:
        """Request value → `defaults` (the loaded model's) → GenerationParams' own default; token
        counts up to `context` (the loaded family's)."""
        return GenerationParams.parse(sampling_values(self, openai_names=False), defaults=defaults, context=context)


class SeedResponse(BaseModel):
    response: str = Field(description="The answer (never the reasoning).")
    reasoning: str | None = Field(None, description="What a thinking model (MiniCPM5) thought before answering, "
                                  "without the <think> tags; absent when there was none.")
    status: int = 200
    time: str = Field(description="Local time the reply finished, YYYY-MM-DD HH:MM:SS, as the seed.")
    history: list[dict[str, str]] = Field(description="The conversation including this turn, as messages.")


def history_messages(history: list[Any] | None) -> list[dict[str, str]]:
    """Seed-era `[[q, a], ...]` pairs or OpenAI-shaped messages → messages (validated later)."""
    if not history:
        return []
    messages: list[dict[str, str]] = []
    for i, item in enumerate(history):
        if isinstance(item, dict):
            if item.get("role") not in ROLES or not isinstance(item.get("content"), str):
                raise InvalidRequest(f"history[{i}] must have a role ({', '.join(ROLES)}) and a string content; "
                                     f"got {_short(item)}.", f"history[{i}]")
            messages.append({"role": item["role"], "content": item["content"]})
        elif isinstance(item, (list, tuple)) and len(item) == 2 and all(isinstance(s, str) for s in item):
            messages += [{"role": "user", "content": item[0]}, {"role": "assistant", "content": item[1]}]
        else:
            raise InvalidRequest(f"history[{i}] must be a message object {{\"role\", \"content\"}} or a "
                                 f"[question, answer] pair of strings; got {_short(item)}.", f"history[{i}]")
    return messages


# --- OpenAI chat completions: request -----------------------------------------------------------

class ChatMessage(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")  # `name` and friends: accepted, unused

    role: str
    content: Any = None  # a string, or a list of {"type": "text", "text": ...} parts
    tool_calls: list[Any] | None = None  # an assistant's calls (checked with the tools: prompt.validate_messages)
    tool_call_id: str | None = None  # a tool message's: accepted, unused (the template renders results in order)
    reasoning_content: str | None = None  # an earlier turn's reasoning, as vLLM's clients send it back


class StreamOptions(BaseModel):
    model_config = _Strict

    include_usage: bool = False


# OpenAI fields this server accepts only at their neutral value, and what to say otherwise.
UNSUPPORTED = {
    "frequency_penalty": "use repetition_penalty (an extra body field) instead",
    "presence_penalty": "use repetition_penalty (an extra body field) instead",
    "logit_bias": "MiniCPM-2B sampling here has no logit bias",
    "logprobs": "log probabilities are not returned",
    "top_logprobs": "log probabilities are not returned",
    "response_format": "only plain text replies are produced",
}


class _ChatCompletionFields(BaseModel):
    """OpenAI's fields other than the sampling ones, in the order of its reference."""

    model_config = _Strict

    messages: list[ChatMessage] = Field(description="The conversation so far; the last must be the user's.")
    model: str | None = Field(None, max_length=MAX_NAME_LENGTH, description="Any name: this server serves one model.")
    frequency_penalty: float | None = None
    logit_bias: dict[str, Any] | None = None
    logprobs: bool | None = None
    max_completion_tokens: int | None = Field(None, description="Cap on the reply's tokens (newer name of "
                                              "max_tokens).")
    metadata: dict[str, str] | None = Field(None, description=f"Accepted and unused: up to {MAX_METADATA_PAIRS} "
                                            f"string pairs, keys up to {MAX_METADATA_KEY} characters, values "
                                            f"up to {MAX_METADATA_VALUE}.")
    n: int | None = Field(None, description="Must be 1.")
    parallel_tool_calls: bool | None = None
    presence_penalty: float | None = None
    response_format: dict[str, Any] | None = None
    stop: Any = Field(None, description=f"Up to {MAX_STOP_STRINGS} extra strings that end the reply; "
                      "MiniCPM's own turn markers always do.")
    store: bool | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    tool_choice: Any = None
    tools: list[Any] | None = None
    top_logprobs: int | None = None
    user: str | None = Field(None, max_length=MAX_NAME_LENGTH)
    chat_template_kwargs: dict[str, Any] | None = Field(
        None, description=f"vLLM's extra: only {{\"enable_thinking\": true|false}}. {THINKING_HELP}")


# mypy cannot follow a base class built at runtime (create_model), as for SeedRequest
class ChatCompletionRequest(with_sampling_fields(_ChatCompletionFields, openai_names=True)):  # type: ignore[misc]
    """OpenAI's chat completions request. The sampling fields come from GenerationParams: the standard
    ones (temperature, top_p, max_tokens, seed) under OpenAI's names, then our extras (top_k,
    repetition_penalty, max_length, ...), which the official client sends with extra_body=."""

    @model_validator(mode="before")
    @classmethod
    def _screen(cls, data: Any) -> Any:
        return _screened(data, "messages")

    def to_messages(self) -> list[dict[str, str]]:
        if not self.messages:
            raise InvalidRequest("messages is empty: send at least one {\"role\": \"user\", \"content\": ...}.",
                                 "messages")
        out = []
        for i, message in enumerate(self.messages):
            role = ROLE_ALIASES.get(message.role, message.role)
            if role not in (*ROLES, TOOL_ROLE):
                raise InvalidRequest(f"messages[{i}].role is {message.role!r}; it must be one of "
                                     f"{', '.join((*ROLES, TOOL_ROLE))} (or developer).", f"messages[{i}].role")
            content = None if message.content is None and message.tool_calls else _content_text(message.content, i)
            item = {"role": role, "content": content}
            if message.tool_calls is not None:
                item["tool_calls"] = message.tool_calls
            if message.reasoning_content:
                item["reasoning_content"] = message.reasoning_content
            out.append(item)
        return out

    def enable_thinking(self) -> bool | None:
        """`chat_template_kwargs.enable_thinking`, checked: no other key, a boolean."""
        return thinking_of(self.chat_template_kwargs)

    def options(self) -> ChatOptions:
        """What the request asks of the template: the thinking switch and the tools (checked there)."""
        return ChatOptions(enable_thinking=self.enable_thinking(), tools=tuple(self.tools) if self.tools else None,
                           tool_choice=self.tool_choice)

    def to_params(self, defaults: Mapping[str, Any] | None = None, context: int | None = None) -> GenerationParams:
        """Request value → `defaults` (the loaded model's) → GenerationParams' own default; OpenAI names
        mapped to ours; token counts up to `context` (the loaded family's)."""
        self._check_supported()
        if self.n not in (None, 1):
            raise InvalidRequest(f"n must be 1: this server returns one choice per request; got {self.n}.", "n")
        values = sampling_values(self, openai_names=True)
        max_new_name = openai_name("max_new_tokens")
        if self.max_completion_tokens is not None:
            if values["max_new_tokens"] is not None and values["max_new_tokens"] != self.max_completion_tokens:
                raise InvalidRequest(f"{max_new_name} and max_completion_tokens disagree; send only one of them.",
                                     max_new_name)
            if values["max_new_tokens"] is None:
                values["max_new_tokens"], max_new_name = self.max_completion_tokens, "max_completion_tokens"
        shown_as = {**OPENAI_NAMES, "max_new_tokens": max_new_name}
        return GenerationParams.parse(values, shown_as=shown_as, defaults=defaults, context=context)

    def stop_strings(self) -> tuple[str, ...]:
        stop = self.stop
        if stop is None:
            return ()
        stops = [stop] if isinstance(stop, str) else stop
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise InvalidRequest(f"stop must be a string or a list of strings; got {_short(stop)}.", "stop")
        if len(stops) > MAX_STOP_STRINGS:
            raise InvalidRequest(f"stop has {len(stops)} strings; at most {MAX_STOP_STRINGS} are allowed.", "stop")
        for s in stops:
            if not s or len(s) > MAX_STOP_LENGTH:
                raise InvalidRequest(f"Each stop string must be 1 to {MAX_STOP_LENGTH} characters; got "
                                     f"{_short(s)}.", "stop")
        return tuple(stops)

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    def _check_supported(self) -> None:
        metadata = self.metadata or {}
        if len(metadata) > MAX_METADATA_PAIRS or any(
                len(k) > MAX_METADATA_KEY or len(v) > MAX_METADATA_VALUE for k, v in metadata.items()):
            raise InvalidRequest(f"metadata takes up to {MAX_METADATA_PAIRS} pairs, keys up to {MAX_METADATA_KEY} "
                                 f"characters and values up to {MAX_METADATA_VALUE}.", "metadata")
        for name, hint in UNSUPPORTED.items():
            value = getattr(self, name)
            if name == "response_format" and value is not None and value.get("type") == "text":
                continue
            if value not in (None, 0, False, [], {}):
                raise InvalidRequest(f"{name} is not supported by this server: {hint}.", name)


def thinking_of(kwargs: dict[str, Any] | None) -> bool | None:
    """`chat_template_kwargs.enable_thinking`, checked: no other key, a boolean."""
    kwargs = kwargs or {}
    unknown = sorted(set(kwargs) - set(TEMPLATE_KWARGS))
    if unknown:
        raise InvalidRequest(f"chat_template_kwargs.{unknown[0]} is not accepted: chat_template_kwargs takes only "
                             f"{', '.join(TEMPLATE_KWARGS)}.", f"chat_template_kwargs.{unknown[0]}")
    value = kwargs.get("enable_thinking")
    if value is not None and not isinstance(value, bool):
        raise InvalidRequest(f"chat_template_kwargs.enable_thinking must be true or false; got {_short(value)}.",
                             "chat_template_kwargs.enable_thinking")
    return value


def _content_text(content: Any, i: int) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(
            isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str) for p in content):
        return "".join(p["text"] for p in content)
    raise InvalidRequest(f"messages[{i}].content must be a string (or a list of {{\"type\": \"text\", \"text\": "
                         f"...}} parts; MiniCPM-2B reads text only); got {_short(content)}.",
                         f"messages[{i}].content")


# --- OpenAI chat completions: responses (the `openai` package's own types) ---------------------
#
# Built with every field we send set explicitly and serialized with exclude_unset, so a reply carries
# what OpenAI's does for a text reply (a content chunk has "finish_reason": null, the last delta is {},
# usage only on the include_usage chunk) and none of the fields for tools, audio or log probabilities.

FinishReason = Literal["stop", "length", "tool_calls"]
Usage = CompletionUsage


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def chat_completion(request_id: str, model: str, text: str, finish_reason: FinishReason,
                    usage: Usage, reasoning: str = "", calls: list[ToolCall] | None = None) -> ChatCompletion:
    """A whole reply; `reasoning_content` (vLLM's extra field) only when the model thought. Cut by
    max_tokens inside the reasoning: finish_reason "length", content "" and reasoning_content set.
    With calls: `tool_calls`, and `content` null where the model wrote no text besides them (as OpenAI)."""
    fields: dict[str, Any] = {"role": "assistant", "content": text}
    if calls:
        fields.update(content=text or None, tool_calls=[
            ChatCompletionMessageFunctionToolCall(id=c.id, type="function",
                                                  function=CallFunction(name=c.name, arguments=c.arguments_json))
            for c in calls])
    if reasoning:
        fields["reasoning_content"] = reasoning
    message = ChatCompletionMessage(**fields)
    return ChatCompletion(id=request_id, object="chat.completion", created=now(), model=model, usage=usage,
                          choices=[Choice(index=0, message=message, finish_reason=finish_reason)])


def usage_of(prompt_tokens: int, completion_tokens: int, reasoning_tokens: int = 0) -> Usage:
    """OpenAI's usage; completion_tokens include the reasoning's, told apart in completion_tokens_details
    only when there was reasoning (so a MiniCPM-2B reply's usage is as before)."""
    usage = Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                  total_tokens=prompt_tokens + completion_tokens)
    if reasoning_tokens:
        usage = Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                      total_tokens=prompt_tokens + completion_tokens,
                      completion_tokens_details=CompletionTokensDetails(reasoning_tokens=reasoning_tokens))
    return usage


def delta_chunk(request_id: str, created: int, model: str, delta: ChoiceDelta,
                finish_reason: FinishReason | None = None) -> ChatCompletionChunk:
    """OpenAI sends `{"role": "assistant", "content": ""}` first, then `{"content": ...}`, then `{}`."""
    return ChatCompletionChunk(id=request_id, object="chat.completion.chunk", created=created, model=model,
                               choices=[ChunkChoice(index=0, delta=delta, finish_reason=finish_reason)])


def tool_call_delta(call: ToolCall, index: int) -> ChoiceDelta:
    """A whole call in one streamed delta, as OpenAI's first chunk of a call has it (id, type, name)
    plus all of its arguments."""
    function = ChoiceDeltaToolCallFunction(name=call.name, arguments=call.arguments_json)
    return ChoiceDelta(tool_calls=[ChoiceDeltaToolCall(index=index, id=call.id, type="function", function=function)])


def usage_chunk(request_id: str, created: int, model: str, usage: Usage) -> ChatCompletionChunk:
    return ChatCompletionChunk(id=request_id, object="chat.completion.chunk", created=created, model=model,
                               choices=[], usage=usage)


def sse_event(chunk: BaseModel) -> str:
    """One server-sent event carrying `chunk` as its fields were set."""
    return f"data: {chunk.model_dump_json(exclude_unset=True)}\n\n"


class ModelCard(Model):
    """openai's Model, with our defaults and vLLM's `max_model_len`."""

    object: Literal["model"] = "model"
    owned_by: str = "openbmb"  # remote.py recognises this project's server by it
    max_model_len: int = Field(description="Context length in tokens (vLLM's field name).")


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    model_loaded: bool
    model: str
    queue_depth: int
    running: int


def now() -> int:
    return int(time.time())


# --- turning validation errors into sentences ---------------------------------------------------

_KINDS = {
    "string": "a string", "float": "a number", "int": "an integer", "bool": "true or false",
    "list": "a list", "dict": "an object", "model": "an object", "model_attributes": "an object",
}


def describe_validation_error(errors: list[dict],
                              known_fields: Sequence[str] = ()) -> tuple[str, str | None]:
    """First pydantic/FastAPI error → (one sentence for a human, the offending parameter)."""
    err = errors[0]
    loc = [p for p in err.get("loc", ()) if p != "body"]
    kind, value = err.get("type", ""), err.get("input")
    if kind == "json_invalid":
        detail = (err.get("ctx") or {}).get("error", "")
        where = f", at character {loc[0]}" if loc and loc[0] != UNKNOWN_POSITION else ""
        return f"The request body is not valid JSON ({detail}{where}).", None
    if not loc or isinstance(loc[0], int):
        if kind == "missing":
            return "The request body is empty: send a JSON object.", None
        if isinstance(value, (bytes, bytearray)):
            return ("The request body must be JSON, sent with the header Content-Type: application/json.", None)
        return f"The request body must be a JSON object; got {_json_kind(value)}.", None
    param = _path(loc)
    if kind == "missing":
        return f"{param} is required.", param
    if kind == "extra_forbidden":
        close = difflib.get_close_matches(str(loc[-1]), known_fields, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        return f"Unknown parameter '{param}'.{hint}", param
    base = kind.removesuffix("_type").removesuffix("_parsing").removesuffix("_from_float")
    if base in _KINDS:
        return f"{param} must be {_KINDS[base]}; got {_short(value)}.", param
    return f"Invalid {param}: {err.get('msg', kind)} (got {_short(value)}).", param


def _path(loc: list) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _json_kind(value: Any) -> str:
    for kind, name in ((list, "an array"), (str, "a string"), (bool, "a boolean"), ((int, float), "a number")):
        if isinstance(value, kind):
            return name
    return "null" if value is None else type(value).__name__


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value[:limit] + "..." if isinstance(value, str) and len(value) > limit else value)
    return text if len(text) <= limit else text[:limit - 3] + "..."
