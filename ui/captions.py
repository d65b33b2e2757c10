"""The words under a stored reply: its caption (model, tokens, speed, how it ended) and the label of
its collapsed reasoning block. Pure functions of a message's meta, shared by Chat and Compare."""

from __future__ import annotations

from typing import Any

from minicpm_core.stats import FINISH_REASONS
from ui.i18n import t
from ui.markdown_safe import plain_text


def reply_caption(meta: dict[str, Any]) -> str:
    """'OpenBMB/MiniCPM5-1B · 42 tokens · 12.3 tokens/s · finished' under a reply; '' for a message
    without numbers. (Markdown: the model's name, which an import file may carry, is escaped.)"""
    parts = [plain_text(meta["model"])] if meta.get("model") else []
    if meta.get("completion_tokens") is not None:
        parts.append(t("stat_tokens", n=meta["completion_tokens"]))
    if meta.get("tokens_per_second"):
        parts.append(t("stat_speed", speed=meta["tokens_per_second"]))
    reason = meta.get("finish_reason")
    if reason == "cancelled" and meta.get("stopped_for"):
        parts.append(t("finish_switched", model=plain_text(meta["stopped_for"])))
    elif reason in FINISH_REASONS:
        parts.append(t(f"finish_{reason}"))
    elif "params" in meta and reason is None:
        parts.append(t("finish_unfinished"))  # still streaming in another run, or the process died
    return " · ".join(parts)


def reasoning_label(meta: dict[str, Any]) -> str:
    """The collapsed block's label under a stored reply: its time and, once known, its token count."""
    seconds = meta.get("reasoning_seconds") or 0.0
    if meta.get("reasoning_tokens"):
        return t("thought_tokens", seconds=seconds, n=meta["reasoning_tokens"])
    return t("thought", seconds=seconds)
