"""Lengths and kinds of text the store keeps, checked before anything reaches the database.

The same limits hold on SQLite (which would store any length) and PostgreSQL (which fails on a value
longer than its column): import rows, CLI options and campaign names are checked against these, and a
test checks them against the columns in results/models.py.
"""

from __future__ import annotations

import re

NAME_MAX = 100  # residents.name
COMMUNITY_MAX = 100  # residents.community, escalations.community
ADDRESS_MAX = 300  # residents.address
NOTE_MAX = 2000  # residents.note (Text: the limit is ours)
TAG_MAX = 50  # one tag inside residents.tags (JSON)
TAGS_MAX = 30  # tags per resident
SOURCE_FILE_MAX = 300  # residents.source_file
CAMPAIGN_NAME_MAX = 100  # campaigns.name

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
