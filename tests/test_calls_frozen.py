"""Whole calls of the frozen scenario set (tests/data/calls_frozen.yaml, written before the change and
never edited) and of the development set (tests/data/calls_dev.yaml) through the engine with the
built-in NLU in text mode, on the default script. A call that goes wrong fails with what differs."""

from __future__ import annotations

from pathlib import Path

import pytest

from dialogs.script import Script, load_script
from tests.calls import check_call, load_calls, run_call

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = load_script(ROOT / "dialogs" / "scripts" / "covid_screening.yaml")
FROZEN = load_calls(ROOT / "tests" / "data" / "calls_frozen.yaml")
DEV = load_calls(ROOT / "tests" / "data" / "calls_dev.yaml")


@pytest.fixture(scope="module")
def script() -> Script:
    return SCRIPT


@pytest.mark.parametrize("call", FROZEN, ids=[c["id"] for c in FROZEN])
def test_frozen_call(script: Script, call: dict) -> None:
    assert check_call(script, call) == []


@pytest.mark.parametrize("call", DEV, ids=[c["id"] for c in DEV])
def test_dev_call(script: Script, call: dict) -> None:
    assert check_call(script, call) == []


def test_the_robot_speaks_to_the_person_on_the_line(script: Script) -> None:
    """A relative hears the questions about the resident by name; the resident hears 您."""
    proxy = next(c for c in FROZEN if c["outcome"] == "proxy_completed")
    said = " ".join(run_call(script, proxy).said)
    assert f"{proxy['contact']}离开过本市吗" in said and "您离开过本市吗" not in said
    resident = next(c for c in FROZEN if c["id"] == "call01_plain_healthy")
    said = " ".join(run_call(script, resident).said)
    assert "您离开过本市吗" in said
