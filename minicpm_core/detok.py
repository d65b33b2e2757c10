"""Incremental detokenization: token ids in, text deltas out, never half a character; and a cheap
per-token check for stop markers (`StopMarkerWatch`).

Byte-fallback tokens (`<0xE4>`, `<0xBD>`, ...) decode to U+FFFD until the character is complete,
so a delta is held back while the decoded window ends in U+FFFD, and the bytes of a character that
never completes are dropped at the end. Each step decodes only a short
window (from `prefix_offset`), not the whole reply, so the cost per token stays constant; the
window is needed because sentencepiece decoding of a token depends on its left neighbour (the
leading-space rule). Unlike transformers' TextIteratorStreamer, text is released as soon as it is
complete, not at the next space, so Chinese and punctuation flow immediately.
"""

from __future__ import annotations

REPLACEMENT = "\ufffd"


class IncrementalDecoder:
    def __init__(self, tokenizer, skip_special_tokens: bool = True, hidden_ids: frozenset[int] | None = None):
        """`hidden_ids`: leave exactly these ids out of the text (and decode the rest with special
        tokens kept) instead of skipping whatever the tokenizer marks special."""
        self._tokenizer = tokenizer
        self._skip = skip_special_tokens
        self._hidden = hidden_ids
        self.ids: list[int] = []
        self._prefix_offset = 0  # decoding window start
        self._read_offset = 0  # ids up to here have been emitted as text

    def _decode(self, ids: list[int]) -> str:
        if self._hidden is not None:
            return self._tokenizer.decode([i for i in ids if i not in self._hidden], skip_special_tokens=False)
        return self._tokenizer.decode(ids, skip_special_tokens=self._skip)

    def push(self, new_ids: list[int]) -> str:
        """Add ids; return the newly completed text (possibly empty)."""
        self.ids.extend(new_ids)
        prefix_text = self._decode(self.ids[self._prefix_offset:self._read_offset])
        full_text = self._decode(self.ids[self._prefix_offset:])
        if full_text.endswith(REPLACEMENT) or len(full_text) <= len(prefix_text):
            return ""  # an incomplete multi-byte character, or nothing visible yet
        self._prefix_offset = self._read_offset
        self._read_offset = len(self.ids)
        return full_text[len(prefix_text):]

    def flush(self) -> str:
        """Whatever is left at the end. A reply that stopped inside a multi-byte character (max_tokens, a
        stop, a cancel) ends in its first bytes, which decode to U+FFFD: those are dropped, never shown."""
        prefix_text = self._decode(self.ids[self._prefix_offset:self._read_offset])
        full_text = self._decode(self.ids[self._prefix_offset:])
        self._prefix_offset = self._read_offset = len(self.ids)
        return full_text[len(prefix_text):].rstrip(REPLACEMENT)


class StopMarkerWatch:
    """Tells, token by token, whether the newest token completed a stop marker in the decoded text.

    Built once per tokenizer. `closers` are the ids whose text can end a marker: it contains a
    marker's last character, or it is part of a multi-byte character (decodes to U+FFFD alone). A
    marker can only be completed by a closer, so for any other token the answer needs no decoding;
    for a closer, only the last `window` tokens are decoded (a character is at most four tokens).
    """

    def __init__(self, tokenizer, markers: tuple[str, ...]):
        self._tokenizer = tokenizer
        self.markers = markers
        last_chars = {marker[-1] for marker in markers}
        self.closers: frozenset[int] = frozenset()  # no markers (MiniCPM5 ends on a token): nothing to watch
        if markers:
            texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))], skip_special_tokens=True)
            self.closers = frozenset(i for i, text in enumerate(texts)
                                     if REPLACEMENT in text or any(c in text for c in last_chars))
        self.window = 4 * max((len(marker) for marker in markers), default=0)

    def has_marker(self, ids: list[int]) -> bool:
        """Whether the text of `ids` (the newest `window` tokens of a reply) contains a marker."""
        text = self._tokenizer.decode(ids, skip_special_tokens=True)
        return any(marker in text for marker in self.markers)
