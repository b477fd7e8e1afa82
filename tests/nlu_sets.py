"""Reading the labelled NLU sets in tests/data, and scoring the built-in NLU on them.

Two formats, both with `# category:` lines: expect<TAB>text<TAB>intent<TAB>value (nlu_labelled.tsv,
nlu_heldout.tsv) and topic<TAB>expect<TAB>text<TAB>intent<TAB>value (nlu_dev.tsv, nlu_frozen.tsv: the
question's topic is part of the context the NLU gets).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dialogs.nlu.types import Expectation, Nlu

DATA_DIR = Path(__file__).parent / "data"


@dataclass(frozen=True)
class Row:
    line: int
    category: str
    expect: str
    text: str
    intent: str
    value: str
    topic: str = ""


def load_rows(path: Path) -> list[Row]:
    """Every labelled reply of `path`, with its line number and the category it stands under."""
    rows: list[Row] = []
    category = ""
    for no, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if raw.startswith("# category:"):
            category = raw.split(":", 1)[1].strip()
            continue
        if not raw.strip() or raw.startswith("#"):
            continue
        parts = raw.split("\t")
        if len(parts) == 5:
            topic, expect, text, intent, value = parts
        elif len(parts) == 4:
            topic = ""
            expect, text, intent, value = parts
        else:
            raise ValueError(f"{path.name}:{no}: expected 4 or 5 tab-separated columns, got {len(parts)}")
        rows.append(Row(no, category, expect, text, intent, value, topic))
    return rows


def reading(nlu: Nlu, row: Row) -> tuple[str, Any]:
    """(intent, value) as `outreach nlu` prints them: a `no_match` is reported as unsure, value null."""
    res = nlu.parse(row.text, Expectation(row.expect, topic=row.topic))
    if res.intent == "no_match":
        return "unsure", None
    return res.intent, res.value


def is_correct(nlu: Nlu, row: Row) -> bool:
    """The scoring rule of the frozen set: the intent must match; the value too for affirm/deny,
    temperature (within 0.05 °C) and self_relative (the relation word as said)."""
    intent, value = reading(nlu, row)
    if intent != row.intent:
        return False
    if intent in ("affirm", "deny"):
        return value is (row.value == "true")
    if intent == "temperature":
        return isinstance(value, float) and math.isclose(value, float(row.value), abs_tol=0.05)
    if intent == "self_relative":
        return value == row.value
    if intent == "unsure":
        return value is None
    return True


def score(nlu: Nlu, rows: list[Row]) -> dict[str, Any]:
    """Accuracy per category and per expectation, and the misses (line, text, got, want)."""
    per: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    by_expect: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    misses: list[str] = []
    for r in rows:
        ok = is_correct(nlu, r)
        for table, key in ((per, r.category), (by_expect, r.expect)):
            table[key][0] += ok
            table[key][1] += 1
        if not ok:
            misses.append(f"line {r.line} [{r.category}] {r.topic or '-'} {r.text!r}: want {r.intent} {r.value}, "
                          f"got {reading(nlu, r)}")
    return {
        "categories": {c: {"right": a, "rows": n, "accuracy": round(a / n, 3)} for c, (a, n) in per.items()},
        "expect": {e: {"right": a, "rows": n, "accuracy": round(a / n, 3)} for e, (a, n) in by_expect.items()},
        "misses": misses,
    }
