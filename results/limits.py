"""Lengths and kinds of text the store keeps, checked before anything reaches the database.

The same limits hold on SQLite (which would store any length) and PostgreSQL (which fails on a value
longer than its column): import rows, CLI options and campaign names are checked against these, and a
test checks them against the columns in results/models.py.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

NAME_MAX = 100  # residents.name
COMMUNITY_MAX = 100  # residents.community, escalations.community
ADDRESS_MAX = 300  # residents.address
NOTE_MAX = 2000  # residents.note (Text: the limit is ours)
TAG_MAX = 50  # one tag inside residents.tags (JSON)
TAGS_MAX = 30  # tags per resident
SOURCE_FILE_MAX = 300  # residents.source_file
CAMPAIGN_NAME_MAX = 100  # campaigns.name
REASON_MAX = 200  # do_not_call.reason (and the reason kept in the audit log)

_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


def text_problem(value: str, limit: int, *, required: bool = False) -> str | None:
    """Why `value` cannot be stored (English, for CLI options), or None."""
    if required and not value.strip():
        return "must not be empty"
    if len(value) > limit:
        return f"is {len(value)} characters long; at most {limit}"
    if _CONTROL_RE.search(value):
        return "holds a control character"
    return None


def field_problem_zh(label: str, value: str, limit: int, *, required: bool = False) -> str | None:
    """Why `value` cannot be stored, in Chinese for staff, naming the field (`label`, e.g. "原因（--reason）")."""
    if required and not value.strip():
        return f"{label}不能为空"
    if len(value) > limit:
        return f"{label}过长（{len(value)} 字，最多 {limit} 字）"
    if _CONTROL_RE.search(value):
        return f"{label}含有控制字符"
    return None


def first_problem(*checks: tuple[str, str | Sequence[str] | None, int]) -> str | None:
    """The first text that cannot be stored, as a message naming it: checks are (option or argument name,
    value or values, max length). An argument (a name without a leading --) must not be empty."""
    for label, values, limit in checks:
        items = [values] if isinstance(values, str) else list(values or [])
        for v in items:
            problem = text_problem(v, limit, required=not label.startswith("--"))
            if problem:
                shown = v if len(v) <= 40 else v[:40] + "…"
                return f"{label} {shown!r} {problem}"
    return None
