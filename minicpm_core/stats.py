"""What one finished reply reports. Torch-free, so the remote backend can use it without torch."""

from __future__ import annotations

from dataclasses import asdict, dataclass

RECENT_STATS = 50  # replies the engine remembers for the Model page
FINISH_REASONS = ("stop", "length", "cancelled", "error")


@dataclass
class ReplyStats:
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    turns_dropped: int
    queue_seconds: float
    ttft_seconds: float | None  # from submission to the first generated token
    tokens_per_second: float | None  # decode speed after the first token
    total_seconds: float
    finish_reason: str
    ended_in_reasoning: bool = False  # a thinking reply that stopped inside <think> (cut by max_length)
    reasoning_tokens: int = 0  # of completion_tokens, those the model spent inside <think>…</think>

    def as_dict(self) -> dict:
        return asdict(self)
