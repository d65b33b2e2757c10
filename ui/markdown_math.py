"""LaTeX in a reply, written the way Streamlit's Markdown renders it with KaTeX.

MiniCPM writes math as `$…$`, `$$…$$`, `\\(…\\)` or `\\[…\\]`. Streamlit's Markdown (remark-math) knows
only the dollar forms, so `math_for_streamlit(text)`:

- turns `\\(x\\)` into `$x$`, and `\\[x\\]` into `$$x$$`; either display form, standing alone on its
  lines, becomes a `$$` block with the delimiters on lines of their own (Streamlit draws a one-line
  `$$x$$` inline, not as display math);
- escapes every `$` that does not open or close math by Pandoc's rule (an opening `$` is followed by
  a non-space, a closing one follows a non-space and is not followed by a digit), so "$5 and $10"
  stays text (Streamlit 1.65 would eat both dollars);
- escapes a `$$` with no closing `$$`, and leaves an unclosed `\\(` or `\\[` as it is: a formula
  half-streamed shows as typed until its end arrives, and never swallows the text after it;
- never touches code blocks, code spans or escaped characters (`\\$` stays a dollar). Math never
  spans a code span: the backtick wins, as in the CommonMark parser that ui.markdown_safe checks
  links with, so both read the same code spans.

It deliberately does not check the formulas: KaTeX shows a bad one in red. Streamlit's KaTeX runs
untrusted (`\\href`, `\\url` and `\\includegraphics` are drawn as plain text), which
tests/test_browser_search.py checks in the browser.
"""

from __future__ import annotations

import re

from markdown_it import MarkdownIt

_BLOCKS = MarkdownIt("commonmark")  # only its block rules matter here: where the code blocks are
_BACKTICKS = re.compile(r"`+")


def math_for_streamlit(text: str) -> str:
    """`text` with LaTeX in Streamlit's delimiters and stray dollars escaped; code unchanged."""
    if "$" not in text and "\\(" not in text and "\\[" not in text:
        return text  # the common case, and the streaming fast path
    out, last = [], 0
    for start, end in _code_ranges(text):
        out.append(_convert(text, last, start))
        out.append(text[start:end])
        last = end
    out.append(_convert(text, last, len(text)))
    return "".join(out)


def _code_ranges(text: str) -> list[tuple[int, int]]:
    """(start, end) offsets of code blocks (fenced or indented, as markdown-it finds them) and code
    spans (a run of backticks up to the next run of the same length), in order."""
    line_starts = [0]
    for line in text.split("\n"):
        line_starts.append(line_starts[-1] + len(line) + 1)
    blocks = [(line_starts[t.map[0]], min(len(text), line_starts[t.map[1]]))
              for t in _BLOCKS.parse(text) if t.type in ("fence", "code_block") and t.map]
    ranges: list[tuple[int, int]] = []
    last = 0
    for block_start, block_end in [*blocks, (len(text), len(text))]:
        ranges.extend(_code_spans(text, last, block_start))
        ranges.append((block_start, block_end))
        last = block_end
    return [r for r in ranges if r[0] < r[1]]


def _code_spans(text: str, start: int, end: int) -> list[tuple[int, int]]:
    spans = []
    pos = start
    while (opening := _BACKTICKS.search(text, pos, end)) is not None:
        if _escaped(text, opening.start()):  # \` is a literal backtick; the rest of its run may open
            pos = opening.start() + 1
            continue
        closing = _BACKTICKS.search(text, opening.end(), end)
        while closing is not None and len(closing.group()) != len(opening.group()):
            closing = _BACKTICKS.search(text, closing.end(), end)
        if closing is None:  # no closer: the backticks are text
            pos = opening.end()
            continue
        spans.append((opening.start(), closing.end()))
        pos = closing.end()
    return spans


def _escaped(text: str, index: int) -> bool:
    """True if text[index] is escaped by an odd run of backslashes before it."""
    count = 0
    while index - count - 1 >= 0 and text[index - count - 1] == "\\":
        count += 1
    return count % 2 == 1


def _convert(text: str, start: int, end: int) -> str:
    """The math of text[start:end] (which holds no code) in Streamlit's delimiters."""
    out = []
    i = start
    while i < end:
        char = text[i]
        if char == "\\" and i + 1 < end:
            pair = text[i:i + 2]
            closer = {"\\(": "\\)", "\\[": "\\]"}.get(pair)
            close = text.find(closer, i + 2, end) if closer else -1
            body = text[i + 2:close] if close >= 0 else ""
            if close >= 0 and body.strip() and "$" not in body and "\n\n" not in body:
                out.append(f"${body.strip()}$" if pair == "\\(" else _display(text, i, close + 2, body))
                i = close + 2
            else:
                out.append(pair)  # an escaped character (\$ included), or a formula not yet closed
                i += 2
        elif text.startswith("$$", i):
            close = text.find("$$", i + 2, end)
            if close >= 0 and text[i + 2:close].strip() and "\n\n" not in text[i:close]:
                out.append(_display(text, i, close + 2, text[i + 2:close]))
                i = close + 2
            else:  # half-written display math: shown as typed until its closing $$ arrives
                out.append("\\$\\$")
                i += 2
        elif char == "$":
            inline_close = _inline_close(text, i, end)
            if inline_close is None:
                out.append("\\$")  # currency, or a formula not yet closed
                i += 1
            else:
                out.append(text[i:inline_close + 1])
                i = inline_close + 1
        else:
            out.append(char)
            i += 1
    return "".join(out)


def _inline_close(text: str, opening: int, end: int) -> int | None:
    """Where the `$` at `opening` closes by Pandoc's rule (the next unescaped `$`), or None."""
    if opening + 1 >= end or text[opening + 1].isspace() or text[opening + 1] == "$":
        return None
    close = opening + 1
    while (close := text.find("$", close, end)) >= 0 and _escaped(text, close):
        close += 1
    if close < 0 or text[close - 1].isspace() or text[close + 1:close + 2].isdigit():
        return None
    if "\n\n" in text[opening:close]:
        return None
    return close


def _display(text: str, start: int, end: int, body: str) -> str:
    """`\\[body\\]` or `$$body$$` (text[start:end]) as a `$$` block on lines of its own when it stands
    alone on its lines (keeping their indentation, e.g. in a list item): Streamlit draws a one-line
    `$$x$$` inline. Else as inline `$$body$$`."""
    line_start = text.rfind("\n", 0, start) + 1
    line_end = text.find("\n", end)
    indent = text[line_start:start]
    after = text[end:line_end if line_end >= 0 else len(text)]
    if indent.strip() or after.strip():
        return "$$" + " ".join(body.split()) + "$$"
    lines = [line.strip() for line in body.strip().split("\n")]
    return "$$\n" + "".join(f"{indent}{line}\n" for line in lines) + f"{indent}$$"
