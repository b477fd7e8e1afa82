"""The campaign engine end to end in virtual time: the real store (SQLite and PostgreSQL), the real
script, dialog engine and NLU, the simulated network. Checks the acceptance rules on what was stored."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Iterator
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from campaigns.clock import VirtualClock
from campaigns.engine import CampaignEngine, EngineSettings
from campaigns.synthetic import synthetic_residents
from campaigns.windows import CallingWindows
from outreach.commands.campaign import build_sessions, build_telephony, campaign_defaults
from outreach.config import Config
from results import campaigns as db
from results.models import CallAttempt, CampaignContact, DoNotCall, Escalation, Resident, ScreeningRecord
from results.store import Store
from tests.conftest import ROOT

SH = ZoneInfo("Asia/Shanghai")
START = dt.datetime(2026, 11, 23, 8, 30, tzinfo=SH).astimezone(dt.UTC)
SCRIPT = str(ROOT / "dialogs" / "scripts" / "covid_screening.yaml")
CFG = Config()


def make_campaign(store: Store, name: str = "c1", n: int = 80, *, seed: int = 3, add: bool = True,
                  **overrides: Any) -> db.CampaignInfo:
    if add:
        db.add_residents(store, synthetic_residents(n, seed=seed), now=START)
    d = campaign_defaults(CFG)
    d.update(overrides)
    info, _ = db.create_campaign(
        store, name=name, script_path=SCRIPT, timezone=d["timezone"], windows=d["windows"],
        holidays=d["holidays"], pacing=d["pacing"], retry_policy=d["retry_policy"], now=START,
    )
    return info


def engine(store: Store, clock: VirtualClock, worker: str = "w1", **kw: Any) -> CampaignEngine:
    return CampaignEngine(store, build_telephony(CFG), clock, build_sessions(CFG),
                          settings=EngineSettings(worker=worker), **kw)


def attempts(store: Store, campaign_id: int | None = None) -> list[CallAttempt]:
    with store.session() as s:
        q = select(CallAttempt).order_by(CallAttempt.started_at, CallAttempt.id)
        if campaign_id is not None:
            q = q.where(CallAttempt.campaign_id == campaign_id)
        return list(s.scalars(q))


def max_overlap(rows: list[CallAttempt]) -> int:
    events = sorted([(a.started_at, 1) for a in rows] + [(a.ended_at, -1) for a in rows if a.ended_at],
                    key=lambda e: (e[0], e[1]))
    cur = best = 0
    for _, delta in events:
        cur += delta
        best = max(best, cur)
    return best


@pytest.fixture
def sqlite_store(sqlite_url: str) -> Iterator[Store]:
    s = Store(sqlite_url)
    yield s
    s.close()


def test_a_campaign_runs_to_completion_within_every_rule(store: Store) -> None:
    pacing = {"max_concurrent_calls": 8, "calls_per_second": 1.0}
    info = make_campaign(store, n=60, pacing=pacing)
    db.set_state(store, "c1", "running", now=START)
    clock = VirtualClock(START)
    eng = engine(store, clock)
    asyncio.run(eng.run_virtual())
    assert db.get_campaign(store, "c1").state == "completed"
    assert eng.completed_campaigns == ["c1"]

    windows = CallingWindows.parse(info.windows, info.holidays, info.timezone)
    rows = attempts(store, info.id)
    assert rows and all(a.outcome != "dialing" for a in rows)
    # no attempt starts outside the calling windows
    assert [a.started_at for a in rows if not windows.is_open(a.started_at)] == []
    # attempt limits: total and per local day
    per_contact: dict[int, list[CallAttempt]] = defaultdict(list)
    for a in rows:
        per_contact[a.contact_id].append(a)
    for items in per_contact.values():
        assert len(items) <= 5
        assert [a.attempt_no for a in items] == list(range(1, len(items) + 1))
        days = Counter(windows.local_date(a.started_at) for a in items)
        assert max(days.values()) <= 3
        for prev, nxt in zip(items, items[1:], strict=False):
            assert prev.ended_at is not None and nxt.started_at >= prev.ended_at  # never two calls at once
    # pacing: evenly spaced starts, never more calls at once than lines
    starts = [a.started_at for a in rows]
    gaps = [(b - a).total_seconds() for a, b in zip(starts, starts[1:], strict=False)]
    assert min(gaps) >= 1.0 - 1e-6
    assert max_overlap(rows) <= 8

    with store.session() as s:
        contacts = list(s.scalars(select(CampaignContact).where(CampaignContact.campaign_id == info.id)))
        records = list(s.scalars(select(ScreeningRecord).where(ScreeningRecord.campaign_id == info.id)))
        escalations = list(s.scalars(select(Escalation).where(Escalation.campaign_id == info.id)))
        communities = dict(s.execute(select(Resident.id, Resident.community)).all())
        dnc = set(s.scalars(select(DoNotCall.phone)))
        phones = dict(s.execute(select(Resident.id, Resident.phone)).all())
    assert len(contacts) == 60
    assert all(c.state == "done" and c.final_outcome for c in contacts)
    finals = Counter(c.final_outcome for c in contacts)
    assert finals["completed"] > 35
    # every answered attempt has its record; records keep the script's answers
    answered = [a for a in rows if a.answered_at is not None]
    assert len(records) == len(answered)
    assert {r.attempt_id for r in records} == {a.id for a in answered}
    done = [r for r in records if r.outcome == "completed"]
    assert all("has_symptoms" in r.answers for r in done)
    # escalations: unreachable ones for the resident's community; flagged ones with the script reasons
    by_kind: dict[str, list[Escalation]] = defaultdict(list)
    for e in escalations:
        by_kind[e.kind].append(e)
        assert e.community == communities[e.resident_id]
    unreachable = {c.resident_id for c in contacts if c.final_outcome in ("unreachable", "invalid_number", "wrong_number")}
    assert {e.resident_id for e in by_kind["unreachable"]} == unreachable
    for r in records:
        if r.risk_level in ("flagged", "high"):
            kind = "high_risk" if r.risk_level == "high" else "flagged"
            match = [e for e in by_kind[kind] if e.record_id == r.id]
            assert match and match[0].reasons == r.reasons and r.reasons
    human = {c.resident_id for c in contacts if c.final_outcome == "human_requested"}
    assert {e.resident_id for e in by_kind["human_requested"]} == human
    opted = {phones[c.resident_id] for c in contacts if c.final_outcome == "opted_out"}
    assert opted <= dnc


def test_do_not_call_numbers_are_never_dialled(sqlite_store: Store) -> None:
    store = sqlite_store
    info = make_campaign(store, n=40)
    with store.session() as s:
        phones = list(s.scalars(select(Resident.phone).order_by(Resident.id)))
    blocked = phones[:5]
    db.add_do_not_call_numbers(store, blocked, reason="staff", source="staff", now=START)
    db.set_state(store, "c1", "running", now=START)
    clock = VirtualClock(START)
    eng = engine(store, clock)

    async def go() -> None:
        eng.recover()
        for _ in range(3):
            nxt = await eng.step()
            assert nxt is not None
            clock.advance_to(nxt)
        # added while the campaign runs: never dialled from now on
        db.add_do_not_call_numbers(store, phones[-3:], reason="hotline", source="staff", now=clock.now())
        late = clock.now()
        await eng.run_virtual()
        with store.session() as s:
            dialled_late = set(s.scalars(
                select(Resident.phone).join(CallAttempt, CallAttempt.resident_id == Resident.id)
                .where(CallAttempt.started_at >= late)
            ))
        assert not dialled_late & set(phones[-3:])

    asyncio.run(go())
    with store.session() as s:
        dialled = set(s.scalars(select(Resident.phone).join(CallAttempt, CallAttempt.resident_id == Resident.id)))
        skipped = set(s.scalars(
            select(Resident.phone).join(CampaignContact, CampaignContact.resident_id == Resident.id)
            .where(CampaignContact.final_outcome == "do_not_call")
        ))
    assert not dialled & set(blocked)
    assert set(blocked) <= skipped
    assert db.get_campaign(store, info.name).state == "completed"


def test_pause_stops_new_calls_and_resume_continues(sqlite_store: Store) -> None:
    store = sqlite_store
    info = make_campaign(store, n=60, pacing={"max_concurrent_calls": 4, "calls_per_second": 0.5})
    db.set_state(store, "c1", "running", now=START)
    clock = VirtualClock(START)
    eng = engine(store, clock)

    async def go() -> None:
        eng.recover()
        for _ in range(8):
            nxt = await eng.step()
            assert nxt is not None
            clock.advance_to(nxt)
        paused_at = clock.now()
        db.set_state(store, "c1", "paused", now=paused_at)
        before = len(attempts(store))
        for _ in range(20):  # hours of virtual time pass while paused
            await eng.step()
            clock.advance_to(clock.now() + dt.timedelta(minutes=10))
        rows = attempts(store)
        assert len(rows) == before
        assert all(a.started_at < paused_at for a in rows)
        assert all(a.outcome != "dialing" for a in rows)  # calls in flight finished normally
        with pytest.raises(db.CampaignError, match="is paused; it cannot become paused"):
            db.set_state(store, "c1", "paused", now=clock.now())
        db.set_state(store, "c1", "running", now=clock.now())
        await eng.run_virtual()

    asyncio.run(go())
    assert db.get_campaign(store, info.name).state == "completed"
    st = db.campaign_status(store, "c1")
    assert set(st["contacts"]) == {"done"}


def test_cancel_skips_what_is_left_and_calls_in_flight_are_not_retried(sqlite_store: Store) -> None:
    store = sqlite_store
    make_campaign(store, n=50, pacing={"max_concurrent_calls": 5, "calls_per_second": 1.0})
    db.set_state(store, "c1", "running", now=START)
    clock = VirtualClock(START)
    eng = engine(store, clock)

    async def go() -> None:
        eng.recover()
        for _ in range(2):
            nxt = await eng.step()
            assert nxt is not None
            clock.advance_to(nxt)
        assert eng.inflight > 0
        db.set_state(store, "c1", "cancelled", now=clock.now())
        await eng.run_virtual()

    asyncio.run(go())
    st = db.campaign_status(store, "c1")
    assert st["state"] == "cancelled"
    assert "pending" not in st["contacts"] and "dialing" not in st["contacts"]
    assert st["final_outcomes"]["cancelled"] > 30
    assert all(a.outcome != "dialing" for a in attempts(store))


def test_lifecycle_transitions_are_checked(sqlite_store: Store) -> None:
    store = sqlite_store
    make_campaign(store, n=5)
    with pytest.raises(db.CampaignError, match="is draft; it cannot become paused"):
        db.set_state(store, "c1", "paused", now=START)
    db.set_state(store, "c1", "running", now=START)
    db.set_state(store, "c1", "paused", now=START)
    db.set_state(store, "c1", "running", now=START)
    db.set_state(store, "c1", "cancelled", now=START)
    with pytest.raises(db.CampaignError, match="is cancelled; it cannot become running"):
        db.set_state(store, "c1", "running", now=START)
    with pytest.raises(db.CampaignNotFound, match="no campaign named 'nope'"):
        db.set_state(store, "nope", "running", now=START)
    with pytest.raises(db.CampaignError, match="already exists"):
        make_campaign(store, n=5, add=False)


def test_contact_selection_by_community_and_tag(sqlite_store: Store) -> None:
    store = sqlite_store
    db.add_residents(store, synthetic_residents(200, seed=4), now=START)
    d = campaign_defaults(CFG)
    common = {"script_path": SCRIPT, "windows": d["windows"], "pacing": d["pacing"], "retry_policy": d["retry_policy"],
              "now": START}
    _, n_comm = db.create_campaign(store, name="east", communities=["东湖社区"], **common)
    _, n_tag = db.create_campaign(store, name="key", tags=["重点地区"], **common)
    with store.session() as s:
        residents = list(s.scalars(select(Resident)))
    assert n_comm == sum(r.community == "东湖社区" for r in residents) > 0
    assert n_tag == sum("重点地区" in r.tags for r in residents) > 0
    with pytest.raises(db.CampaignError, match="no resident matches"):
        db.create_campaign(store, name="none", communities=["不存在社区"], **common)


def test_holiday_on_the_first_day_moves_every_first_call(sqlite_store: Store) -> None:
    store = sqlite_store
    info = make_campaign(store, n=20, holidays=["2026-11-23"])
    db.set_state(store, "c1", "running", now=START)
    clock = VirtualClock(START)
    asyncio.run(engine(store, clock).run_virtual())
    first = attempts(store, info.id)[0].started_at
    assert first == dt.datetime(2026, 11, 24, 9, 0, tzinfo=SH)


def test_an_opt_out_is_honoured_by_later_campaigns(sqlite_store: Store) -> None:
    store = sqlite_store
    make_campaign(store, n=150, seed=8)
    db.set_state(store, "c1", "running", now=START)
    clock = VirtualClock(START)
    asyncio.run(engine(store, clock).run_virtual())
    with store.session() as s:
        opted = set(s.scalars(select(DoNotCall.phone).where(DoNotCall.source == "opt_out")))
        callbacks = s.execute(
            select(Escalation.status, Escalation.result, CampaignContact.final_outcome)
            .join(CampaignContact, CampaignContact.resident_id == Escalation.resident_id)
            .where(Escalation.kind == "callback_requested")
        ).all()
    assert opted
    # a callback the robot honoured and completed is closed on the worker's list; the others stay open
    assert callbacks
    for status, result, final in callbacks:
        assert (status, result) == (("closed", "robot_called_back") if final == "completed" else ("open", None))
    make_campaign(store, "c2", add=False)
    db.set_state(store, "c2", "running", now=clock.now())
    asyncio.run(engine(store, clock, worker="w2").run_virtual())
    c2 = db.get_campaign(store, "c2")
    with store.session() as s:
        dialled = set(s.scalars(
            select(Resident.phone).join(CallAttempt, CallAttempt.resident_id == Resident.id)
            .where(CallAttempt.campaign_id == c2.id)
        ))
    assert not dialled & opted
    assert db.campaign_status(store, "c2")["final_outcomes"]["do_not_call"] == len(opted)


def test_the_lease_sweep_takes_over_a_dead_workers_claims_but_not_its_own(store: Store) -> None:
    info = make_campaign(store, n=10)
    db.set_state(store, "c1", "running", now=START)
    slot = START + dt.timedelta(minutes=30)  # 09:00 local
    day = slot.astimezone(SH).date()
    dead = db.claim_due(store, campaign_id=info.id, slots=[slot] * 3, local_dates=[day] * 3, due_by=START,
                        worker="dead", history_from=5)
    own = db.claim_due(store, campaign_id=info.id, slots=[slot] * 2, local_dates=[day] * 2, due_by=START,
                       worker="w1", history_from=5)
    assert len(dead) == 3 and len(own) == 2
    clock = VirtualClock(START + dt.timedelta(minutes=20))
    eng = engine(store, clock)
    assert eng.recover(include_own=False) == 0  # within the lease: the dead worker may still be calling
    clock.advance_to(START + dt.timedelta(minutes=31))
    assert eng.recover(include_own=False) == 3
    with store.session() as s:
        rows = {a.contact_id: a for a in s.scalars(select(CallAttempt))}
        contacts = {c.id: c for c in s.scalars(select(CampaignContact))}
    for c in dead:
        assert rows[c.contact_id].outcome == "interrupted"
        assert contacts[c.contact_id].state == "pending" and contacts[c.contact_id].claimed_by is None
    for c in own:  # this worker's own calls are live: left alone
        assert rows[c.contact_id].outcome == "dialing" and contacts[c.contact_id].state == "dialing"
    assert eng.recover() == 2  # at a restart, its own claims are interrupted too


def test_a_completed_screening_closes_callbacks_of_its_own_campaign_only(sqlite_store: Store) -> None:
    """One batch finishing resident R in c1 and resident S in c2 must not close R's callback in c2."""
    c1 = make_campaign(sqlite_store, "c1", n=2)
    c2 = make_campaign(sqlite_store, "c2", add=False)
    for name in ("c1", "c2"):
        db.set_state(sqlite_store, name, "running", now=START)
    with sqlite_store.session() as s:
        r_id, s_id = sorted(s.scalars(select(Resident.id)))
        for contact in s.scalars(select(CampaignContact)):
            contact.attempts = 1  # the callback came from an earlier attempt
            # one resident is never in two calls at once: R is called in c1, S in c2
            if (contact.campaign_id, contact.resident_id) in ((c1.id, s_id), (c2.id, r_id)):
                contact.state = "done"
        s.add(Escalation(resident_id=r_id, campaign_id=c2.id, kind="callback_requested", community="x",
                         priority=3, status="open", reasons=["居民要求稍后回电"], notes="", created_at=START))
    slot = START + dt.timedelta(minutes=30)
    day = slot.astimezone(SH).date()
    claims: dict[tuple[int, int], db.Claim] = {}
    for info in (c1, c2):
        for claim in db.claim_due(sqlite_store, campaign_id=info.id, slots=[slot] * 2, local_dates=[day] * 2,
                                  due_by=START, worker="w1", history_from=5):
            claims[(info.id, claim.resident_id)] = claim
    ended = slot + dt.timedelta(minutes=2)
    done = [db.Finish(claim=claims[key], outcome="answered", ended_at=ended, dialog_outcome="completed",
                      final_outcome="completed") for key in ((c1.id, r_id), (c2.id, s_id))]
    assert all(f.claim.attempt_no == 2 for f in done)
    assert db.finish_attempts(sqlite_store, done, worker="w1") == 2
    with sqlite_store.session() as s:
        status = s.scalar(select(Escalation.status).where(Escalation.resident_id == r_id,
                                                          Escalation.campaign_id == c2.id))
    assert status == "open"
