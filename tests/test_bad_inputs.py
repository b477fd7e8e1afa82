"""The bad-input corpus (tests/bad_inputs/): every case on a fresh copy of the seeded store, through the real
CLI, the real web app (HTTP requests) or the real media server and AMI client (network frames). Each must end
with its exit code or HTTP status and a message naming the place, without a traceback, without an unmasked
phone or ID number in any output or log, and (unless it is accepted as designed) with the store unchanged and
every other call unaffected. `python -m tests.bad_inputs.measure --verbose [KIND]` prints every verdict."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.bad_inputs.cases import all_cases
from tests.bad_inputs.harness import one_line, run_case
from tests.bad_inputs.seed import build_seed

CASES = all_cases()


def test_the_corpus_has_at_least_150_cases() -> None:
    assert len(CASES) >= 150
    assert len({c.id for c in CASES}) == len(CASES)


def test_the_corpus_covers_every_kind_of_input() -> None:
    kinds = {k: sum(c.kind == k for c in CASES) for k in ("contacts", "config", "scripts", "cli", "http",
                                                          "audiosocket", "ami")}
    assert all(kinds.values()), kinds
    assert kinds["http"] + kinds["audiosocket"] + kinds["ami"] >= 40, kinds


@pytest.fixture(scope="module")
def seed_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_seed(tmp_path_factory.mktemp("bad_inputs_seed"))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Any, seed_db: Path, tmp_path: Path) -> None:
    outcome = run_case(case, tmp_path / "case", seed_db)
    expected = "accepted" if case.accepted else "clear"
    assert outcome.verdict == expected, f"{outcome.verdict}: {'; '.join(outcome.problems)}\n{one_line(outcome.output, 2000)}"
