"""CSV for spreadsheets: every CSV the server writes goes through here.

A cell that begins with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is read by
spreadsheet applications as a formula (OWASP "CSV injection"): a parent who registers as
``=HYPERLINK(...)`` would put a live formula into the teacher's sheet. Such a text cell is
written with a leading ``'``, which spreadsheets show as plain text. Chinese input methods type
the full-width forms (＝ ＋ － ＠), which some spreadsheets also take as formulas: the same.
Numbers are written as they are (a negative number is not text and is no formula).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "＝", "＋", "－", "＠")


def cell(value: Any) -> Any:
    """A value as it may safely stand in a spreadsheet cell."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


class Table:
    """Rows of cells, neutralised, rendered as CSV text (``text()``)."""

    def __init__(self, header: Iterable[str]) -> None:
        self._out = io.StringIO()
        self._writer = csv.writer(self._out)
        self.row(header)

    def row(self, cells: Iterable[Any]) -> None:
        self._writer.writerow([cell(c) for c in cells])

    def text(self) -> str:
        return self._out.getvalue()
