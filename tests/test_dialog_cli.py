"""`outreach dialog check` and `outreach dialog try` with the real built-in NLU.

A few runs go through a real subprocess (the installed `outreach` command); the other scenarios run
the same typer app in-process (typer's CliRunner), which keeps the file fast.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "dialogs" / "scripts" / "covid_screening.yaml"
OUTREACH = Path(sys.executable).parent / "outreach"


def outreach(cwd: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTREACH_")}
    return subprocess.run(
        [str(OUTREACH), *args], input=stdin, capture_output=True, text=True, cwd=cwd, env=env, timeout=60
    )


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Run the CLI in-process from an empty directory (built-in config defaults)."""
    from outreach.cli import app

    monkeypatch.chdir(tmp_path)
    runner = CliRunner()

    def invoke(*args: str, stdin: str = "") -> Any:
        return runner.invoke(app, list(args), input=stdin)

    return invoke


def last_json(stdout: str) -> dict[str, Any]:
    data = json.loads(stdout.strip().splitlines()[-1])
    assert isinstance(data, dict)
    return data


def test_check_default_script(tmp_path: Path) -> None:
    p = outreach(tmp_path, "dialog", "check", str(SCRIPT))
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith(f"ok: {SCRIPT}: 13 nodes, fields: identity_confirmed, has_symptoms,")


def test_check_broken_script_exits_2_with_lines(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "nodes:\n  a:\n    say: 请问是{nam}吗？\n    expect: yes_no\n    next: {yes: b, no: c}\n  b:\n    say: 再见\n    end: completed\n",
        encoding="utf-8",
    )
    p = outreach(tmp_path, "dialog", "check", str(bad))
    assert p.returncode == 2
    lines = p.stderr.splitlines()
    assert f"{bad}:3: unknown template variable {{nam}}; contacts have: name, community, address, arrival_date" in lines
    assert f"{bad}:5: node 'a': 'no' goes to unknown node 'c'" in lines
    assert lines[-1] == f"2 problem(s) in {bad}"
    assert p.stdout == ""


def test_check_missing_file(tmp_path: Path, cli: Any) -> None:
    p = cli("dialog", "check", "nope.yaml")
    assert p.exit_code == 2
    assert "nope.yaml:0: script file not found" in p.output


def test_try_all_no_by_stdin(tmp_path: Path) -> None:
    p = outreach(tmp_path, "dialog", "try", str(SCRIPT), "--json", stdin="是的\n没有\n没有\n没有\n做了\n")
    assert p.returncode == 0, p.stderr
    assert "bot> 您好，社区卫生中心随访，请问是张伟吗？" in p.stdout
    assert "you> 没有" in p.stdout
    assert "outcome: completed" in p.stdout
    assert last_json(p.stdout) == {
        "outcome": "completed",
        "risk": "none",
        "reasons": [],
        "answers": {
            "identity_confirmed": True,
            "has_symptoms": False,
            "traveled": False,
            "contact_case": False,
            "second_test_done": True,
        },
        "uncertain": [],
    }


def test_try_keys_fever_and_contact(tmp_path: Path, cli: Any) -> None:
    p = cli("dialog", "try", str(SCRIPT), "--json", stdin="#1\n#1\n#37*5#\n#2\n#1\n#2\n")
    assert p.exit_code == 0, p.output
    data = last_json(p.output)
    assert data["outcome"] == "completed"
    assert data["risk"] == "high"
    assert data["answers"]["temperature"] == 37.5
    assert data["answers"]["contact_case"] is True
    assert data["answers"]["second_test_done"] is False
    assert data["reasons"][0] == "接触过确诊或疑似病例"


def test_try_spoken_temperature_and_hedge(tmp_path: Path, cli: Any) -> None:
    p = cli("dialog", "try", str(SCRIPT), "--json", stdin="是的\n好像有点咳\n三十七度二\n没有\n没有\n做了\n")
    assert p.exit_code == 0, p.output
    data = last_json(p.output)
    assert data["answers"]["has_symptoms"] is True
    assert data["answers"]["temperature"] == 37.2
    assert data["risk"] == "flagged"
    assert "has_symptoms" in data["uncertain"]
    assert data["reasons"] == ["有发烧、咳嗽或乏力等症状"]  # a one-way hedge is that answer (no callback)
    p = cli("dialog", "try", str(SCRIPT), "--json", stdin="是的\n有点咳\n三十七度多\n没有\n没有\n做了\n")
    data = last_json(p.output)
    assert data["answers"]["temperature"] is None and "temperature" in data["uncertain"]
    assert "风险问题回答不确定，需人工回访" in data["reasons"]


def test_try_silence_ends_no_response(tmp_path: Path, cli: Any) -> None:
    p = cli("dialog", "try", str(SCRIPT), "--json", stdin="\n\n\n\n")
    assert p.exit_code == 0, p.output
    assert p.output.count("bot> ") == 5
    assert last_json(p.output)["outcome"] == "no_response"


def test_try_eof_is_hang_up_with_partial_record(tmp_path: Path, cli: Any) -> None:
    p = cli("dialog", "try", str(SCRIPT), "--json", stdin="是的\n有\n")
    data = last_json(p.output)
    assert data["outcome"] == "hung_up"
    assert data["answers"] == {"identity_confirmed": True, "has_symptoms": True}
    assert data["risk"] == "flagged"


def test_try_opt_out_and_busy(tmp_path: Path, cli: Any) -> None:
    p = cli("dialog", "try", str(SCRIPT), "--json", stdin="是的\n以后别再给我打电话了\n")
    assert last_json(p.output)["outcome"] == "opted_out"
    assert "opt_out: yes" in p.output
    p = cli("dialog", "try", str(SCRIPT), "--json", stdin="我在开车\n")
    assert last_json(p.output)["outcome"] == "callback_requested"


def test_try_contact_json_and_file(tmp_path: Path, cli: Any) -> None:
    p = cli("dialog", "try", str(SCRIPT), "--contact", '{"name": "李娜"}', stdin="")
    assert p.exit_code == 0, p.output
    assert "请问是李娜吗？" in p.output
    f = tmp_path / "c.json"
    f.write_text('{"name": "王芳", "community": "和平社区"}', encoding="utf-8")
    p = cli("dialog", "try", str(SCRIPT), "--contact", str(f), stdin="")
    assert "请问是王芳吗？" in p.output


def test_try_bad_contact_exits_2(tmp_path: Path) -> None:
    p = outreach(tmp_path, "dialog", "try", str(SCRIPT), "--contact", '{"name": ', stdin="")
    assert p.returncode == 2
    assert "error: --contact: invalid JSON at line 1, column 10" in p.stderr

def test_try_contact_not_an_object(tmp_path: Path, cli: Any) -> None:
    p = cli("dialog", "try", str(SCRIPT), "--contact", "[1]")
    assert p.exit_code == 2
    assert "error: --contact: the contact must be a JSON object, got list" in p.output
    p = cli("dialog", "try", str(SCRIPT), "--contact", "missing/contact.json")
    assert p.exit_code == 2
    assert "error: --contact: contact file not found: missing/contact.json" in p.output


def test_try_broken_script_exits_2(tmp_path: Path, cli: Any) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("nodes:\n  a:\n    expect: yes_no\n", encoding="utf-8")
    p = cli("dialog", "try", str(bad), stdin="")
    assert p.exit_code == 2
    assert f"{bad}:2: question node 'a' has no prompt ('say')" in p.output


def test_parse_reply() -> None:
    from dialogs.types import Dtmf, NoInput, Utterance
    from outreach.commands.dialog import parse_reply

    assert parse_reply("#1\n") == [Dtmf("1")]
    assert parse_reply("#37*5#") == [Dtmf("3"), Dtmf("7"), Dtmf("*"), Dtmf("5"), Dtmf("#")]
    assert parse_reply("#") == [Dtmf("#")]
    assert parse_reply("   \n") == [NoInput()]
    assert parse_reply("#号楼") == [Utterance("#号楼")]
    assert parse_reply(" 没有 ") == [Utterance("没有")]
