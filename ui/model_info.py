"""The Model page's content: what is loaded, how busy it is, how fast recent replies were.

Values come from `Backend.info()` (a flat dict); known keys get translated labels and units,
unknown ones (a remote backend's extras) are shown as given.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from minicpm_core.stats import ReplyStats
from ui.i18n import has, t

INFO_ORDER = ("backend", "source", "path", "base_url", "model", "reachable", "error", "served_models", "owned_by",
              "device", "dtype", "attention", "parameters", "memory_bytes", "load_seconds", "context_length",
              "max_concurrent", "health")
RECENT_COLUMNS = ("completion_tokens", "tokens_per_second", "ttft_seconds", "queue_seconds", "total_seconds",
                  "prompt_tokens", "cached_tokens", "finish_reason")


def format_count(n: int) -> str:
    for size, unit in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return str(n)


def format_bytes(n: int) -> str:
    for size, unit in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n} B"


def format_value(key: str, value: Any) -> str:
    if value is None:
        return "—"
    if key == "parameters":
        return format_count(int(value))
    if key == "memory_bytes":
        return format_bytes(int(value))
    if key == "load_seconds":
        return f"{value:.1f} s"
    if key == "context_length":
        return t("n_tokens", n=value)
    return str(value)


def info_rows(info: dict[str, Any]) -> list[dict[str, str]]:
    """[{"": label, value}] in a fixed order, known keys first; every value a string."""
    keys = [k for k in INFO_ORDER if k in info] + sorted(k for k in info if k not in INFO_ORDER)
    label, value = t("model_property"), t("model_value")
    return [{label: t(f"info_{key}") if has(f"info_{key}") else key, value: format_value(key, info[key])}
            for key in keys]


def recent_rows(recent: Sequence[ReplyStats]) -> list[dict[str, Any]]:
    """The last replies' numbers, newest first, with translated column names."""
    rows = []
    for stats in reversed(list(recent)):  # a copy: engine workers append to it meanwhile
        data = stats.as_dict()
        row = {}
        for column in RECENT_COLUMNS:
            value = data.get(column)
            row[t(f"col_{column}")] = round(value, 3) if isinstance(value, float) else value
        rows.append(row)
    return rows

