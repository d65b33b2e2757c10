"""The README's table of supported models says what the family objects say.

The families (minicpm_core/families) are the one definition; this keeps the table a true copy:
every known model is a row, with its family's context and thinking, and no row names a model the
families do not know."""

from __future__ import annotations

import re
from pathlib import Path

from minicpm_core.families import FAMILIES

README = Path(__file__).resolve().parents[1] / "README.md"
ROW = re.compile(r"^\| `(?P<id>[^`]+)`[^|]*\| (?P<size>[^|]+) \| (?P<context>[\d,]+) \| (?P<thinking>yes|no) \|", re.M)


def table_rows() -> dict[str, dict[str, str]]:
    section = README.read_text(encoding="utf-8").split("### Supported models", 1)[1].split("\n#", 1)[0]
    return {m["id"]: m.groupdict() for m in ROW.finditer(section)}


def test_every_known_model_is_a_row_with_its_familys_context_and_thinking():
    rows = table_rows()
    for family in FAMILIES:
        for model in family.known_models:
            row = rows.get(model.id)
            assert row is not None, f"README's supported-models table lacks {model.id}"
            assert int(row["context"].replace(",", "")) == family.context_length, model.id
            assert row["thinking"] == ("yes" if family.thinking else "no"), model.id
            assert f"{model.size_gb:.1f}" in row["size"].replace("≈", ""), (model.id, row["size"])


def test_the_table_names_no_model_the_families_do_not_know():
    known = {model.id for family in FAMILIES for model in family.known_models}
    assert set(table_rows()) - known == set()


def test_the_check_can_fail():
    assert ROW.search("| `OpenBMB/X` | 1.0 GB | 2,048 | no |")["context"] == "2,048"
    assert table_rows(), "the table was not found: the check would pass vacuously"
