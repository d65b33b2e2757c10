"""KV caches of recent conversations, reused when a new prompt starts with the same tokens.

Matching is by token prefix, not by session: a browser tab and an API client that resends the
whole history both hit. Entries are handed out exclusively (`take` removes the entry), so two
requests never write into the same cache; the request puts its extended cache back when done.
Bounded by entry count and by bytes, least recently used out first.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import torch
from transformers import DynamicCache

DEFAULT_MAX_BYTES = 2 << 30
DEFAULT_MAX_ENTRIES = 16
MIN_REUSE_TOKENS = 8  # shorter matches (little more than BOS and a tag) are not worth keeping an entry for


@dataclass
class _Entry:
    ids: tuple[int, ...]
    cache: DynamicCache
    nbytes: int


def cache_bytes(cache: DynamicCache) -> int:
    total = 0
    for layer in cache.layers:
        for tensor in (getattr(layer, "keys", None), getattr(layer, "values", None)):
            if isinstance(tensor, torch.Tensor):
                total += tensor.untyped_storage().nbytes()  # a cropped view still holds its storage
    return total


def common_prefix_len(a: tuple[int, ...], b: list[int]) -> int:
    n = min(len(a), len(b))
    if a[:n] == tuple(b[:n]):
        return n
    low, high = 0, n  # binary search on the longest equal prefix; slices compare in C
    while low < high:
        mid = (low + high + 1) // 2
        if a[:mid] == tuple(b[:mid]):
            low = mid
        else:
            high = mid - 1
    return low


class PrefixCache:
    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES, max_entries: int = DEFAULT_MAX_ENTRIES):
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self._entries: OrderedDict[int, _Entry] = OrderedDict()
        self._next_key = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def take(self, ids: list[int]) -> tuple[DynamicCache | None, int]:
        """Remove and return the cache sharing the longest prefix with `ids`, cropped to it.

        At least one token of `ids` is always left uncached: generation needs the logits of the last
        prompt token. Returns (None, 0) when nothing useful is cached.
        """
        with self._lock:
            best_key, best_len = None, 0
            for key, entry in self._entries.items():
                length = common_prefix_len(entry.ids, ids)
                if length > best_len:
                    best_key, best_len = key, length
            usable = min(best_len, len(ids) - 1)
            if best_key is None or usable < MIN_REUSE_TOKENS:
                self.misses += 1
                return None, 0
            entry = self._entries.pop(best_key)
            self.hits += 1
        excess = entry.cache.get_seq_length() - usable
        if excess > 0:
            entry.cache.crop(-excess)
        return entry.cache, usable

    def put(self, ids: list[int], cache: DynamicCache) -> None:
        """Keep `cache`, which holds the keys and values of `ids[:cache.get_seq_length()]`."""
        length = cache.get_seq_length()
        if length < MIN_REUSE_TOKENS or self.max_entries == 0:
            return
        entry = _Entry(tuple(ids[:length]), cache, cache_bytes(cache))
        if entry.nbytes > self.max_bytes:
            return
        with self._lock:
            self._entries[self._next_key] = entry
            self._next_key += 1
            while len(self._entries) > self.max_entries or self.total_bytes() > self.max_bytes:
                self._entries.popitem(last=False)

    def total_bytes(self) -> int:
        return sum(entry.nbytes for entry in self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
