"""The built-in NLU, reading replies in the context of the question, on the development set it was tuned
on (tests/data/nlu_dev.tsv) and on the frozen test set written before the change by an engineer who never
saw the NLU code (tests/data/nlu_frozen.tsv, never tuned on nor edited; see docs/nlu.md).

Scoring is the frozen set's own rule (tests/nlu_sets.is_correct). `bench/nlu_bench.py` prints the same
figures per category as JSON.
"""

from __future__ import annotations

import pytest

from dialogs.nlu import BuiltinNlu
from dialogs.nlu.types import NOT_ANSWER_INTENTS, TEMPERATURE_INTENTS, TOPICS, YES_NO_INTENTS
from tests.nlu_sets import DATA_DIR, load_rows, score

NLU = BuiltinNlu()
FROZEN = load_rows(DATA_DIR / "nlu_frozen.tsv")
DEV = load_rows(DATA_DIR / "nlu_dev.tsv")
# Minimums that hold after issue 14 (measured: every frozen category 100 %).
OVERALL_MIN = {"yes_no": 0.98, "temperature": 0.98}
CATEGORY_MIN = 0.95


@pytest.mark.parametrize("rows", [FROZEN, DEV], ids=["frozen", "dev"])
def test_sets_are_well_formed(rows: list) -> None:
    assert rows
    for r in rows:
        assert r.category, f"line {r.line}: no '# category:' above it"
        assert r.topic in TOPICS, f"line {r.line}: topic {r.topic!r}"
        allowed = YES_NO_INTENTS if r.expect == "yes_no" else TEMPERATURE_INTENTS
        assert r.intent in allowed, f"line {r.line}: {r.intent!r} not allowed for {r.expect}"


def test_dev_set_has_many_variants_per_not_an_answer_kind() -> None:
    for intent in NOT_ANSWER_INTENTS:
        assert sum(r.intent == intent for r in DEV) >= 10, intent
    topics = {r.topic for r in DEV}
    assert {"identity", "symptoms", "temperature", "travel", "contact", "second_test"} <= topics


@pytest.mark.parametrize("rows", [FROZEN, DEV], ids=["frozen", "dev"])
def test_accuracy_per_category(rows: list) -> None:
    result = score(NLU, rows)
    report = "\n".join(f"{c:28s} {v['right']}/{v['rows']}" for c, v in sorted(result["categories"].items()))
    print("\n" + report)
    misses = "\n".join(result["misses"])
    for expect, minimum in OVERALL_MIN.items():
        assert result["expect"][expect]["accuracy"] >= minimum, f"{expect}\n{misses}"
    low = {c: v["accuracy"] for c, v in result["categories"].items() if v["accuracy"] < CATEGORY_MIN}
    assert low == {}, misses
