"""Reading the labelled NLU sets in tests/data (expect<TAB>text<TAB>intent<TAB>value, `# category:` lines)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DATA_DIR = Path(__file__).parent / "data"


@dataclass(frozen=True)
class Row:
    line: int
    category: str
    expect: str
    text: str
    intent: str
    value: str


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
        if len(parts) != 4:
            raise ValueError(f"{path.name}:{no}: expected 4 tab-separated columns, got {len(parts)}")
        expect, text, intent, value = parts
        rows.append(Row(no, category, expect, text, intent, value))
    return rows
