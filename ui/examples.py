"""What an empty chat offers: one line on what to do and example questions to click.

The demo models know only their training questions (demo_data/*/qa.jsonl), so a demo gets those; a
real model gets the examples of ui.i18n. A clicked example is asked on the run its click starts,
exactly once (`take_chosen_example`).
"""

from __future__ import annotations

import json

import streamlit as st

from minicpm_core import paths
from ui.i18n import current_language, t

# The default demo's questions: these show streaming, code, LaTeX and lists.
DEMO_EXAMPLES = {
    "en": ("Tell me a story.", "Write a Python function that adds two numbers.",
           "What is the Pythagorean theorem?", "What is the capital of France?"),
    "zh": ("讲一个故事", "用 Python 打印你好", "前 n 个正整数的和是多少？", "列出三种水果"),
}
EXAMPLES_KEY = "examples"  # the container of the example buttons
CHOSEN_EXAMPLE = "_chosen_example"  # the clicked example, asked on this run
EXAMPLES_SHOWN = 4


def example_questions(demo: bool, demo_family: str | None = None) -> list[str]:
    if demo and demo_family not in (None, paths.DEFAULT_DEMO_FAMILY):
        return demo_questions(demo_family, current_language())
    if demo:
        return list(DEMO_EXAMPLES[current_language()])
    return [t(f"example_{i}") for i in range(1, EXAMPLES_SHOWN + 1)]


def demo_questions(family: str, language: str) -> list[str]:
    """The questions `family`'s demo was trained on (its qa.jsonl), those in `language` first."""
    lines = paths.demo_questions_file(family).read_text(encoding="utf-8").splitlines()
    questions = [json.loads(line)["q"] for line in lines if line.strip()]
    chinese = [q for q in questions if any("\u4e00" <= ch <= "\u9fff" for ch in q)]
    mine = chinese if language == "zh" else [q for q in questions if q not in chinese]
    return (mine + [q for q in questions if q not in mine])[:EXAMPLES_SHOWN]


def welcome(demo: bool, demo_family: str | None = None) -> None:
    """What an empty chat shows: one line on what to do, and example questions to click.

    Buttons, not st.pills: a click is an event, and a button's click reaches the server once. A pills
    selection is a value the browser keeps and sends again with every later interaction until a
    redrawn pills widget clears it; the run that asks the example also removes the welcome, so the
    clearing never reached the browser, and Stop during the reply chose (and asked) it again.
    """
    st.markdown(t("chat_welcome"))
    st.caption(t("examples"))
    with st.container(horizontal=True, key=EXAMPLES_KEY):
        for i, question in enumerate(example_questions(demo, demo_family)):
            st.button(question, key=f"example_{i}", on_click=_choose_example, args=(question,))


def _choose_example(question: str) -> None:
    st.session_state[CHOSEN_EXAMPLE] = question


def take_chosen_example() -> str | None:
    """The example clicked for this run, once: the next run (e.g. Stop's) finds nothing."""
    return st.session_state.pop(CHOSEN_EXAMPLE, None)
