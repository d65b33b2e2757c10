"""Texts that Streamlit draws inside its own widgets, in the user's language.

Streamlit has no setting for the language of its widgets: the file uploader's "Upload" button and its
"5MB per file • JSON" line are English, whatever the label says. There is no parameter to change them,
so for a language other than English this hides those texts with CSS and shows ours in their place
(a CSS `content`, which screen readers read too). Only what a widget shows changes; the widgets work
as before. The CSS names the uploader by its key and by the data-testids Streamlit's own tests use.
"""

from __future__ import annotations

import math

import streamlit as st

from minicpm_core.store import MAX_IMPORT_BYTES
from ui.i18n import current_language, t

IMPORT_UPLOADER_KEY = "import_file"  # ui/sidebar.py's conversation import
_DROPZONE = f".st-key-{IMPORT_UPLOADER_KEY} [data-testid=stFileUploaderDropzone]"


def _css_text(text: str) -> str:
    """`text` as a CSS string (our own strings: no markup in them)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def uploader_css() -> str:
    """The CSS that shows the import uploader's button and limit in the current language."""
    limit = t("uploader_limit", mb=math.ceil(MAX_IMPORT_BYTES / 2**20))
    return (
        f"{_DROPZONE} button [data-testid=stMarkdownContainer] p {{display: none}}\n"
        f"{_DROPZONE} button [data-testid=stMarkdownContainer]::after {{content: {_css_text(t('uploader_button'))}}}\n"
        f"{_DROPZONE} [data-testid=stFileUploaderDropzoneInstructions] span {{display: none}}\n"
        f"{_DROPZONE} [data-testid=stFileUploaderDropzoneInstructions] > div::after "
        f"{{content: {_css_text(limit)}; font-size: 0.875rem; opacity: 0.6}}\n"
    )


def localize_widgets() -> None:
    """Replace Streamlit's own English in widgets where the interface is not English (once per run)."""
    if current_language() == "en":
        return
    st.html(f"<style>\n{uploader_css()}</style>")
