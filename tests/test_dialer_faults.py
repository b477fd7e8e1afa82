"""The dialer core under injected faults: store writes failing, the telephony backend down, two
campaigns over the same residents, a shared trunk, a broken script, a call that never ends, a second
worker on the same host. Real store (SQLite), real script, dialog engine and NLU, simulated network."""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
from collections import Counter, defaultdict
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event, select

from campaigns.clock import ScaledClock, VirtualClock
from campaigns.engine import CampaignEngine, EngineSettings, TrunkSpec
from campaigns.synthetic import synthetic_residents
from campaigns.windows import CallingWindows
from dialer.simulated import SimulatedNetwork
from outreach.commands.campaign import build_sessions
from outreach.config import Config
from results import campaigns as db
from results.models import AuditLog, CallAttempt, CampaignContact, Resident, ScreeningRecord, Trunk
from results.store import Store
from tests.test_campaign_engine import START, attempts, make_campaign

CFG = Config()
ALL_DAY = {"daily": ["00:00-24:00"]}


@pytest.fixture
def store(sqlite_url: str) -> Iterator[Store]:
    s = Store(sqlite_url)
    yield s
    s.close()


def engine(store: Store, clock: Any, net: SimulatedNetwork, worker: str = "w1", **settings: Any) -> CampaignEngine:
    return CampaignEngine(store, net, clock, build_sessions(CFG), settings=EngineSettings(worker=worker, **settings))


def overlaps(rows: list[CallAttempt]) -> int:
    """Pairs of attempts to the same resident whose calls overlapped in time."""
    by_res: dict[int, list[CallAttempt]] = defaultdict(list)
    for a in rows:
        by_res[a.resident_id].append(a)
    n = 0
    for items in by_res.values():
        items.sort(key=lambda a: a.started_at)
        for prev, nxt in zip(items, items[1:], strict=False):
            assert prev.ended_at is not None
            n += nxt.started_at < prev.ended_at
    return n


def test_store_write_failures_lose_no_call_and_leave_no_contact_stuck(store: Store) -> None:
    make_campaign(store, n=60, pacing={"max_concurrent_calls": 6, "calls_per_second": 1.0})
    db.set_state(store, "c1", "running", now=START)
    clock = VirtualClock(START)
    net = SimulatedNetwork(seed=3)
    eng = engine(store, clock, net)
    failures = {"left": 0, "hit": 0}

    def fail_writes(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if failures["left"] > 0 and statement.lstrip().upper().startswith("UPDATE CALL_ATTEMPTS"):
            failures["left"] -= 1
            failures["hit"] += 1
            raise sqlite3.OperationalError("database is locked")

    event.listen(store.engine, "before_cursor_execute", fail_writes)

    async def go() -> None:
        await eng.start()
        for i in range(400):
            if i == 10:
                failures["left"] = 40  # the next finished-call writes fail, retries included
            nxt = await eng.step()
            if nxt is None and not eng.inflight and not eng._unwritten:
                break
            clock.advance_to(nxt or clock.now() + dt.timedelta(seconds=30))
        await eng.stop()

    asyncio.run(go())
    event.remove(store.engine, "before_cursor_execute", fail_writes)
    assert failures["hit"] == 40 and eng.stats.write_failures >= 1
    rows = attempts(store)
    with store.session() as s:
        records = {r.attempt_id for r in s.scalars(select(ScreeningRecord))}
        states = Counter(s.scalars(select(CampaignContact.state)))
    assert db.get_campaign(store, "c1").state == "completed"
    assert set(states) == {"done"}  # 0 contacts stuck
    assert all(a.outcome != "dialing" for a in rows)
    assert {a.id for a in rows if a.answered_at is not None} == records  # 0 lost calls
    assert len(rows) == eng.stats.started


def test_telephony_down_for_an_hour_charges_no_one_and_the_campaign_completes(store: Store) -> None:
    info = make_campaign(store, n=30, pacing={"max_concurrent_calls": 5, "calls_per_second": 1.0})
    db.set_state(store, "c1", "running", now=START)
    clock = VirtualClock(START)
    net = SimulatedNetwork(seed=4, now=clock.now)
    opens = START + dt.timedelta(minutes=30)  # 09:00 local: the first window
    net.go_down("carrier link lost", until=opens + dt.timedelta(hours=1))
    eng = engine(store, clock, net)
    asyncio.run(eng.run_virtual())
    asyncio.run(eng.stop())
    rows = attempts(store, info.id)
    assert net.refused >= 1 and eng.stats.not_dialed >= net.refused  # the breaker kept the rest from dialling
    # 0 attempts charged: none during the outage, none `failed`, the counts match the rows
    assert not [a for a in rows if opens <= a.started_at < opens + dt.timedelta(hours=1)]
    assert not [a for a in rows if a.outcome == "failed"]
    with store.session() as s:
        contacts = list(s.scalars(select(CampaignContact)))
        trunk = s.get(Trunk, "default")
        trips = list(s.scalars(select(AuditLog.action).where(AuditLog.action.like("trunk.breaker_%"))))
    per_contact = Counter(a.contact_id for a in rows)
    assert all(c.attempts == per_contact[c.id] for c in contacts)
    assert db.get_campaign(store, "c1").state == "completed"
    assert trunk is not None and trunk.breaker_trips >= 1 and trunk.breaker_state == "closed"
    assert "trunk.breaker_open" in trips and "trunk.breaker_closed" in trips


def test_two_campaigns_over_the_same_residents_never_call_one_phone_twice_at_once(store: Store) -> None:
    pacing = {"max_concurrent_calls": 10, "calls_per_second": 2.0}
    make_campaign(store, "a", n=40, seed=5, pacing=pacing, windows=ALL_DAY)
    make_campaign(store, "b", add=False, pacing=pacing, windows=ALL_DAY)
    for name in ("a", "b"):
        db.set_state(store, name, "running", now=START)
    clock = VirtualClock(START)
    eng = engine(store, clock, SimulatedNetwork(seed=5),
                 trunks=(TrunkSpec("default", "", max_channels=12, calls_per_second=3.0),))
    asyncio.run(eng.run_virtual())
    asyncio.run(eng.stop())
    rows = attempts(store)
    assert {db.get_campaign(store, n).state for n in ("a", "b")} == {"completed"}
    assert overlaps(rows) == 0
    windows = CallingWindows.parse(ALL_DAY, [], "Asia/Shanghai")
    per_phone_day = Counter((a.resident_id, windows.local_date(a.started_at)) for a in rows)
    assert max(per_phone_day.values()) <= 3  # the daily cap holds per phone across both campaigns
    # the trunk's limits hold in total across the two campaigns
    events = sorted([(a.started_at, 1) for a in rows] + [(a.ended_at, -1) for a in rows if a.ended_at],
                    key=lambda e: (e[0], e[1]))
    cur = peak = 0
    for _, d in events:
        cur += d
        peak = max(peak, cur)
    assert peak <= 12
    starts = sorted(a.started_at for a in rows)
    gaps = [(b - a).total_seconds() for a, b in zip(starts, starts[1:], strict=False)]
    assert min(gaps) >= 1 / 3.0 - 1e-6


def test_a_broken_script_pauses_the_campaign_before_any_call(store: Store) -> None:
    db.add_residents(store, [{"name": "张三", "phone": "+8613800000001", "source_file": "synthetic"}], now=START)
    db.create_campaign(store, name="bad", script_path="broken.yaml", script_text="nodes: [unclosed\n",
                       windows=ALL_DAY, pacing={}, retry_policy={}, now=START)
    db.set_state(store, "bad", "running", now=START)
    eng = engine(store, VirtualClock(START), SimulatedNetwork(seed=1))
    asyncio.run(eng.run_virtual(max_steps=5))
    asyncio.run(eng.stop())
    info = db.get_campaign(store, "bad")
    assert info.state == "paused" and "script does not load" in info.paused_reason
    assert attempts(store) == []
    assert db.campaign_status(store, "bad")["paused_reason"] == info.paused_reason


async def test_a_call_that_never_ends_is_hung_up_at_max_call_s(store: Store) -> None:
    make_campaign(store, n=3, windows=ALL_DAY, retry_policy={"max_attempts_total": 1, "max_attempts_per_day": 1})
    db.set_state(store, "c1", "running", now=START)
    with store.session() as s:
        phones = list(s.scalars(select(Resident.phone).order_by(Resident.id)))
    clock = ScaledClock(START, 600.0)  # ten simulated minutes per second

    async def sleep(seconds: float) -> None:
        await clock.sleep_until(clock.now() + dt.timedelta(seconds=seconds))

    net = SimulatedNetwork(seed=2, sleep=sleep)
    for p in phones:
        net.force(p, "stuck")
    eng = engine(store, clock, net, max_call_s=120.0, slice_s=5.0)
    await eng.start()
    for _ in range(200):
        nxt = await eng.step()
        if nxt is None and not eng.inflight:
            break
        await asyncio.sleep(0.01)
    await eng.stop()
    rows = attempts(store)
    assert len(rows) == 3
    for a in rows:
        assert a.hangup_cause == "max_call_s" and a.answered_at is not None and a.ended_at is not None
        assert (a.ended_at - a.started_at).total_seconds() <= 120 + 60  # the deadline, not "never"
    assert await net.reconcile([a.channel_id for a in rows]) == set()  # all hung up on the backend
    assert db.get_campaign(store, "c1").state == "completed"


async def test_a_second_worker_on_the_same_host_leaves_the_first_ones_calls_alone(store: Store) -> None:
    info = make_campaign(store, n=10, windows=ALL_DAY)
    db.set_state(store, "c1", "running", now=START)
    clock = VirtualClock(START)
    first = engine(store, clock, SimulatedNetwork(seed=1), worker="host:1:aaa")
    await first.start()
    live = db.claim_due(store, campaign_id=info.id, slots=[START] * 4, local_dates=[START.date()] * 4, due_by=START,
                        worker="host:1:aaa", history_from=5)
    assert len(live) == 4
    second = engine(store, clock, SimulatedNetwork(seed=1))  # default id: host:pid:random
    assert second.settings.worker != first.settings.worker
    await second.start()
    clock.advance_to(START + dt.timedelta(hours=2))  # far past any lease: only the heartbeat matters
    assert await second.sweep() == 0
    with store.session() as s:
        states = Counter(s.scalars(select(CampaignContact.state)))
    assert states["dialing"] == 4
    # the same explicit name as a live worker is refused
    with pytest.raises(db.WorkerConflict, match="already running"):
        db.register_worker(store, second.settings.worker, host="elsewhere", pid=1, now=dt.datetime.now(dt.UTC),
                           stale_s=30, is_alive=lambda pid: True)
    # once the first worker stops, its claims are recovered by the other
    await first.stop()
    assert await second.sweep() == 4
    await second.stop()


def test_settings_edited_in_the_store_take_effect_on_the_running_engine(store: Store) -> None:
    make_campaign(store, n=40, pacing={"max_concurrent_calls": 10, "calls_per_second": 2.0}, windows=ALL_DAY)
    db.set_state(store, "c1", "running", now=START)
    clock = VirtualClock(START)
    eng = engine(store, clock, SimulatedNetwork(seed=6))

    async def go() -> dt.datetime:
        await eng.start()
        for _ in range(4):
            nxt = await eng.step()
            assert nxt is not None
            clock.advance_to(nxt)
        db.update_settings(store, "c1", now=clock.now(), pacing={"calls_per_second": 0.2})
        changed = clock.now()
        await eng.run_virtual()
        await eng.stop()
        return changed

    changed = asyncio.run(go())
    starts = sorted(a.started_at for a in attempts(store))
    before = [b for a, b in zip(starts, starts[1:], strict=False) if b < changed]
    after = [(b - a).total_seconds() for a, b in zip(starts, starts[1:], strict=False) if a >= changed]
    assert before and after
    assert min(after) >= 5.0 - 1e-6  # 0.2 calls/s from the next tick on


def test_per_phone_daily_and_total_caps_hold_in_sum_across_campaigns(store: Store) -> None:
    """Residents who never answer, called by two campaigns at once (one of them with more residents, so
    the other completes first): no phone gets more than the daily cap on any day, nor the total cap in
    all, summed over both campaigns."""
    pacing = {"max_concurrent_calls": 10, "calls_per_second": 2.0}
    a_id = make_campaign(store, "a", n=20, seed=5, pacing=pacing, windows=ALL_DAY).id
    db.add_residents(store, synthetic_residents(20, seed=9), now=START)
    make_campaign(store, "b", add=False, pacing=pacing, windows=ALL_DAY)
    for name in ("a", "b"):
        db.set_state(store, name, "running", now=START)
    clock = VirtualClock(START)
    net = SimulatedNetwork(seed=5, answer_rate=0.0, no_answer_rate=1.0, busy_rate=0.0, congestion_rate=0.0,
                           invalid_rate=0.0)
    eng = engine(store, clock, net)
    asyncio.run(eng.run_virtual())
    asyncio.run(eng.stop())
    rows = [a for a in attempts(store) if a.outcome not in ("interrupted", db.NOT_DIALED)]
    assert {db.get_campaign(store, n).state for n in ("a", "b")} == {"completed"}
    windows = CallingWindows.parse(ALL_DAY, [], "Asia/Shanghai")
    per_day = Counter((a.resident_id, windows.local_date(a.started_at)) for a in rows)
    total = Counter(a.resident_id for a in rows)
    by_campaign = Counter((a.resident_id, a.campaign_id) for a in rows)
    assert max(per_day.values()) <= 3
    assert max(total.values()) == 5, total  # every phone was called up to the cap, and never beyond it
    assert len(total) == 40
    both = {r for (r, c) in by_campaign if c == a_id} & {r for (r, c) in by_campaign if c != a_id}
    assert len(both) >= 10  # the shared phones were called by both campaigns, within one budget


def test_the_total_cap_counts_a_campaign_that_completed_while_another_still_ran(store: Store) -> None:
    """Campaign b starts a day after a, over the same residents who never answer; a reaches every phone's
    total cap and completes while b still runs: b must not start a fresh budget of attempts."""
    pacing = {"max_concurrent_calls": 10, "calls_per_second": 2.0}
    make_campaign(store, "a", n=10, seed=5, pacing=pacing, windows=ALL_DAY)
    make_campaign(store, "b", add=False, pacing=pacing, windows=ALL_DAY)
    db.set_state(store, "a", "running", now=START)
    clock = VirtualClock(START)
    net = SimulatedNetwork(seed=5, answer_rate=0.0, no_answer_rate=1.0, busy_rate=0.0, congestion_rate=0.0,
                           invalid_rate=0.0)
    eng = engine(store, clock, net)
    asyncio.run(eng.run_virtual(until=START + dt.timedelta(hours=20)))
    db.set_state(store, "b", "running", now=clock.now())
    asyncio.run(eng.run_virtual())
    asyncio.run(eng.stop())
    rows = [a for a in attempts(store) if a.outcome not in ("interrupted", db.NOT_DIALED)]
    assert {db.get_campaign(store, n).state for n in ("a", "b")} == {"completed"}
    total = Counter(a.resident_id for a in rows)
    windows = CallingWindows.parse(ALL_DAY, [], "Asia/Shanghai")
    per_day = Counter((a.resident_id, windows.local_date(a.started_at)) for a in rows)
    assert max(per_day.values()) <= 3
    assert sorted(total.values()) == [5] * 10, total
