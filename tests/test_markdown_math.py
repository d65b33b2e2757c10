"""ui/markdown_math.py: LaTeX in the delimiters Streamlit renders; code, escapes and currency untouched."""

from __future__ import annotations

import pytest

from ui.markdown_math import math_for_streamlit


@pytest.mark.parametrize("text, expected", [
    ("\\(x^2\\)", "$x^2$"),
    ("Euler: \\( e^{i\\pi} + 1 = 0 \\) done", "Euler: $e^{i\\pi} + 1 = 0$ done"),
    ("so \\[a+b\\] holds", "so $$a+b$$ holds"),
    ("before\n\\[\n\\int_0^1 x\\,dx\n\\]\nafter", "before\n$$\n\\int_0^1 x\\,dx\n$$\nafter"),
    ("\\[ x = 1 \\]", "$$\nx = 1\n$$"),
    ("1. item\n   \\[\n   x=1\n   \\]\n2. next", "1. item\n   $$\n   x=1\n   $$\n2. next"),
])
def test_parentheses_and_brackets_become_dollars(text, expected):
    assert math_for_streamlit(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("In a right triangle:\n\n$$a^2 + b^2 = c^2$$", "In a right triangle:\n\n$$\na^2 + b^2 = c^2\n$$"),
    ("- item\n  $$x = 1$$  \n- next", "- item\n  $$\n  x = 1\n  $$  \n- next"),
    ("so $$x = 1$$ holds", "so $$x = 1$$ holds"),
])
def test_display_dollars_alone_on_their_line_become_a_block(text, expected):
    assert math_for_streamlit(text) == expected


@pytest.mark.parametrize("text", [
    "$x^2$ and $$\\sum_i i$$",
    "$$\n\\frac{a}{b}\n$$",
    "pay \\$5 now",  # an escaped dollar
    "`\\(x\\)` and `$y$`",
    "```latex\n\\[ x \\]\n$y$\n$$\n```",
    "    \\(indented code\\)",
    "``code with ` and \\(x\\)``",
    "\\\\(not math)",  # an escaped backslash, then a parenthesis
    "plain text, no math at all",
])
def test_math_code_and_escapes_are_left_as_they_are(text):
    assert math_for_streamlit(text) == text


@pytest.mark.parametrize("text, expected", [
    ("It costs $5 and $10 today", "It costs \\$5 and \\$10 today"),
    ("$5", "\\$5"),
    ("between $ 3 and $ 4", "between \\$ 3 and \\$ 4"),
    ("from $20 to $x$", "from \\$20 to $x$"),
    ("$x$5", "\\$x\\$5"),  # a closing $ is not followed by a digit
])
def test_dollars_that_are_not_math_are_escaped(text, expected):
    assert math_for_streamlit(text) == expected


@pytest.mark.parametrize("partial, expected", [
    ("The area is $\\pi r", "The area is \\$\\pi r"),
    ("The area is $$\n\\pi r", "The area is \\$\\$\n\\pi r"),
    ("The area is \\(\\pi r", "The area is \\(\\pi r"),
    ("The area is \\[\n\\pi r", "The area is \\[\n\\pi r"),
    ("The area is \\(", "The area is \\("),
    ("The area is $", "The area is \\$"),
    ("The area is \\", "The area is \\"),
])
def test_a_half_streamed_formula_is_shown_as_typed_and_never_swallows_the_rest(partial, expected):
    assert math_for_streamlit(partial) == expected


def test_every_prefix_of_a_streamed_reply_converts_without_error():
    reply = ("Solve \\(x^2 = 4\\): \\[x = \\pm 2\\]\n\nCost: $5. `code $x$`\n\n```\n$$\n```\n$$\ny\n$$ and $z$")
    for end in range(len(reply) + 1):
        assert isinstance(math_for_streamlit(reply[:end]), str)
    assert math_for_streamlit(reply) == ("Solve $x^2 = 4$: $$x = \\pm 2$$\n\nCost: \\$5. `code $x$`\n\n```\n$$\n```\n"
                                         "$$y$$ and $z$")


def test_math_never_spans_a_code_span():
    # The backtick wins, as in markdown-it: a $ before a code span does not pair with one inside it.
    assert math_for_streamlit("$a `b$ c` d") == "\\$a `b$ c` d"
