"""Cells of the CSV files the tool writes (exports and rejects files): never a live spreadsheet formula."""

from __future__ import annotations

#: What a spreadsheet may run as a formula when a CSV cell starts with it (OWASP "CSV injection").
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def formula_safe(value: object) -> object:
    """A CSV cell that a spreadsheet cannot run: text starting with =, +, -, @, tab or CR gets a leading
    apostrophe (OWASP's recommendation), so `=HYPERLINK(...)` in a name stays text. Other values unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value
