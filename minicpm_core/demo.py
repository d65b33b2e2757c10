"""What the shipped demo model is asked: demo-only, never used for a real model.

The demo is a tiny model trained on a few questions (`demo_data/qa.jsonl`) and nothing else, and on
anything else it would write noise. So before a demo prompt is built, `route()`:
- keeps only the newest user message (the demo was trained on single questions, not conversations);
- matches it to the question the demo knows, ignoring case, spaces and end punctuation ("Hello!" is
  "hello");
- and asks any other question as the demo's own "What do you know?" in the question's language (the
  qa.jsonl rows marked `"fallback"`), whose trained answer says it is a tiny demo and lists what it knows.

The routed question then goes through the real path: the chat template, the tokenizer and `generate`.
A demo whose qa.jsonl marks no fallback (the MiniCPM5 demo) is asked as it is.
"""

from __future__ import annotations

import functools
import json
import re

from . import paths

_CHINESE = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_IGNORED = re.compile(r"[\s?？!！.。,，~]+")


def question_language(text: str) -> str:
    """"zh" for a question with a Chinese character in it, else "en": the language of the demo's reply."""
    return "zh" if _CHINESE.search(text) else "en"


@functools.cache
def _known(family: str) -> tuple[dict[str, str], dict[str, str]]:
    """(normalized question -> the question as trained, language -> fallback question) of a family's demo."""
    rows = [json.loads(line) for line in paths.demo_questions_file(family).read_text(encoding="utf-8").splitlines()
            if line.strip()]
    return ({_normal(row["q"]): row["q"] for row in rows},
            {row["fallback"]: row["q"] for row in rows if "fallback" in row})


def _normal(question: str) -> str:
    return _IGNORED.sub("", question.lower())


def route(messages: list[dict], family: str) -> list[dict]:
    """The messages the demo of `family` is asked for `messages` (see the module docstring)."""
    if family not in paths.DEMO_DIRS:
        return messages
    known, fallbacks = _known(family)
    if not fallbacks or not messages or messages[-1].get("role") != "user":
        return messages
    question = messages[-1].get("content")
    if not isinstance(question, str):
        return messages  # not text: the prompt builder refuses it with its own message
    asked = known.get(_normal(question)) or fallbacks[question_language(question)]
    return [{"role": "user", "content": asked}]
