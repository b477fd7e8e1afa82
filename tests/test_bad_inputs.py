"""The bad-input corpus (tests/bad_inputs/): every case on a fresh copy of the seeded store, through the real
CLI. Each must end with its exit code and a message naming the place, without a traceback, without an
unmasked phone or ID number in any output or log, and (unless it is accepted as designed) with the store
unchanged. `python -m tests.bad_inputs.measure --verbose` prints the verdict of every case."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bad_inputs.cases import all_cases
from tests.bad_inputs.harness import Case, one_line, run_case
from tests.bad_inputs.seed import build_seed

CASES = all_cases()


def test_the_corpus_has_at_least_150_cases() -> None:
    assert len(CASES) >= 150
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.fixture(scope="module")
def seed_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_seed(tmp_path_factory.mktemp("bad_inputs_seed"))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, seed_db: Path, tmp_path: Path) -> None:
    outcome = run_case(case, tmp_path / "case", seed_db)
    expected = "accepted" if case.accepted else "clear"
    assert outcome.verdict == expected, f"{outcome.verdict}: {'; '.join(outcome.problems)}\n{one_line(outcome.output, 2000)}"
