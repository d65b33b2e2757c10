"""Incremental detokenization: token ids in, text deltas out, never half a character.

Byte-fallback tokens (`<0xE4>`, `<0xBD>`, ...) decode to U+FFFD until the character is complete,
so a delta is held back while the decoded window ends in U+FFFD. Each step decodes only a short
window (from `prefix_offset`), not the whole reply, so the cost per token stays constant; the
window is needed because sentencepiece decoding of a token depends on its left neighbour (the
leading-space rule). Unlike transformers' TextIteratorStreamer, text is released as soon as it is
complete, not at the next space, so Chinese and punctuation flow immediately.
"""

from __future__ import annotations

REPLACEMENT = "\ufffd"


class IncrementalDecoder:
    def __init__(self, tokenizer, skip_special_tokens: bool = True):
        self._tokenizer = tokenizer
        self._skip = skip_special_tokens
        self.ids: list[int] = []
        self._prefix_offset = 0  # decoding window start
        self._read_offset = 0  # ids up to here have been emitted as text

    def _decode(self, ids: list[int]) -> str:
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
        """Whatever is left at the end (a truly invalid byte sequence decodes to U+FFFD here)."""
        prefix_text = self._decode(self.ids[self._prefix_offset:self._read_offset])
        full_text = self._decode(self.ids[self._prefix_offset:])
        self._prefix_offset = self._read_offset = len(self.ids)
        return full_text[len(prefix_text):]
