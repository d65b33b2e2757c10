"""A remote model behind any OpenAI-compatible server, driven like the local `Engine`.

`RemoteBackend(base_url)` talks to this project's `/v1` (`python -m minicpm_core.api`), vLLM,
SGLang or any other OpenAI-compatible server (`transformers serve`, ...) through the official
`openai` client, and implements the `backend.Backend` contract an `Engine` does:
`submit(messages, params)` returns a handle to iterate for text deltas, with `cancel()`, `text`,
`stats`, `position`; plus `prepare`, `budget`, `context_length`, `queue_depth`, `running`, `recent`,
`ignored_controls`, `chat`, and `info()` for the Model page. What is loaded is the server's business:
`family`, `model_id`, `loaded_path` and `kv_budget()` are None, and `retire()` has nothing to free.

What is known remotely, and what is not:
- `stats` is a `ReplyStats`: token counts from the server's usage (requested with
  `stream_options.include_usage`), time to first token and tokens/s measured here, so they include
  the network. Queue time and dropped turns are unknown (0).
- `prepare()` validates the messages and parameters but cannot count tokens without the server's
  tokenizer: it returns None. `context_length` is the server's `max_model_len` when /v1/models
  reports it (this project's server and vLLM do), else the default family's (MiniCPM-2B's).
- `position` is 0 while the reply streams and None once done: a remote queue is invisible.
  `queue_depth` / `running` come from this project's `/health`; other servers give 0.
- Which controls reach the model: the standard chat-completions fields (temperature, top_p,
  max_tokens, seed) go to every server. MiniCPM's other controls (repetition_penalty, top_k,
  max_length) are extra body fields, which strict servers refuse (`transformers serve` answers 422
  "Unexpected fields"), so they are sent only to servers known to honour them, recognised by the
  `owned_by` of their /v1/models card: this project's server, vLLM and SGLang. A server that still
  refuses a field it names is asked once more without it, and the field is left out from then on.
  `ignored_controls` lists what the server does not get, for the sidebar and the Model page.
- Thinking: `submit(..., enable_thinking=...)` sends `chat_template_kwargs: {"enable_thinking": ...}`
  (vLLM's and SGLang's convention, which this project's server follows too) when it is not None and
  the server is one of those (`SERVERS_WITH_TEMPLATE_KWARGS`); others never get it. The reply's
  `delta.reasoning_content` (or vLLM's newer `delta.reasoning`) goes to `reasoning` and `parts()`,
  `delta.content` to `text` and iteration: the same split an Engine gives.
- `cancel()` closes the HTTP stream; a server that watches its connections (ours does) stops
  generating. The text never shows MiniCPM's turn markers: they are sent as stop strings.

Errors arrive as the project's own classes: a bad request as InvalidRequest (ContextOverflow when
the server says the context is exceeded), an unreachable or failing server as GenerationFailed
naming the URL, an unknown model as ModelNotFound.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import deque
from collections.abc import Generator
from typing import Any

import httpx
import openai

from .backend import answer_deltas
from .errors import (
    RETRY_AFTER_DEFAULT_S,
    ContextOverflow,
    GenerationFailed,
    InvalidRequest,
    MiniCPMError,
    ModelNotFound,
    QueueFull,
)
from .families import DEFAULT_FAMILY
from .params import SERVERS_WITH_SAMPLING_EXTRAS, GenerationParams, openai_name
from .prompt import validate_messages
from .settings import RemoteSettings
from .stats import FINISH_REASONS, RECENT_STATS, ReplyStats

DEFAULT_CONTEXT = DEFAULT_FAMILY.context_length  # when the server does not say
HEALTH_TIMEOUT = 2.0  # seconds; /health is a status nicety, never worth a stalled page
METADATA_TIMEOUT = 10.0  # seconds for /v1/models; replies themselves may take minutes
PLACEHOLDER_KEY = "EMPTY"  # the openai client insists on a key; servers without one ignore it

# GenerationParams fields that chat.completions has a standard field for, and its name there.
STANDARD_FIELDS = {name: openai_name(name) for name in GenerationParams.fields_where("wire", "standard")}
# Every other field is an extra body field under its own name, honoured only by some servers.
EXTRA_FIELDS = GenerationParams.fields_where("wire", "extra")
WIRE_NAMES = {name: STANDARD_FIELDS.get(name, name) for name in GenerationParams.model_fields}
# Fields whose default means "no limit" or "off", which is every server's own default: not worth sending.
UNLIMITED_DEFAULTS = tuple(name for name in GenerationParams.model_fields
                           if not GenerationParams.carried(name, "send_default", True))


def _extras_honoured_by(owner: str) -> frozenset[str]:
    return frozenset(name for name in EXTRA_FIELDS if owner in GenerationParams.carried(name, "honoured_by", ()))


# The extras a server honours, by the `owned_by` of its /v1/models card (checked in their sources):
# this project's ModelCard says "openbmb" and honours all; vLLM's and SGLang's ModelCard say "vllm"
# and "sglang", and each field's `honoured_by` names them where their chat requests take it.
HONOURED_EXTRAS: dict[str, frozenset[str]] = {
    "openbmb": frozenset(EXTRA_FIELDS),
    **{owner: _extras_honoured_by(owner) for owner in SERVERS_WITH_SAMPLING_EXTRAS},
}
# Fields a refusing server may have left out on the retry; model, messages, stream and stop may not.
OPTIONAL_FIELDS = frozenset(WIRE_NAMES.values()) | {"stream_options", "chat_template_kwargs"}
# A 4xx that names fields of the request is a refusal of those fields when it says one of these
# (transformers serve: "Unexpected fields", OpenAI: "Unrecognized request argument", pydantic:
# "Extra inputs are not permitted", this project: "Unknown parameter").
REFUSAL_WORDS = re.compile(r"unexpected|unrecogni[sz]ed|unsupported|not supported|unknown|"
                           r"extra inputs|extra fields|not permitted|not allowed", re.IGNORECASE)

# Servers (owned_by) whose chat requests take `chat_template_kwargs`, where the thinking switch goes.
SERVERS_WITH_TEMPLATE_KWARGS = ("openbmb", "vllm", "sglang")
REASONING_FIELDS = ("reasoning_content", "reasoning")  # vLLM and SGLang; vLLM >= 0.10 also says `reasoning`

log = logging.getLogger(__name__)


def reasoning_of(part: Any) -> str:
    """The reasoning a streamed delta or a message carries, as an extra field ("" when none)."""
    for name in REASONING_FIELDS:
        value = getattr(part, name, None)
        if isinstance(value, str) and value:
            return value
    return ""


class RemoteGeneration:
    """One streamed reply. Iterate it (once) for the answer's deltas, which add up to `text`, or call
    `parts()` for (reasoning, answer) pairs; the reasoning adds up to `reasoning`."""

    def __init__(self, backend: RemoteBackend, stream, submitted: float):
        self.text = ""
        self.reasoning = ""
        self.stopped_for: str | None = None  # a switch never stops a remote reply (RemoteBackend.retire)
        self.stats: ReplyStats | None = None
        self._backend = backend
        self._stream = stream
        self._submitted = submitted
        self._cancelled = threading.Event()
        self._finished = threading.Event()
        self._usage = None
        self._finish_reason: str | None = None
        self._chunks = 0
        self._iterated = False
        self._lock = threading.Lock()
        self._first: float | None = None
        self._last: float | None = None

    @property
    def position(self) -> int | None:
        return None if self._finished.is_set() else 0

    @property
    def done(self) -> bool:
        return self._finished.is_set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def cancel(self) -> None:
        self._cancelled.set()
        self._stream.close()  # the server sees the disconnect and stops generating
        if not self._iterated:
            self._finish("cancelled")

    def __iter__(self) -> Generator[str, None, None]:
        return answer_deltas(self._parts())

    def parts(self) -> Generator[tuple[str, str], None, None]:
        """`(reasoning_delta, answer_delta)` pairs in order, at least one of them non-empty in each."""
        return self._parts()

    def _parts(self) -> Generator[tuple[str, str], None, None]:
        self._iterated = True
        try:
            for chunk in self._stream:
                if chunk.usage is not None:
                    self._usage = chunk.usage
                for choice in chunk.choices:
                    if choice.finish_reason:
                        self._finish_reason = choice.finish_reason
                    content = (choice.delta.content if choice.delta else None) or ""
                    reasoning = reasoning_of(choice.delta) if choice.delta else ""
                    if content or reasoning:
                        self._last = time.perf_counter()
                        self._first = self._first or self._last
                        self._chunks += 1
                        self.reasoning += reasoning
                        self.text += content
                        yield reasoning, content
        except Exception as exc:  # noqa: BLE001 - closing the stream from cancel() lands here too
            if self._cancelled.is_set():
                self._finish("cancelled")
                return
            failure = self._backend._failure(exc)
            self._finish("error")
            raise failure from None
        else:
            self._finish("cancelled" if self._cancelled.is_set() else self._reason())
        finally:
            if not self._finished.is_set():  # the consumer went away (Streamlit rerun)
                self._cancelled.set()
                self._stream.close()
                self._finish("cancelled")

    def result(self) -> str:
        for _ in self:
            pass
        return self.text

    def wait(self, timeout: float | None = None) -> bool:
        return self._finished.wait(timeout)

    def _reason(self) -> str:
        reason = self._finish_reason or "stop"
        return reason if reason in FINISH_REASONS else "stop"

    def _finish(self, finish_reason: str) -> None:
        with self._lock:  # cancel() and the iterating thread may both get here
            if self._finished.is_set():
                return
            self._record(finish_reason)
        self._finished.set()

    def _record(self, finish_reason: str) -> None:
        now = time.perf_counter()
        usage = self._usage
        completion = usage.completion_tokens if usage else self._chunks
        cached = getattr(getattr(usage, "prompt_tokens_details", None), "cached_tokens", None) or 0
        decode = (self._last - self._first) if self._first is not None and self._last is not None else 0.0
        details = getattr(usage, "completion_tokens_details", None)
        self.stats = ReplyStats(
            prompt_tokens=usage.prompt_tokens if usage else 0, completion_tokens=completion,
            cached_tokens=cached, turns_dropped=0, queue_seconds=0.0,
            ttft_seconds=None if self._first is None else self._first - self._submitted,
            tokens_per_second=(completion - 1) / decode if completion > 1 and decode > 0 else None,
            total_seconds=now - self._submitted, finish_reason=finish_reason,
            # the server's split: reasoning, then nothing of the answer, and cut short
            ended_in_reasoning=bool(self.reasoning) and not self.text and finish_reason == "length",
            reasoning_tokens=getattr(details, "reasoning_tokens", None) or 0)
        self._backend.recent.append(self.stats)


class RemoteBackend:
    """An OpenAI-compatible server as a `backend.Backend`."""

    ready = True  # nothing to load here
    demo = False
    gpu_problem = None  # the server's GPU is the server's business
    # What is loaded is the server's business too: no family, id, folder or memory budget known here.
    family = None
    model_id = None
    loaded_path = None

    def __init__(self, base_url: str, api_key: str | None = None, model: str | None = None, *,
                 timeout: float = 600.0):
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.recent: deque[ReplyStats] = deque(maxlen=RECENT_STATS)
        # No retries: a chat page should say at once that the server is down, not after backoff.
        self.client = openai.OpenAI(base_url=self.base_url, api_key=api_key or PLACEHOLDER_KEY,
                                    max_retries=0, timeout=timeout)
        self._model = model
        self._card: dict | None = None
        self._health_supported = True
        self._refused: set[str] = set()  # request fields this server refused (see refused_fields)

    # --- backend.Backend -------------------------------------------------------------------------

    def submit(self, messages: list[dict], params: GenerationParams | dict | None = None, *,
               cancelled=None, enable_thinking: bool | None = None) -> RemoteGeneration:
        """Validate here, then open the stream; the server's own refusals raise here too. (`cancelled`
        is accepted as the Engine's is, but there is no encoding here for it to stop.) `enable_thinking`
        reaches servers that take chat_template_kwargs (module docstring)."""
        messages = validate_messages(messages)
        if not isinstance(params, GenerationParams):
            params = GenerationParams.parse(params)
        submitted = time.perf_counter()
        try:
            try:
                stream = self._open_stream(messages, params, enable_thinking)
            except openai.APIStatusError as exc:
                refused = refused_fields(exc, self._request_fields(params, enable_thinking))
                if not refused:
                    raise
                self._refused |= refused  # remembered: the next requests leave them out from the start
                log.warning("The model server at %s refused %s; asking again without them.", self.base_url,
                            ", ".join(sorted(refused)))
                # once: a second refusal is the user's error
                stream = self._open_stream(messages, params, enable_thinking)
        except Exception as exc:  # noqa: BLE001 - every client error becomes one of ours
            raise self._failure(exc) from None
        return RemoteGeneration(self, stream, submitted)

    def chat(self, messages: list[dict], params: GenerationParams | dict | None = None) -> tuple[str, ReplyStats]:
        generation = self.submit(messages, params)
        text = generation.result()
        assert generation.stats is not None  # set before result() returns
        return text, generation.stats

    def prepare(self, messages: list[dict], params: GenerationParams | dict | None = None, cancelled=None, *,
                enable_thinking: bool | None = None) -> None:
        """Validate without generating. Token counts need the server's tokenizer: None."""
        validate_messages(messages)
        if not isinstance(params, GenerationParams):
            GenerationParams.parse(params)
        return None

    def kv_budget(self) -> None:
        return None  # the server's memory is not ours to budget

    def wait(self) -> RemoteBackend:
        return self  # nothing to load

    def retire(self, successor: str, drain_s: float) -> None:
        """Nothing to free: the model lives on the server, and replies under way go on there."""

    def budget(self, params: GenerationParams) -> int:
        return min(params.max_length, self.context_length or params.max_length)

    @property
    def model(self) -> str:
        if self._model is None:
            self._model = self._model_card()["id"]
        return self._model

    @property
    def model_name(self) -> str:
        """The served model's name (asked of the server once); the name given while it cannot be reached."""
        try:
            return self.model
        except MiniCPMError:
            return self._model or self.base_url

    @property
    def context_length(self) -> int:
        try:
            return int(self._model_card().get("max_model_len") or DEFAULT_CONTEXT)
        except MiniCPMError:
            return DEFAULT_CONTEXT

    @property
    def ignored_controls(self) -> tuple[str, ...]:
        """GenerationParams fields this server does not get (in the schema's order): the extras it is
        not known to honour, and any field it refused."""
        honoured = self._honoured_extras()
        return tuple(name for name in GenerationParams.model_fields
                     if (name in EXTRA_FIELDS and name not in honoured) or WIRE_NAMES[name] in self._refused)

    @property
    def queue_depth(self) -> int:
        return int((self._health() or {}).get("queue_depth", 0))

    @property
    def running(self) -> int:
        return int((self._health() or {}).get("running", 0))

    def info(self) -> dict[str, Any]:
        """What the Model page shows. Never raises: an unreachable server is reported in `error`."""
        info: dict[str, Any] = {"backend": "openai", "base_url": self.base_url, "model": self._model}
        try:
            card = self._model_card()
        except ModelNotFound as exc:  # it answered, but not with the model asked for
            ignored = ", ".join(self.ignored_controls) or None
            return info | {"reachable": True, "error": str(exc), "ignored_controls": ignored}
        except MiniCPMError as exc:
            return info | {"reachable": False, "error": str(exc)}
        info |= {"reachable": True, "model": self.model, "served_models": self._served,
                 "context_length": int(card.get("max_model_len") or DEFAULT_CONTEXT),
                 "owned_by": card.get("owned_by"), "ignored_controls": ", ".join(self.ignored_controls) or None}
        health = self._health()
        if health is not None:
            info["health"] = health
        return info

    def close(self) -> None:
        self.client.close()

    # --- internals --------------------------------------------------------------------------------

    def _open_stream(self, messages: list[dict], params: GenerationParams, enable_thinking: bool | None = None):
        usage = {} if "stream_options" in self._refused else {"stream_options": {"include_usage": True}}
        arguments = request_arguments(params, self.ignored_controls)
        if enable_thinking is not None and self.takes_template_kwargs:
            arguments.setdefault("extra_body", {})["chat_template_kwargs"] = {"enable_thinking": enable_thinking}
        # plain dicts, which the server validates: openai's overloads want its TypedDicts
        return self.client.chat.completions.create(model=self.model, messages=messages, stream=True, **usage,
                                                   **arguments)  # type: ignore[call-overload]

    @property
    def takes_template_kwargs(self) -> bool:
        """Whether this server takes `chat_template_kwargs` (the thinking switch): by its owned_by."""
        try:
            owner = str(self._model_card().get("owned_by")).lower()
        except MiniCPMError:
            return False
        return owner in SERVERS_WITH_TEMPLATE_KWARGS and "chat_template_kwargs" not in self._refused

    def _request_fields(self, params: GenerationParams, enable_thinking: bool | None = None) -> set[str]:
        """The optional fields `_open_stream` sends now, by their name on the wire."""
        arguments = request_arguments(params, self.ignored_controls)
        sent = set(arguments) | set(arguments.get("extra_body", {}))
        if enable_thinking is not None and self.takes_template_kwargs:
            sent.add("chat_template_kwargs")
        if "stream_options" not in self._refused:
            sent.add("stream_options")
        return sent & OPTIONAL_FIELDS

    def _honoured_extras(self) -> frozenset[str]:
        """The extra fields this kind of server is known to honour; none for an unknown or unreachable one."""
        try:
            owner = self._model_card().get("owned_by")
        except MiniCPMError:
            return frozenset()
        return HONOURED_EXTRAS.get(str(owner).lower(), frozenset())

    def _model_card(self) -> dict:
        """The served model's entry in /v1/models (the named one, else the first)."""
        if self._card is None:
            try:
                cards = [m.model_dump() for m in self.client.with_options(timeout=METADATA_TIMEOUT).models.list()]
            except Exception as exc:  # noqa: BLE001
                raise self._failure(exc) from None
            if not cards and self._model:  # transformers serve before 5.24 lists no local model: trust the name
                cards = [{"id": self._model}]
            if not cards:
                raise ModelNotFound(f"The server at {self.base_url} serves no model (GET /v1/models is empty).")
            self._served = [c["id"] for c in cards]
            wanted = [c for c in cards if c["id"] == self._model] if self._model else cards
            if not wanted:
                raise ModelNotFound(f"The server at {self.base_url} has no model {self._model!r}; it serves "
                                    f"{', '.join(self._served)}. Pick one with --remote-model.")
            self._card = wanted[0]
        return self._card

    def _health(self) -> dict | None:
        """This project's /health (queue depth, running), or None for other servers."""
        if not self._health_supported:
            return None
        root = self.base_url.removesuffix("/v1")
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        try:
            response = httpx.get(f"{root}/health", headers=headers, timeout=HEALTH_TIMEOUT)
            data = response.json()
        except (httpx.HTTPError, ValueError):
            return None
        if not isinstance(data, dict) or "queue_depth" not in data:
            self._health_supported = False  # vLLM's /health is an empty 200: stop asking
            return None
        return data

    def _failure(self, exc: Exception) -> MiniCPMError:
        """Any client-side exception as one of the project's errors, naming the server."""
        url = self.base_url
        if isinstance(exc, MiniCPMError):
            return exc
        if isinstance(exc, openai.APIConnectionError):  # includes timeouts
            cause = exc.__cause__ or exc
            return GenerationFailed(f"Could not reach the model server at {url} ({type(cause).__name__}: "
                                    f"{cause}). Check that it is running and that the base URL is right.")
        if isinstance(exc, openai.APIStatusError):
            message, param, code = _error_fields(exc)
            if exc.status_code == 401:
                return GenerationFailed(f"The model server at {url} refused the API key (401): {message}")
            if exc.status_code == 404:
                return ModelNotFound(f"The model server at {url} answered 404 ({message}). Check the base URL "
                                     "(it usually ends in /v1) and the model name.")
            if exc.status_code == 429:  # its queue is full (this project's server) or a rate limit
                retry_after = exc.response.headers.get("retry-after", "")
                return QueueFull(f"The model server at {url} is busy (429): {message}",
                                 retry_after=int(retry_after) if retry_after.isdigit() else RETRY_AFTER_DEFAULT_S)
            if exc.status_code in (400, 413, 422):
                cls = ContextOverflow if code == "context_length_exceeded" else InvalidRequest
                return cls(message, param)
            return GenerationFailed(f"The model server at {url} failed ({exc.status_code}): {message}")
        if isinstance(exc, openai.APIError):  # an error event inside the stream
            return GenerationFailed(f"The model server at {url} failed during the reply: {exc.message}")
        return GenerationFailed(f"The connection to the model server at {url} broke: "
                                f"{type(exc).__name__}: {exc}")


def request_arguments(params: GenerationParams, leave_out: tuple[str, ...] | frozenset[str] = ()) -> dict[str, Any]:
    """GenerationParams → chat.completions.create() arguments, the one place that maps them: standard
    fields by their OpenAI name, the others via extra_body; none of the fields named in `leave_out`, no
    unset one, and no limit at its "unlimited" default."""
    arguments: dict[str, Any] = {"stop": list(DEFAULT_FAMILY.stop_markers)}
    extra: dict[str, Any] = {}
    for name, field in GenerationParams.model_fields.items():
        value = getattr(params, name)
        if name in leave_out or value is None or (name in UNLIMITED_DEFAULTS and value == field.default):
            continue
        if name in STANDARD_FIELDS:
            arguments[STANDARD_FIELDS[name]] = value
        else:
            extra[name] = value
    if extra:
        arguments["extra_body"] = extra
    return arguments


def refused_fields(exc: openai.APIStatusError, sent: set[str]) -> set[str]:
    """The fields of `sent` that a 4xx answer refuses by name ("Unexpected fields in the request:
    {'top_k'}"), else an empty set: any other error is not a refusal of fields."""
    if not 400 <= exc.status_code < 500:
        return set()
    message, param, _ = _error_fields(exc)
    text = f"{message} {param or ''}"
    if not REFUSAL_WORDS.search(text):
        return set()
    return {name for name in sent if re.search(rf"(?<!\w){re.escape(name)}(?!\w)", text)}


def _error_fields(exc: openai.APIStatusError) -> tuple[str, str | None, str | None]:
    body = exc.body if isinstance(exc.body, dict) else {}
    body = body.get("error", body) if isinstance(body.get("error"), dict) else body
    message = body.get("message") or body.get("detail")  # FastAPI servers (transformers serve) say "detail"
    return str(message or exc.message), body.get("param"), body.get("code")


# --- from the settings --------------------------------------------------------------------------

def make_remote_backend(settings: RemoteSettings) -> RemoteBackend | None:
    """The RemoteBackend the settings ask for (`--backend openai --base-url URL ...`), or None for local."""
    if settings.backend != "openai":
        return None
    if not settings.base_url:
        raise InvalidRequest("--backend openai needs --base-url (e.g. http://127.0.0.1:6006/v1).", "base_url")
    return RemoteBackend(settings.base_url, api_key=settings.api_key, model=settings.remote_model)
