"""`outreach campaign ...`, `outreach run --virtual-time` and `outreach demo` through the real CLI."""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from openpyxl import load_workbook
from sqlalchemy import select
from typer.testing import CliRunner

from campaigns.synthetic import synthetic_residents
from campaigns.windows import CallingWindows
from outreach.cli import app
from results import campaigns as db
from results.models import CallAttempt, CampaignContact
from results.store import Store
from tests.test_campaign_engine import START

SH = ZoneInfo("Asia/Shanghai")


@pytest.fixture
def url(tmp_path: Path) -> str:
    u = f"sqlite:///{tmp_path / 'store.db'}"
    store = Store(u)
    db.add_residents(store, synthetic_residents(60, seed=41), now=START)
    store.close()
    return u


def cli(url: str, *args: str) -> tuple[int, str]:
    res = CliRunner().invoke(app, ["--db", url, *args])
    return res.exit_code, res.output


def test_create_start_pause_resume_status_and_run(url: str) -> None:
    code, out = cli(url, "campaign", "create", "c1", "--community", "东湖社区", "--window", "daily=09:00-12:00",
                    "--window", "sun=", "--holiday", "2026-11-24", "--max-concurrent", "4", "--cps", "1",
                    "--max-attempts", "3")
    assert code == 0, out
    assert "created campaign 'c1' (draft) with" in out
    info = db.get_campaign(Store(url), "c1")
    assert info.windows == {"daily": ["09:00-12:00"], "sun": []}
    assert info.holidays == ["2026-11-24"]
    assert info.pacing == {"max_concurrent_calls": 4, "calls_per_second": 1.0}
    assert info.retry_policy["max_attempts_total"] == 3 and info.retry_policy["max_attempts_per_day"] == 3
    assert info.script_sha256

    assert cli(url, "campaign", "start", "c1") == (0, "campaign 'c1' is running\n")
    assert cli(url, "campaign", "pause", "c1") == (0, "campaign 'c1' is paused\n")
    code, out = cli(url, "campaign", "pause", "c1")
    assert code == 2 and "is paused; it cannot become paused" in out
    assert cli(url, "campaign", "resume", "c1")[0] == 0

    code, out = cli(url, "run", "--virtual-time", "--start", "2026-11-23T08:00+08:00")
    assert code == 0, out
    assert "completed campaigns: c1" in out
    code, out = cli(url, "campaign", "status", "c1", "--json")
    st = json.loads(out)
    assert st["state"] == "completed"
    assert set(st["contacts"]) == {"done"}
    assert sum(st["attempts"].values()) >= sum(st["contacts"].values())
    code, out = cli(url, "campaign", "status")
    assert code == 0 and out.startswith("c1\tcompleted")
    # nothing was dialled on the holiday or on the afternoon
    store = Store(url)
    with store.session() as s:
        starts = list(s.scalars(select(CallAttempt.started_at)))
    store.close()
    w = CallingWindows.parse({"daily": ["09:00-12:00"], "sun": []}, ["2026-11-24"])
    assert starts and all(w.is_open(t) for t in starts)
    assert not [t for t in starts if t.astimezone(SH).date() == dt.date(2026, 11, 24)]


def test_cancel_from_the_cli(url: str) -> None:
    assert cli(url, "campaign", "create", "c2")[0] == 0
    assert cli(url, "campaign", "start", "c2")[0] == 0
    assert cli(url, "campaign", "cancel", "c2") == (0, "campaign 'c2' is cancelled\n")
    st = json.loads(cli(url, "campaign", "status", "c2", "--json")[1])
    assert st["contacts"] == {"skipped": 60} and st["final_outcomes"] == {"cancelled": 60}
    code, out = cli(url, "campaign", "resume", "c2")
    assert code == 2 and "is cancelled; it cannot become running" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--window", "daily=9-12"], "windows.daily[0]: '9-12' is not a range HH:MM-HH:MM"),
        (["--window", "weekday=09:00-10:00"], "unknown key 'weekday'"),
        (["--window", "09:00-10:00"], "use DAY=HH:MM-HH:MM"),
        (["--holiday", "2026-02-30"], "holidays[0]: '2026-02-30' is not a date"),
        (["--timezone", "Asia/Beijing"], "unknown time zone 'Asia/Beijing'"),
        (["--community", "火星社区"], "no resident matches"),
        (["--script", "missing.yaml"], "missing.yaml"),
    ],
)
def test_bad_campaign_input_exits_2_with_a_clear_message(url: str, args: list[str], message: str) -> None:
    code, out = cli(url, "campaign", "create", "bad", *args)
    assert code == 2, out
    assert message in out


def test_unknown_campaign_and_duplicate_names(url: str) -> None:
    code, out = cli(url, "campaign", "start", "ghost")
    assert code == 2 and "no campaign named 'ghost'" in out
    assert cli(url, "campaign", "create", "c3")[0] == 0
    code, out = cli(url, "campaign", "create", "c3")
    assert code == 2 and "already exists" in out
    code, out = cli(url, "campaign", "status", "ghost")
    assert code == 2 and "no campaign named 'ghost'" in out


def test_demo_json_is_one_object_and_every_resident_is_accounted_for(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTREACH_")}
    demo_dir = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "outreach", "demo", "--residents", "80", "--seed", "5", "--dir", str(demo_dir), "--json"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)  # exactly one JSON object: anything else would not parse
    assert proc.stdout.strip().count("\n") == 0
    for key in ("residents", "calls", "answered", "completed", "flagged", "unreachable", "opted_out",
                "human_requested", "reminders_needed", "wall_s"):
        assert isinstance(summary[key], int | float), key
    assert summary["residents"] == 80 and summary["unfinished"] == 0
    assert summary["campaign_state"] == "completed"
    accounted = (summary["completed"] + summary["unreachable"] + summary["opted_out"] + summary["human_requested"]
                 + summary["not_understood"] + summary["do_not_call"])
    assert accounted == 80
    assert summary["max_attempts_per_resident"] <= 5
    out = demo_dir / "out"
    assert {p.name for p in out.iterdir()} == {"screenings.xlsx", "attempts.csv", "escalations.xlsx"}
    rows = list(csv.reader((out / "attempts.csv").read_text(encoding="utf-8-sig").splitlines()))
    assert len(rows) - 1 == summary["calls"]
    w = CallingWindows.parse({"daily": ["09:00-12:00", "14:00-20:00"]})
    for row in rows[1:]:
        assert w.is_open(dt.datetime.strptime(row[6], "%Y-%m-%d %H:%M:%S").replace(tzinfo=SH)), row
    wb = load_workbook(out / "escalations.xlsx", read_only=True)
    assert len(wb.sheetnames) >= 2 and all(name.endswith("社区") for name in wb.sheetnames)
    # the same seed gives the same campaign
    again = subprocess.run(
        [sys.executable, "-m", "outreach", "demo", "--residents", "80", "--seed", "5", "--dir", str(demo_dir), "--json"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    second = json.loads(again.stdout)
    assert {k: v for k, v in second.items() if k != "wall_s"} == {k: v for k, v in summary.items() if k != "wall_s"}


def test_run_refuses_an_unusable_backend(url: str, tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("telephony:\n  backend: asterisk\n", encoding="utf-8")
    res = CliRunner().invoke(app, ["--config", str(cfg), "--db", url, "run", "--virtual-time"])
    assert res.exit_code == 2 and "wall clock" in res.output
    res = CliRunner().invoke(app, ["--config", str(cfg), "--db", url, "run", "--exit-when-complete"])
    assert res.exit_code == 2 and "OUTREACH_TELEPHONY__AMI__SECRET" in res.output


def test_start_only_starts_a_draft_and_resume_only_resumes_a_paused_campaign(url: str) -> None:
    assert cli(url, "campaign", "create", "c4")[0] == 0
    code, out = cli(url, "campaign", "resume", "c4")
    assert code == 2 and "'c4' is draft" in out and "outreach campaign start c4" in out
    assert db.get_campaign(Store(url), "c4").state == "draft"
    assert cli(url, "campaign", "start", "c4")[0] == 0
    assert cli(url, "campaign", "pause", "c4")[0] == 0
    code, out = cli(url, "campaign", "start", "c4")
    assert code == 2 and "'c4' is paused" in out and "outreach campaign resume c4" in out
    assert db.get_campaign(Store(url), "c4").state == "paused"
    assert cli(url, "campaign", "resume", "c4") == (0, "campaign 'c4' is running\n")


def test_file_filter_matches_the_imported_path_or_its_file_name(url: str) -> None:
    store = Store(url)
    rows = synthetic_residents(70, seed=42)[60:]  # 10 more residents, other phones than the fixture's
    for r in rows:
        r["source_file"] = "/data/imports/returnees.xlsx"
    db.add_residents(store, rows, now=START)
    store.close()
    code, out = cli(url, "campaign", "create", "by-name", "--file", "returnees.xlsx")
    assert code == 0, out
    assert "with 10 contacts" in out
    code, out = cli(url, "campaign", "create", "by-path", "--file", "/data/imports/returnees.xlsx")
    assert code == 0 and "with 10 contacts" in out, out
    code, out = cli(url, "campaign", "create", "other", "--file", "other.xlsx")
    assert code == 2
    assert "no residents were imported from other.xlsx" in out and "/data/imports/returnees.xlsx" in out
    code, out = cli(url, "campaign", "create", "other", "--file", "/elsewhere/returnees.xlsx")
    assert code == 2 and "no residents were imported from /elsewhere/returnees.xlsx" in out


def test_demo_refuses_to_replace_a_store_that_holds_real_work(url: str, tmp_path: Path) -> None:
    assert cli(url, "campaign", "create", "real")[0] == 0
    demo_dir = tmp_path / "var"
    demo_dir.mkdir()
    store_file = demo_dir / "outreach.db"
    store_file.write_bytes(Path(url.removeprefix("sqlite:///")).read_bytes())
    before = store_file.read_bytes()
    res = CliRunner().invoke(app, ["demo", "--residents", "5", "--dir", str(demo_dir), "--json"])
    assert res.exit_code == 2, res.output
    assert "is not a previous demo store (it holds 1 campaigns other than the demo)" in res.output
    assert store_file.read_bytes() == before
    assert not (demo_dir / "out").exists()


def test_a_second_sigterm_cuts_the_calls_in_progress_and_records_them_interrupted(url: str, tmp_path: Path) -> None:
    """`outreach run` on the wall clock: the first SIGTERM stops new calls and waits for the calls in
    progress; a second one cuts them, and they are stored as `interrupted`, to be retried."""
    assert cli(url, "campaign", "create", "live", "--window", "daily=00:00-24:00", "--cps", "20",
               "--max-concurrent", "8")[0] == 0
    assert cli(url, "campaign", "start", "live")[0] == 0
    log = tmp_path / "carrier.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTREACH_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "outreach", "--db", url, "run", "--worker", "sig", "--tick", "0.2",
         "--dial-log", str(log)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            if log.exists() and len(log.read_text(encoding="utf-8").splitlines()) >= 8:
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else b""
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = err.decode()
    assert proc.returncode == 0, text
    assert "stopping: no new calls; waiting for" in text and "cutting the calls in progress" in text

    store = Store(url)
    with store.session() as s:
        rows = list(s.scalars(select(CallAttempt)))
        contacts = list(s.scalars(select(CampaignContact)))
    store.close()
    assert rows and all(a.outcome != "dialing" for a in rows)
    assert all(c.state != "dialing" and c.claimed_by is None for c in contacts)
    interrupted = [a for a in rows if a.outcome == "interrupted"]
    assert interrupted  # no-answer calls ring 30 s: some were still in progress
    by_contact = {c.id: c for c in contacts}
    for a in interrupted:
        c = by_contact[a.contact_id]
        assert c.state == "pending" and a.ended_at is not None and c.next_attempt_at is not None
        assert c.next_attempt_at >= a.ended_at + dt.timedelta(seconds=600)
    dialled = [line.split("\t")[0] for line in log.read_text(encoding="utf-8").splitlines()]
    assert len(dialled) == len(set(dialled)) and set(dialled) <= {a.channel_id for a in rows}


def test_campaign_set_takes_effect_on_the_running_engine_without_a_restart(url: str) -> None:
    """Staff edit windows and pacing with `outreach campaign set` while the engine runs: the engine applies
    them at its next step (no call started outside the new window, none closer than the new pacing)."""
    import asyncio

    from campaigns.clock import VirtualClock
    from campaigns.engine import CampaignEngine, EngineSettings
    from dialer.simulated import SimulatedNetwork
    from outreach.commands.campaign import build_sessions
    from outreach.config import Config

    code, out = cli(url, "campaign", "create", "c1", "--window", "daily=00:00-24:00", "--cps", "2",
                    "--max-concurrent", "10")
    assert code == 0, out
    store = Store(url)
    db.set_state(store, "c1", "running", now=START)
    clock = VirtualClock(START)
    eng = CampaignEngine(store, SimulatedNetwork(seed=6), clock, build_sessions(Config()),
                         settings=EngineSettings(worker="w1"))

    async def go() -> tuple[dt.datetime, str]:
        await eng.start()
        for _ in range(3):
            nxt = await eng.step()
            assert nxt is not None
            clock.advance_to(nxt)
        res = CliRunner().invoke(app, ["--db", url, "campaign", "set", "c1", "--window", "daily=14:00-20:00",
                                       "--cps", "0.2", "--max-concurrent", "3"])
        changed = clock.now()
        await eng.run_virtual()
        await eng.stop()
        return changed, res.output

    try:
        changed, output = asyncio.run(go())
        info = db.get_campaign(store, "c1")
        rows = [a for a in _attempts(store) if a.started_at >= changed]
    finally:
        store.close()
    assert "windows daily 14:00-20:00" in output and "0.2 calls/s" in output, output
    assert info.state == "completed" and info.windows == {"daily": ["14:00-20:00"]}
    assert info.pacing["calls_per_second"] == 0.2 and info.pacing["max_concurrent_calls"] == 3
    windows = CallingWindows.parse(info.windows, [], "Asia/Shanghai")
    assert rows and all(windows.is_open(a.started_at) for a in rows)
    starts = sorted(a.started_at for a in rows)
    assert min((b - a).total_seconds() for a, b in zip(starts, starts[1:], strict=False)) >= 5.0 - 1e-6


def _attempts(store: Store) -> list[CallAttempt]:
    with store.session() as s:
        return list(s.scalars(select(CallAttempt).order_by(CallAttempt.started_at)))


@pytest.mark.parametrize(("args", "message"), [
    ([], "nothing to change"),
    (["--window", "daily=25:00-26:00"], "campaign 'c1'"),
    (["--max-attempts", "2", "--max-attempts-per-day", "3"], "max_attempts_per_day must not exceed"),
    (["--window", "daily09:00"], "--window 'daily09:00'"),
])
def test_campaign_set_refuses_bad_settings_with_a_clear_message(url: str, args: list[str], message: str) -> None:
    assert cli(url, "campaign", "create", "c1")[0] == 0
    code, out = cli(url, "campaign", "set", "c1", *args)
    assert code == 2 and message in out, out
    code, out = cli(url, "campaign", "set", "nope", "--cps", "1")
    assert code == 2 and "nope" in out, out
