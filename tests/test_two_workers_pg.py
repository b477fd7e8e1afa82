"""Two real `outreach run` processes on one PostgreSQL database share a campaign: row locking
(FOR UPDATE SKIP LOCKED) means no contact is ever dialled by both, nor twice at the same time."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select

from results import campaigns as db
from results.models import CallAttempt, CampaignContact
from results.store import Store
from tests.conftest import ROOT
from tests.test_campaign_engine import START, make_campaign

pytestmark = pytest.mark.postgres


TRUNK = {"max_channels": 8, "calls_per_second": 4.0}


def worker(url: str, name: str, log: Path, epoch: float) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTREACH_")}
    config = log.with_suffix(".yaml")
    config.write_text(
        "telephony:\n  trunks:\n    - name: default\n"
        f"      max_channels: {TRUNK['max_channels']}\n      calls_per_second: {TRUNK['calls_per_second']}\n",
        encoding="utf-8",
    )
    return subprocess.Popen(
        [sys.executable, "-m", "outreach", "--config", str(config), "--db", url, "run", "--no-status", "--speed", "300", "--start", START.isoformat(), "--epoch", str(epoch),
         "--tick", "0.1", "--exit-when-complete", "--worker", name, "--dial-log", str(log)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )


def test_two_workers_never_dial_the_same_contact(pg_url: str, tmp_path: Path) -> None:
    store = Store(pg_url)
    # One attempt each: a callback asked for "tomorrow morning" would otherwise keep the test waiting.
    retry = {"max_attempts_total": 1, "max_attempts_per_day": 1}
    info = make_campaign(store, n=160, seed=31, windows={"daily": ["00:00-24:00"]},
                         pacing={"max_concurrent_calls": 25, "calls_per_second": 20.0}, retry_policy=retry)
    db.set_state(store, "c1", "running", now=START)
    store.close()

    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    epoch = time.time()  # both workers on one simulated timeline, whenever each process gets going
    procs = [worker(pg_url, "wA", logs[0], epoch), worker(pg_url, "wB", logs[1], epoch)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()

    store = Store(pg_url)
    with store.session() as s:
        attempts = list(s.scalars(select(CallAttempt).where(CallAttempt.campaign_id == info.id)))
        contacts = list(s.scalars(select(CampaignContact).where(CampaignContact.campaign_id == info.id)))
    state = db.get_campaign(store, "c1").state
    store.close()

    assert state == "completed"
    assert all(c.state == "done" for c in contacts)
    by_worker = Counter(a.worker for a in attempts)
    assert by_worker["wA"] > 10 and by_worker["wB"] > 10, by_worker  # both shared the work
    # carrier logs: no channel dialled twice, no channel dialled by both
    lines = [line.split("\t") for log in logs for line in log.read_text(encoding="utf-8").splitlines()]
    channels = [parts[0] for parts in lines]
    assert len(channels) == len(set(channels)) == len(attempts)
    # every contact was dialled exactly once, by one of the two workers
    assert sorted(a.contact_id for a in attempts) == sorted(c.id for c in contacts)
    phones = [parts[1] for parts in lines]
    assert len(phones) == len(set(phones)) == len(contacts)
    assert all(a.outcome != "dialing" and a.attempt_no == 1 for a in attempts)
    # the trunk's budget is shared by both workers: lines and calls per second hold in total (one timeline)
    events = sorted([(a.started_at, 1) for a in attempts] + [(a.ended_at, -1) for a in attempts if a.ended_at],
                    key=lambda e: (e[0], e[1]))
    cur = peak = 0
    for _, d in events:
        cur += d
        peak = max(peak, cur)
    assert peak <= TRUNK["max_channels"]
    starts = sorted(a.started_at for a in attempts)
    gaps = [(b - a).total_seconds() for a, b in zip(starts, starts[1:], strict=False)]
    assert min(gaps) >= 1 / TRUNK["calls_per_second"] - 1e-6
    for i, t0 in enumerate(starts):  # never above the limit over any 10 s window
        assert sum(1 for t in starts[i:] if (t - t0).total_seconds() < 10) <= 10 * TRUNK["calls_per_second"] + 1


def test_concurrent_claims_on_postgres_are_disjoint(pg_url: str) -> None:
    import datetime as dt
    import threading

    store = Store(pg_url)
    info = make_campaign(store, n=300, seed=33)
    db.set_state(store, "c1", "running", now=START)
    got: dict[str, list[int]] = {"a": [], "b": [], "c": []}
    errors: list[BaseException] = []

    stores = {name: Store(pg_url, migrate=False) for name in got}  # one engine (pool) per "worker"

    def claimer(name: str) -> None:
        own = stores[name]
        try:
            slot = START + dt.timedelta(hours=1)
            while True:
                claims = db.claim_due(own, campaign_id=info.id, slots=[slot] * 7, local_dates=[slot.date()] * 7,
                                      due_by=slot, worker=name, history_from=5)
                if not claims:
                    return
                got[name].extend(c.contact_id for c in claims)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            own.close()

    threads = [threading.Thread(target=claimer, args=(n,)) for n in got]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    everything = [c for ids in got.values() for c in ids]
    assert len(everything) == len(set(everything)) == 300
    assert sum(1 for ids in got.values() if ids) >= 2
    with store.session() as s:
        claimed_by = Counter(s.scalars(select(CampaignContact.claimed_by)))
        attempts = list(s.scalars(select(CallAttempt.worker)))
    store.close()
    assert claimed_by == Counter({n: len(ids) for n, ids in got.items() if ids})
    assert Counter(attempts) == claimed_by
