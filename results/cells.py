"""Cells of the CSV files the tool writes (exports and rejects files): never a live spreadsheet formula."""

from __future__ import annotations

import re

#: What a spreadsheet may run as a formula when a CSV cell starts with it (OWASP "CSV injection").
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


_SIGNED_NUMBER_RE = re.compile(r"[+-]?\d+(?:\.\d+)?")


def formula_safe(value: object) -> object:
    """A CSV cell that a spreadsheet cannot run: text starting with =, +, -, @, tab or CR gets a leading
    apostrophe (OWASP's recommendation), so `=HYPERLINK(...)` in a name stays text. A plain signed number
    (`-5`, an unmasked E.164 phone `+8613800138000`) holds no formula and stays as it is; other values too."""
    if isinstance(value, str) and value.startswith(FORMULA_START) and not _SIGNED_NUMBER_RE.fullmatch(value):
        return "'" + value
    return value
