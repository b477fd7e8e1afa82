"""kill -9 of a real `outreach run` subprocess at random points, several times, then a restart to the end:
no attempt is dialled twice, attempts that never reached the network are undone (not counted), dialled
ones cut by the crash become `interrupted` (not charged: no resident is pushed to `unreachable` by our
crashes) and are retried per policy, the answers of cut calls are kept, no record is lost, every
resident is accounted for."""

from __future__ import annotations

import datetime as dt
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

from sqlalchemy import select

from campaigns.windows import CallingWindows
from results import campaigns as db
from results.models import AuditLog, CallAttempt, CampaignContact, ScreeningRecord
from results.store import Store
from tests.conftest import ROOT
from tests.test_campaign_engine import START, make_campaign

KILLS = 4


def dial_lines(log: Path) -> list[str]:
    if not log.exists():
        return []
    return [line for line in log.read_text(encoding="utf-8").splitlines() if line.count("\t") == 2]


def start_run(url: str, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTREACH_")}
    return subprocess.Popen(
        [sys.executable, "-m", "outreach", "--db", url, "run", "--virtual-time", "--worker", "w1",
         "--dial-log", str(log)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )


def test_kill_9_at_random_points_then_restart(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    log = tmp_path / "carrier.log"
    store = Store(url)
    info = make_campaign(store, n=300, seed=21, pacing={"max_concurrent_calls": 20, "calls_per_second": 2.0})
    db.set_state(store, "c1", "running", now=START)
    store.close()

    rng = random.Random(int.from_bytes(os.urandom(4), "big"))
    plan = [(rng.randint(10, 90), rng.uniform(0.0, 0.05)) for _ in range(KILLS)]
    kills = 0
    for more_dials, extra_s in plan:
        before = len(dial_lines(log))
        proc = start_run(url, log)
        deadline = time.monotonic() + 60
        while len(dial_lines(log)) < before + more_dials and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        time.sleep(extra_s)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(timeout=30)
        assert proc.returncode in (0, -signal.SIGKILL), (proc.returncode, proc.stderr.read() if proc.stderr else b"")
    assert kills >= 3, f"the campaign ended before the kills could happen: plan {plan}"

    final = start_run(url, log)
    _, err = final.communicate(timeout=120)
    assert final.returncode == 0, err.decode()
    assert re.search(rb"worker w1: \d+ calls started, \d+ finished, \d+ answered, \d+ interrupted attempts recovered, "
                     rb"\d+ not dialled", err)

    store = Store(url)
    with store.session() as s:
        attempts = list(s.scalars(select(CallAttempt).order_by(CallAttempt.contact_id, CallAttempt.attempt_no)))
        contacts = list(s.scalars(select(CampaignContact)))
        records = list(s.scalars(select(ScreeningRecord)))
        recoveries = list(s.scalars(select(AuditLog).where(AuditLog.action == "campaign.recover")))
    camp = db.get_campaign(store, "c1")
    store.close()
    ctx = f"kill plan {plan}"

    # no attempt dialled twice; nothing dialled without its attempt row committed first
    dialled = [line.split("\t")[0] for line in dial_lines(log)]
    assert len(dialled) == len(set(dialled)), ctx
    by_channel = {a.channel_id: a for a in attempts}
    assert set(dialled) <= set(by_channel), ctx
    # every attempt that finished normally was dialled; in-flight ones became interrupted
    assert all(a.outcome != "dialing" for a in attempts), ctx
    interrupted = [a for a in attempts if a.outcome == "interrupted"]
    # every interrupted attempt comes from a restart's recovery (at most one per kill) and reached the
    # network; what a crash left unwritten came back from the journal; never-dialled claims were undone
    assert len(recoveries) <= kills, ctx
    assert sum(r.details["interrupted"] for r in recoveries) == len(interrupted), ctx
    assert {a.channel_id for a in attempts} <= set(dialled), ctx
    # interrupted attempts are retried per policy (600 s later) unless the contact was exhausted
    per_contact: dict[int, list[CallAttempt]] = defaultdict(list)
    for a in attempts:
        per_contact[a.contact_id].append(a)
    for a in interrupted:
        later = [b for b in per_contact[a.contact_id] if b.attempt_no == a.attempt_no + 1]
        assert a.ended_at is not None
        assert later, ctx  # our crash never ends a contact: it is always called again
        assert later[0].started_at >= a.ended_at + dt.timedelta(seconds=600), ctx
    # no resident pushed to unreachable by our crashes: only attempts that reached them count
    for c in contacts:
        if c.final_outcome == "unreachable":
            assert sum(1 for a in per_contact[c.id] if a.outcome != "interrupted") == 5, ctx
    # no record lost: every answered attempt has exactly its record
    answered = {a.id for a in attempts if a.answered_at is not None}
    assert {r.attempt_id for r in records} == answered, ctx
    # everyone accounted for, within the limits and the windows
    assert camp.state == "completed", ctx
    assert all(c.state == "done" and c.final_outcome for c in contacts), ctx
    windows = CallingWindows.parse(info.windows, info.holidays, info.timezone)
    for items in per_contact.values():
        counted = [a for a in items if a.outcome != "interrupted"]
        assert len(counted) <= 5
        assert max(Counter(windows.local_date(a.started_at) for a in counted).values(), default=0) <= 3, ctx
        assert [a.attempt_no for a in items] == list(range(1, len(items) + 1)), ctx
        for prev, nxt in zip(items, items[1:], strict=False):
            assert prev.ended_at is not None and nxt.started_at >= prev.ended_at, ctx
    assert all(windows.is_open(a.started_at) for a in attempts), ctx


def test_kill_9_during_live_calls_keeps_the_answers_of_cut_calls(tmp_path: Path) -> None:
    """Scaled real time: calls are mid-dialog when the process dies; their answers so far survive (the
    journal), the attempts are interrupted, not charged, and called again."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    log = tmp_path / "carrier.log"
    store = Store(url)
    # One counted attempt each (a callback asked for "tomorrow" would keep the test waiting); a cut call
    # is not counted, so it is called again after interrupted_s.
    retry = {"max_attempts_total": 1, "max_attempts_per_day": 1, "interrupted_s": 60}
    make_campaign(store, n=60, seed=22, windows={"daily": ["00:00-24:00"]}, retry_policy=retry,
                  pacing={"max_concurrent_calls": 30, "calls_per_second": 20.0})
    db.set_state(store, "c1", "running", now=START)
    store.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTREACH_")}
    args = [sys.executable, "-m", "outreach", "--db", url, "run", "--speed", "25", "--start", START.isoformat(),
            "--tick", "0.1", "--worker", "w1", "--dial-log", str(log), "--no-status"]
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while len(dial_lines(log)) < 40 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.5)  # calls are talking; their answers get journaled
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    final = subprocess.Popen([*args, "--exit-when-complete"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
    _, err = final.communicate(timeout=240)
    assert final.returncode == 0, err.decode()
    store = Store(url)
    with store.session() as s:
        attempts = list(s.scalars(select(CallAttempt)))
        records = {r.attempt_id: r for r in s.scalars(select(ScreeningRecord))}
        contacts = list(s.scalars(select(CampaignContact)))
    assert db.get_campaign(store, "c1").state == "completed"
    store.close()
    cut = [a for a in attempts if a.outcome == "interrupted"]
    assert cut, "the kill came when no call was in progress"
    kept = [records[a.id] for a in cut if a.id in records]
    assert any(r.answers for r in kept), "no cut call kept its answers"
    assert all(a.answered_at is not None for a in cut if a.id in records)
    assert all(c.state == "done" for c in contacts)
    for c in contacts:  # every contact got exactly its one counted attempt, whatever the crash cut
        assert sum(1 for a in attempts if a.contact_id == c.id and a.outcome != "interrupted") == 1
