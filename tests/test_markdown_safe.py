"""ui/markdown_safe.py: images become links, unsafe links become text, everything else is untouched."""

from __future__ import annotations

import pytest
from markdown_it import MarkdownIt

from ui.markdown_safe import WORD_JOINER, plain_text, safe_markdown


def rendered(text: str) -> str:
    """HTML as a CommonMark renderer that lets every link through (like the browser's) would draw it."""
    md = MarkdownIt("commonmark").enable(["table", "strikethrough"])
    md.validateLink = lambda url: True
    return md.render(text)


UNSAFE = {
    "image": "see ![x](http://host/a.png?q=secret)",
    "image with title": "![x](http://host/a.png 'hi')",
    "image in a link": "[![x](http://host/a.png)](https://example.org)",
    "reference image": "![x][r]\n\n[r]: http://host/a.png",
    "shortcut image": "![r]\n\n[r]: http://host/a.png",
    "image in a quote in a list": "- item\n  > ![x](http://host/a.png)",
    "image in a table": "| a |\n|---|\n| ![x](http://host/a.png) |",
    "image in a heading": "## ![x](http://host/a.png)",
    "two images on a line": "![a](http://host/1) and ![b](http://host/2)",
    "javascript link": "[x](javascript:alert(1))",
    "javascript link, mixed case and spaces": "[x]( JaVaScRiPt:alert(1) )",
    "data link": "[x](data:text/html,<b>hi</b>)",
    "data autolink": "<data:text/html,hi>",
    "reference to data": "[x][r]\n\n[r]: data:text/html,hi",
    "vbscript link": "[x](vbscript:msgbox)",
    # LaTeX (ui/markdown_math runs first): links and images around and inside formulas
    "link inside inline math": "$[x](javascript:alert(1))$",
    "image inside \\( \\)": "\\(![x](http://host/a.png)\\)",
    "image inside \\[ \\]": "\\[\n![x](http://host/a.png)\n\\]",
    "link after a dollar and a code span": "$`$ [x](javascript:alert(1)) `",
    "link between currency dollars": "$5 [x](javascript:alert(1)) $10",
    "image in display math": "$$\n![x](http://host/a.png)\n$$",
}


@pytest.mark.parametrize("text", UNSAFE.values(), ids=UNSAFE.keys())
def test_no_image_and_no_unsafe_link_survives(text):
    html = rendered(safe_markdown(text))
    assert "<img" not in html
    assert 'href="javascript:' not in html.lower() and 'href="data:' not in html and "vbscript:" not in html.split(
        "<a")[-1].split(">")[0]


def test_katex_link_commands_are_left_to_streamlits_untrusted_katex():
    # \\href and \\url are KaTeX commands, not Markdown: Streamlit's KaTeX runs untrusted and draws
    # them as text (tests/test_browser_search.py checks that no javascript: link appears).
    text = "$\\href{javascript:alert(1)}{x}$ \\(\\url{javascript:alert(2)}\\)"
    assert safe_markdown(text) == "$\\href{javascript:alert(1)}{x}$ $\\url{javascript:alert(2)}$"


def test_an_image_becomes_a_link_to_it():
    assert safe_markdown("see ![x](http://host/a.png)") == "see \\![x](http://host/a.png)"
    assert '<a href="http://host/a.png">x</a>' in rendered(safe_markdown("see ![x](http://host/a.png)"))


@pytest.mark.parametrize("text", [
    "```md\n![x](http://host/a.png)\n```",
    "    ![x](http://host/a.png)",
    "JS: `if (![1].includes(x)) {}`",
    "**bold**, [a link](https://example.org), [relative](/c?x=1), [mail](mailto:a@b.c)\n\n- list\n\n$x^2$",
    "| a | b |\n|---|---|\n| 1 | 2 |",
    "plain text without brackets",
])
def test_code_and_safe_markdown_are_left_exactly_as_they_are(text):
    assert safe_markdown(text) == text


def test_plain_text_shows_markdown_literally_on_one_line():
    title = "**a** ![x](http://h/i.png)\n<b>:red[x]</b> $x$"
    html = rendered(plain_text(title))
    assert "<img" not in html and "<strong>" not in html and "<a" not in html
    assert html.replace(WORD_JOINER, "") == "<p>**a** ![x](http://h/i.png) &lt;b&gt;:red[x]&lt;/b&gt; $x$</p>\n"


def test_plain_text_breaks_every_bare_link_gfm_would_make():
    for text in ("http://h/x", "HTTPS://h", "www.h.org", "me@h.io", "ftp://h"):
        shown = plain_text(text)
        assert WORD_JOINER in shown and shown.replace(WORD_JOINER, "").replace("\\", "") == text
