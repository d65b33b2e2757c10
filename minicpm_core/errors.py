"""The project's small error hierarchy.

Every error a user can cause or meet derives from `MiniCPMError`, and its message is written for
that user: what went wrong and what to do. The HTTP API maps these classes to status codes once
(`minicpm_core.api`), and the Streamlit app shows them with `st.error`; neither shows a traceback.
"""

from typing import Any


class MiniCPMError(Exception):
    """Base class: the message is user-facing and says what to do.

    `code` names the kind of failure and `details` holds the values its message was built from, so
    an interface can say the same in another language (the app's Chinese texts: ui/i18n.py).
    """

    def __init__(self, message: str, *, code: str | None = None, **details: Any):
        super().__init__(message)
        self.code = code
        self.details = details


class InvalidRequest(MiniCPMError):
    """The caller sent something we cannot serve (bad parameter, bad messages). HTTP 400."""

    def __init__(self, message: str, param: str | None = None, *, code: str | None = None, **details: Any):
        super().__init__(message, code=code, **details)
        self.param = param


class ContextOverflow(InvalidRequest):
    """The newest question alone does not fit in the context window. HTTP 400."""


class ModelNotFound(MiniCPMError):
    """No usable checkpoint where we looked: the message names the path and the fix command."""


class GenerationFailed(MiniCPMError):
    """Generation broke inside the model (out of memory, CUDA error). HTTP 500; the engine stays usable."""


class ModelSwitching(MiniCPMError):
    """The server is switching to another model: this one takes no more requests. Ask again once it has loaded."""


RETRY_AFTER_DEFAULT_S = 10  # the retry hint when nothing better is known (no reply timed yet)


class QueueFull(MiniCPMError):
    """Every slot is busy and the queue is at its limit: try again after `retry_after` seconds. HTTP 429."""

    def __init__(self, message: str, *, retry_after: int, **details: Any):
        super().__init__(message, code="queue_full", retry_after=retry_after, **details)
        self.retry_after = retry_after
