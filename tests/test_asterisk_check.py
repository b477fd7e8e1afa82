"""`outreach asterisk check` against the fake Asterisk: passes when everything fits, else one line per problem."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from outreach.cli import app
from tests.fake_asterisk import FakeAsteriskThread


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(tmp_path: Path, ami_port: int, as_port: int, robot_context: str = "outreach-robot") -> Path:
    p = tmp_path / "config.yaml"
    p.write_text(
        "telephony:\n  backend: asterisk\n  trunk: PJSIP/{national}@trunk\n"
        f"  ami:\n    host: 127.0.0.1\n    port: {ami_port}\n    username: outreach\n"
        f"  audiosocket:\n    listen_host: 127.0.0.1\n    listen_port: {as_port}\n    advertise_host: 127.0.0.1\n"
        f"  asterisk:\n    robot_context: {robot_context}\n",
        encoding="utf-8",
    )
    return p


def check(config: Path, monkeypatch: pytest.MonkeyPatch, secret: str | None = "s3cret") -> tuple[int, dict[str, object]]:
    if secret is not None:
        monkeypatch.setenv("OUTREACH_TELEPHONY__AMI__SECRET", secret)
    res = CliRunner().invoke(app, ["--config", str(config), "asterisk", "check", "--json"])
    return res.exit_code, json.loads(res.output.strip().splitlines()[-1])


def test_check_passes_against_a_ready_asterisk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    as_port = free_port()
    with FakeAsteriskThread(audiosocket=("127.0.0.1", as_port), auth_delay_s=0.05) as pbx:
        code, rep = check(write_config(tmp_path, pbx.port, as_port), monkeypatch)
    assert code == 0, rep
    assert rep["ok"] is True and rep["problems"] == []
    passed = "\n".join(rep["passed"])  # type: ignore[arg-type]
    for expected in ("AMI login as outreach", "AMI permissions", "robot context (outbound calls) 'outreach-robot'",
                     "inbound context", f"AudioSocket target 127.0.0.1:{as_port}", "free to listen on"):
        assert expected in passed


def test_check_names_each_problem_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    as_port = free_port()
    with FakeAsteriskThread(audiosocket=("10.0.0.9", 9092), write="originate", auth_delay_s=0.05) as pbx:
        pbx_port = pbx.port
        code, rep = check(write_config(tmp_path, pbx_port, as_port, robot_context="no-such-context"), monkeypatch)
        assert code == 1
        problems = rep["problems"]
        assert isinstance(problems, list)
        text = "\n".join(problems)
        assert "may not run Hangup, Redirect, CoreShowChannels, ShowDialPlan" in text
        assert "robot context (outbound calls) 'no-such-context' not found" in text
        assert all("\n" not in p for p in problems)
        code, rep = check(write_config(tmp_path, pbx_port, as_port), monkeypatch, secret="wrong")
        assert code == 1 and "Authentication failed" in "".join(rep["problems"])  # type: ignore[arg-type]
    with FakeAsteriskThread(audiosocket=("10.0.0.9", 9092), auth_delay_s=0.05) as pbx:
        code, rep = check(write_config(tmp_path, pbx.port, as_port), monkeypatch)
        assert code == 1
        problems = rep["problems"]
        assert isinstance(problems, list)
        assert any("AudioSocket goes to '10.0.0.9:9092' but the robot listens at" in p for p in problems)
    code, rep = check(write_config(tmp_path, pbx_port, as_port), monkeypatch)  # Asterisk gone
    assert code == 1 and "is Asterisk running" in "".join(rep["problems"])  # type: ignore[arg-type]
    monkeypatch.delenv("OUTREACH_TELEPHONY__AMI__SECRET")
    code, rep = check(write_config(tmp_path, pbx_port, as_port), monkeypatch, secret=None)
    assert code == 1 and "OUTREACH_TELEPHONY__AMI__SECRET" in "".join(rep["problems"])  # type: ignore[arg-type]


def test_check_passes_with_the_per_call_address_of_the_sample_dialplan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    as_port = free_port()
    # Robot context AudioSocket(${AUDIOSOCKET_UUID},${AUDIOSOCKET_ADDR}); the inbound one keeps a fixed address.
    with FakeAsteriskThread(audiosocket=("127.0.0.1", as_port), per_call_address=True, auth_delay_s=0.05) as pbx:
        code, rep = check(write_config(tmp_path, pbx.port, as_port), monkeypatch)
    assert code == 0, rep
    passed = "\n".join(rep["passed"])  # type: ignore[arg-type]
    assert (f"dialplan: AudioSocket target ${{AUDIOSOCKET_ADDR}} (the placing worker's, 127.0.0.1:{as_port} here), "
            f"127.0.0.1:{as_port}\n") in passed
