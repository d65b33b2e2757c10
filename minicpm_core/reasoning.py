"""Separate a thinking model's reply into its reasoning and its answer, as the text streams in.

MiniCPM5 (like Qwen3 and MiniCPM4.1) writes `<think>…reasoning…</think>` and then the answer. The
chat template may already have opened the block (the prompt ends with `<think>`), closed it empty
(thinking off: `<think>\\n\\n</think>\\n\\n` in the prompt) or left the choice to the model.
`ReasoningSplitter` takes decoded text deltas in any chunking (down to single characters, a tag
split across deltas) and returns `(reasoning_delta, content_delta)` pairs such that:

- the tags never appear in either part, not even as a partial chunk: text that could still become a
  tag is held back until it is decided (as `prompt.unsafe_tail` does for stop markers);
- the newlines that frame the reasoning (`<think>\\n`, `\\n</think>`) and the leading newlines of the
  answer are dropped, as the template itself strips them when it renders a past turn;
- the concatenated deltas equal `split_reasoning()` of the whole text, whatever the chunking.

vLLM's `<think>` parsers (qwen3, deepseek_r1) partition on the tags the same way, but keep the
framing newlines; we drop them because they are the template's layout, not the model's words.

It works on text, not token ids, so it needs the think tags to survive decoding: a tokenizer must
keep `<think>`/`</think>` with `skip_special_tokens=True` (Qwen3 and the MiniCPM5 test tokenizer mark
them `special: false`). It deliberately knows nothing of stop tokens or `max_length`; the caller
tells it the reply ended (`finish()`), and `ended_in_reasoning` then says whether the reply was cut
inside the reasoning.
"""

from __future__ import annotations

from dataclasses import dataclass

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
TAGS = (THINK_OPEN, THINK_CLOSE)
_FRAMING = "\n"  # the character the template puts around the reasoning and before the answer

# Where the splitter is: before the model has shown whether it thinks, inside the reasoning, in the answer.
_UNDECIDED, _REASONING, _CONTENT = "undecided", "reasoning", "content"


@dataclass(frozen=True)
class Split:
    """A whole reply, split: `ended_in_reasoning` when it stopped before `</think>`."""

    reasoning: str
    content: str
    ended_in_reasoning: bool


def opens_reasoning(prompt: str) -> bool:
    """Whether a rendered prompt leaves a `<think>` block open, so the reply starts inside the reasoning."""
    return prompt.rstrip().endswith(THINK_OPEN)


def tag_prefix_len(text: str) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of a think tag (so may become one)."""
    longest = 0
    for tag in TAGS:
        for size in range(min(len(tag) - 1, len(text)), longest, -1):
            if text.endswith(tag[:size]):
                longest = size
                break
    return longest


def _first_tag(text: str) -> tuple[int, str] | None:
    """The earliest complete tag in `text`: (index, tag), or None."""
    hits = [(text.find(tag), tag) for tag in TAGS if tag in text]
    return min(hits) if hits else None


class ReasoningSplitter:
    """Incremental `<think>` splitter; see the module docstring.

    `opened`: the prompt already ends with `<think>` (see `opens_reasoning`), so the reply starts in
    the reasoning. Otherwise the reply is reasoning only if it starts with `<think>` (leading newlines
    aside); a tag anywhere else is dropped, never shown. `reasoning` and `content` accumulate
    everything returned so far.
    """

    def __init__(self, opened: bool = False):
        self._state = _REASONING if opened else _UNDECIDED
        self._pending = ""  # received but not yet returned: a possible tag, or framing newlines
        self._at_start = True  # no text of the current part returned yet (its leading newlines are dropped)
        self._finished = False
        self.reasoning = ""
        self.content = ""

    @property
    def in_reasoning(self) -> bool:
        return self._state == _REASONING

    @property
    def ended_in_reasoning(self) -> bool:
        """After `finish()`: the reply ended before its reasoning was closed (cut by max_length)."""
        return self._finished and self._state == _REASONING

    def feed(self, delta: str) -> tuple[str, str]:
        """Add decoded text; return the (reasoning, content) text that is now decided."""
        if self._finished:
            raise RuntimeError("ReasoningSplitter.feed() after finish()")
        self._pending += delta
        return self._drain(final=False)

    def finish(self) -> tuple[str, str]:
        """The reply ended: return what was held back (a lone tag prefix is text after all)."""
        if self._finished:
            return "", ""
        out = self._drain(final=True)
        self._finished = True
        return out

    def _drain(self, final: bool) -> tuple[str, str]:
        reasoning: list[str] = []
        content: list[str] = []
        while True:
            # 1. A part (reasoning, answer) never starts with newlines: the template's framing.
            if self._at_start:
                self._pending = self._pending.lstrip(_FRAMING)
            if not self._pending:
                break
            # 2. Before anything is shown, a reply that opens with <think> is reasoning; any other is the answer.
            if self._state == _UNDECIDED:
                if self._pending.startswith(THINK_OPEN):
                    self._pending = self._pending[len(THINK_OPEN):]
                    self._enter(_REASONING)
                elif THINK_OPEN.startswith(self._pending) and not final:
                    break  # "<thi": wait for the next delta
                else:
                    self._enter(_CONTENT)
                continue
            # 3. Text up to the next complete tag is decided; </think> ends the reasoning, other tags vanish.
            out = reasoning if self._state == _REASONING else content
            hit = _first_tag(self._pending)
            if hit is not None:
                index, tag = hit
                out.append(self._release(self._pending[:index], before_tag=tag == THINK_CLOSE))
                self._pending = self._pending[index + len(tag):]
                if tag == THINK_CLOSE and self._state == _REASONING:
                    self._enter(_CONTENT)
                continue
            # 4. No tag: release all but what may still become one.
            out.append(self._release_safe_part(final))
            break
        return self._record("".join(reasoning), "".join(content))

    def _enter(self, state: str) -> None:
        self._state, self._at_start = state, True

    def _release(self, text: str, before_tag: bool) -> str:
        """Text that precedes a tag: reasoning loses its trailing framing newlines before `</think>`."""
        if before_tag and self._state == _REASONING:
            text = text.rstrip(_FRAMING)
        if text:
            self._at_start = False
        return text

    def _release_safe_part(self, final: bool) -> str:
        """Return what cannot become part of a tag (nor, in reasoning, framing before `</think>`)."""
        text = self._pending if final else self._pending[:len(self._pending) - tag_prefix_len(self._pending)]
        if self._state == _REASONING:
            text = text.rstrip(_FRAMING)  # the newlines before `</think>`, or framing left when the reply is cut
        self._pending = "" if final else self._pending[len(text):]
        if text:
            self._at_start = False
        return text

    def _record(self, reasoning: str, content: str) -> tuple[str, str]:
        self.reasoning += reasoning
        self.content += content
        return reasoning, content


def split_reasoning(text: str, opened: bool = False) -> Split:
    """Split a whole reply at once, with exactly the streaming splitter's rules."""
    splitter = ReasoningSplitter(opened)
    splitter.feed(text)
    splitter.finish()
    return Split(splitter.reasoning, splitter.content, splitter.ended_in_reasoning)
