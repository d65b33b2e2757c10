"""Markdown from the model or a user, made safe to show to every viewer of a conversation.

A reply or a question is untrusted: an image in it (`![x](http://host/?q=...)`) would make each
viewer's browser fetch that URL, the usual way to leak a conversation through a crafted answer.
Streamlit already drops raw HTML and never runs scripts; what this module adds:

- `safe_markdown(text)`: the same Markdown with every image turned into a link to it (the `!` is
  escaped) and every link whose target is not http(s)/mailto (`data:`, `javascript:`, ...) turned into
  plain text (that part alone: `safe_links`). Code blocks and code spans are left exactly as they
  are. Where the positions are found with markdown-it-py (CommonMark, the dialect Streamlit's
  renderer follows), not with regexes.
- `plain_text(text)`: any text shown where Streamlit would read Markdown (titles, button labels), with
  every Markdown character escaped, so a title is shown as typed and never loads anything. GFM's bare
  links (`http://…`, `www.…`, `a@b.c`) are found in the text after escapes are undone, so escaping
  cannot stop them: an invisible WORD JOINER (U+2060) breaks each one instead.
- `write_stream(stream)`: `st.write_stream` for text deltas, with the text made safe as it grows.

`safe_markdown` first puts a message's LaTeX in the delimiters Streamlit renders (`\\(x\\)` becomes
`$x$`, a stray `$` is escaped: ui.markdown_math), also while it streams; the safety rules then apply
to that text. `safe_links` does not: text already escaped by plain_text (`\\[x\\]`) stays as it is.

It deliberately does not change how valid text looks: bold, lists, tables, code and LaTeX stay.
"""

from __future__ import annotations

import re
import string
import time
from collections.abc import Iterable

import streamlit as st
from markdown_it import MarkdownIt

from ui.markdown_math import math_for_streamlit

SAFE_SCHEMES = ("http:", "https:", "mailto:")
SANITIZE_SHARE = 0.2  # while streaming, at most this share of the time goes to making the text safe
MAX_PASSES = 8  # an escaped image becomes a link, which may need escaping in turn: a few passes
_MARKDOWN_PUNCTUATION = set(string.punctuation)
WORD_JOINER = "\u2060"
_BARE_LINK = re.compile(r"(?i)(https?|ftp|www)(?=[:.])|(?=@)")  # where a GFM autolink literal would start


def plain_text(text: str) -> str:
    """`text` escaped so that Markdown shows it literally (every ASCII punctuation escaped, one line)."""
    text = _BARE_LINK.sub(lambda m: (m.group(1) or "") + WORD_JOINER, " ".join(text.split()))
    return "".join(f"\\{char}" if char in _MARKDOWN_PUNCTUATION else char for char in text)


def safe_markdown(text: str) -> str:
    """A message as st.markdown should get it: its LaTeX in the delimiters Streamlit renders
    (ui.markdown_math), then `safe_links`; the rest unchanged."""
    return safe_links(math_for_streamlit(text))


def safe_links(text: str) -> str:
    """`text` with images shown as links and links to unsafe schemes shown as text; the rest unchanged.
    Text this leaves unchanged loads and runs nothing (the check tests make on what a page shows)."""
    if "[" not in text and "<" not in text:  # no image, link or autolink possible: the streaming fast path
        return text
    for _ in range(MAX_PASSES):
        escapes = _unsafe_positions(text)
        if not escapes:
            return text
        if None in escapes:  # a position markdown-it could not map back: show the text as it is typed
            return plain_text_block(text)
        for offset in sorted((offset for offset in escapes if offset is not None), reverse=True):
            text = text[:offset] + "\\" + text[offset:]
    return plain_text_block(text)


def plain_text_block(text: str) -> str:
    """Like plain_text, but keeping the line breaks."""
    return "  \n".join(plain_text(line) for line in text.splitlines())


def write_stream(stream: Iterable[str]) -> str:
    """Draw text deltas as they come, made safe each time (an image half-streamed never loads); return the text.

    Parsing a long reply takes milliseconds, so a redraw waits until SANITIZE_SHARE of the time since
    the last one would have been spent on it: short replies redraw on every delta, long ones less often.
    """
    placeholder = st.empty()
    text, shown, last_draw, cost = "", "", 0.0, 0.0
    for delta in stream:
        text += delta
        if time.monotonic() - last_draw >= cost / SANITIZE_SHARE:
            started = time.monotonic()
            placeholder.markdown(safe_markdown(text) or " ")
            shown, last_draw = text, time.monotonic()
            cost = last_draw - started
    if shown != text:  # the last deltas came while a redraw waited
        placeholder.markdown(safe_markdown(text) or " ")
    return text


# --- where the unsafe constructs are ---------------------------------------------------------------

def _parser() -> MarkdownIt:
    """A CommonMark parser (plus GFM tables and strikethrough) that records where images and links start.

    Each record, in the parse's env["found"], is (inline source, offset in it, what to escape there):
    "!" for an image, "[" for a link and "<" for an autolink with an unsafe target. Built once; a
    parse keeps its state in its own objects, so sessions' threads can share it.
    """
    md = MarkdownIt("commonmark").enable(["table", "strikethrough"])
    # See every link the browser's renderer would see (the parser refuses javascript: links by default).
    md.validateLink = lambda url: True  # type: ignore[method-assign]

    def recording(name: str, rule):
        def wrapped(state, silent: bool) -> bool:
            start, first_token = state.pos, len(state.tokens)
            matched = rule(state, silent)
            # The rule's own token: pending text may be flushed before it.
            token = next((t for t in state.tokens[first_token:] if t.type in ("image", "link_open")), None)
            if matched and not silent and token is not None:
                target = token.attrGet("src") if name == "image" else token.attrGet("href")
                if name == "image":
                    state.env["found"].append((state.src, start, "!"))
                elif not _is_safe_target(str(target or "")):
                    state.env["found"].append((state.src, start, "[" if name == "link" else "<"))
            return matched
        return wrapped

    for name in ("image", "link", "autolink"):
        rule = next(r.fn for r in md.inline.ruler.__rules__ if r.name == name)
        md.inline.ruler.at(name, recording(name, rule))
    return md


_PARSER = _parser()


def _is_safe_target(url: str) -> bool:
    url = "".join(url.split()).lower()
    scheme, colon, _ = url.partition(":")
    if not colon or "/" in scheme or "?" in scheme or "#" in scheme:
        return True  # relative: stays on this app's origin
    return url.startswith(SAFE_SCHEMES)


def _unsafe_positions(text: str) -> list[int | None]:
    """Offsets in `text` where a backslash neutralises an image or an unsafe link (None: not found)."""
    found: list[tuple[str, int, str]] = []
    tokens = _PARSER.parse(text, {"found": found})
    if not found:
        return []
    lines = text.split("\n")
    line_starts = [0]
    for line in lines:
        line_starts.append(line_starts[-1] + len(line) + 1)
    positions: list[int | None] = []
    for token in tokens:
        if token.type != "inline" or token.map is None:
            continue
        mine = [(offset, char) for source, offset, char in found if source is token.content]
        for offset, char in mine:
            positions.append(_source_offset(token, offset, char, lines, line_starts))
    return positions if positions else [None]  # found something we could not place: be safe


def _source_offset(token, offset: int, char: str, lines: list[str], line_starts: list[int]) -> int | None:
    """Map an offset in an inline token's content back to the document (its lines are suffixes or
    substrings of the source lines, after list markers, quote markers and indentation)."""
    content_lines = token.content.split("\n")
    line_index = token.content.count("\n", 0, offset)
    column = offset - (token.content.rfind("\n", 0, offset) + 1)
    source_line = token.map[0] + line_index
    if source_line >= len(lines):
        return None
    source = lines[source_line]
    content_line = content_lines[line_index]
    base = source.rfind(content_line) if source.rstrip().endswith(content_line) else source.find(content_line)
    if base < 0 or source[base + column: base + column + 1] != char:
        return None
    return line_starts[source_line] + base + column
