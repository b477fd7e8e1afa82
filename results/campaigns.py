"""All SQL of campaigns: creation and contact selection, lifecycle, claiming due contacts, attempts,
screening records, escalations, do-not-call, recovery after a crash, status and summaries.

Claiming is the multi-worker safe point:
- PostgreSQL: `SELECT ... FOR UPDATE OF campaign_contacts SKIP LOCKED`, then the rows are switched to
  `dialing` and their attempt rows inserted in the same transaction; a second worker skips locked rows
  and, after the commit, no longer sees them as pending.
- SQLite (single writer): one atomic `UPDATE ... WHERE id IN (SELECT ... ) AND state = 'pending'
  RETURNING`, so two processes can never claim the same row.

An attempt row (with its own channel id) is committed *before* the call is placed: after a crash the
row is still `dialing` and becomes `interrupted`; it is never dialled again.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import sqlite3
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import and_, delete, exists, func, insert, or_, select, update
from sqlalchemy.orm import Session, aliased
from sqlalchemy.sql.elements import ColumnElement

from common.masking import mask_phone
from results.donotcall import SOURCE_LABELS as DNC_SOURCE_LABELS
from results.donotcall import add_do_not_call
from results.donotcall import add_do_not_call_numbers as add_do_not_call_numbers
from results.models import (
    AuditLog,
    CallAttempt,
    Campaign,
    CampaignContact,
    CampaignState,
    ContactState,
    DoNotCall,
    Escalation,
    Resident,
    ScreeningRecord,
    StoreMeta,
    Trunk,
    Worker,
)
from results.store import Store

log = logging.getLogger(__name__)

TRANSITIONS: dict[str, frozenset[str]] = {
    CampaignState.draft: frozenset({CampaignState.running, CampaignState.cancelled}),
    CampaignState.running: frozenset({CampaignState.paused, CampaignState.completed, CampaignState.cancelled}),
    CampaignState.paused: frozenset({CampaignState.running, CampaignState.cancelled}),
    CampaignState.completed: frozenset(),
    CampaignState.cancelled: frozenset(),
}


class CampaignError(ValueError):
    """A campaign operation is not possible; the message says which campaign and why."""


class CampaignNotFound(CampaignError, LookupError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no campaign named {name!r}")


# ----------------------------------------------------------------------------- data passed around


@dataclass(frozen=True, slots=True)
class CampaignInfo:
    id: int
    name: str
    state: str
    script_path: str
    script_sha256: str
    timezone: str
    windows: dict[str, Any]
    holidays: list[Any]
    pacing: dict[str, Any]
    retry_policy: dict[str, Any]
    contact_filter: dict[str, Any]
    created_at: dt.datetime
    started_at: dt.datetime | None
    completed_at: dt.datetime | None
    script_text: str = ""
    trunk: str = "default"
    paused_reason: str = ""

    @classmethod
    def of(cls, c: Campaign) -> CampaignInfo:
        return cls(
            script_text=c.script_text or "", trunk=c.trunk or "default", paused_reason=c.paused_reason or "",
            id=c.id, name=c.name, state=c.state, script_path=c.script_path, script_sha256=c.script_sha256,
            timezone=c.timezone, windows=dict(c.windows or {}), holidays=list(c.holidays or []),
            pacing=dict(c.pacing or {}), retry_policy=dict(c.retry_policy or {}),
            contact_filter=dict(c.contact_filter or {}), created_at=c.created_at, started_at=c.started_at,
            completed_at=c.completed_at,
        )


@dataclass(frozen=True, slots=True)
class Claim:
    """A contact claimed for one attempt, with everything the call and the dialog need."""

    contact_id: int
    attempt_id: int
    channel_id: str
    campaign_id: int
    resident_id: int
    attempt_no: int  # total attempts including this one
    attempts_today: int  # including this one, in the campaign's local day
    started_at: dt.datetime
    name: str
    phone: str
    community: str
    address: str
    national_id: str | None
    arrival_date: dt.date | None
    tags: tuple[str, ...]
    last_outcome: str | None
    history: tuple[str, ...] = ()  # earlier attempt outcomes (only filled for a contact's last allowed attempt)
    trunk: str = "default"

    def contact_mapping(self) -> dict[str, Any]:
        """The resident as the dialog script sees it."""
        return {
            "name": self.name,
            "phone": self.phone,
            "community": self.community,
            "address": self.address,
            "arrival_date": self.arrival_date.isoformat() if self.arrival_date else None,
            "tags": list(self.tags),
        }


@dataclass(frozen=True, slots=True)
class EscalationData:
    kind: str
    priority: int
    reasons: tuple[str, ...]
    due_at: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class RecordData:
    outcome: str
    risk_level: str
    reasons: list[str]
    answers: dict[str, Any]
    uncertain: list[str]
    reminder_needed: bool
    callback_at: dt.datetime | None


NOT_DIALED = "not_dialed"  # Finish.outcome of an attempt that never reached the network: it is undone


@dataclass(slots=True)
class Finish:
    """Everything one finished attempt writes, decided by the engine's policy.

    `outcome == NOT_DIALED` (a system fault before the call reached the network, or our own crash before
    dialling): the attempt row is deleted and the contact's attempt counts restored; it is pending
    again at `next_attempt_at`. Not an attempt of the resident."""

    claim: Claim
    outcome: str
    ended_at: dt.datetime
    answered_at: dt.datetime | None = None
    dialog_outcome: str | None = None
    cause: str | None = None
    duration_s: float | None = None
    turns: list[Any] = field(default_factory=list)
    record: RecordData | None = None
    state: str = ContactState.done
    next_attempt_at: dt.datetime | None = None
    final_outcome: str | None = None
    escalations: list[EscalationData] = field(default_factory=list)
    do_not_call: bool = False
    do_not_call_source: str = "opt_out"  # results.donotcall.SOURCES


@dataclass(frozen=True, slots=True)
class Recovered:
    """A claim left behind by a crashed (or restarted) worker."""

    claim: Claim
    attempt_started_at: dt.datetime
    claimed_by: str = ""


# ----------------------------------------------------------------------------- creation, lifecycle


def _campaign(s: Session, name: str) -> Campaign:
    c = s.scalar(select(Campaign).where(Campaign.name == name))
    if c is None:
        raise CampaignNotFound(name)
    return c


def audit(s: Session, action: str, details: Mapping[str, Any], *, actor: str = "", at: dt.datetime | None = None) -> None:
    s.add(AuditLog(action=action, details=dict(details), actor=actor, at=at or dt.datetime.now(dt.UTC)))


def create_campaign(
    store: Store,
    *,
    name: str,
    script_path: str,
    script_sha256: str = "",
    timezone: str = "Asia/Shanghai",
    windows: Mapping[str, Any],
    holidays: Sequence[str] = (),
    pacing: Mapping[str, Any],
    retry_policy: Mapping[str, Any],
    source_files: Sequence[str] = (),
    communities: Sequence[str] = (),
    tags: Sequence[str] = (),
    now: dt.datetime,
    actor: str = "",
    script_text: str = "",
    trunk: str = "default",
) -> tuple[CampaignInfo, int]:
    """Create a draft campaign with its contact set; returns (campaign, number of contacts).

    Contacts are the residents matching every given filter (imported file names, communities, tags;
    none = all residents). Do-not-call numbers are included but never dialled (skipped on start).

    Raises:
        CampaignError: the name is taken or no resident matches.
    """
    if not name.strip():
        raise CampaignError("a campaign needs a name")
    contact_filter = {"source_files": list(source_files), "communities": list(communities), "tags": list(tags)}
    with store.session() as s:
        if s.scalar(select(Campaign.id).where(Campaign.name == name)) is not None:
            raise CampaignError(f"a campaign named {name!r} already exists")
        q = select(Resident.id, Resident.tags)
        if source_files:
            stored = [f for (f,) in s.execute(select(Resident.source_file).distinct())]
            matched = _match_source_files(stored, source_files)
            if not matched:
                known = ", ".join(sorted(stored)[:10]) or "none"
                raise CampaignError(
                    f"campaign {name!r}: no residents were imported from {', '.join(source_files)} "
                    f"(imported files: {known})"
                )
            q = q.where(Resident.source_file.in_(matched))
        if communities:
            q = q.where(Resident.community.in_(list(communities)))
        wanted = set(tags)
        ids = [rid for rid, rtags in s.execute(q.order_by(Resident.id)) if not wanted or wanted & set(rtags or [])]
        if not ids:
            raise CampaignError(f"campaign {name!r}: no resident matches the filter {contact_filter}")
        camp = Campaign(
            name=name, script_path=script_path, script_sha256=script_sha256, state=CampaignState.draft,
            timezone=timezone, windows=dict(windows), holidays=list(holidays), pacing=dict(pacing),
            retry_policy=dict(retry_policy), contact_filter=contact_filter, created_at=now,
            script_text=script_text, trunk=trunk or "default",
        )
        s.add(camp)
        s.flush()
        for i in range(0, len(ids), 5000):
            s.execute(
                insert(CampaignContact),
                [{"campaign_id": camp.id, "resident_id": rid, "state": ContactState.pending, "attempts": 0,
                  "attempts_today": 0, "next_attempt_at": now} for rid in ids[i : i + 5000]],
            )
        audit(s, "campaign.create", {"campaign": name, "contacts": len(ids), "filter": contact_filter}, actor=actor, at=now)
        info = CampaignInfo.of(camp)
    return info, len(ids)


def _match_source_files(stored: Sequence[str], wanted: Sequence[str]) -> list[str]:
    """The stored `source_file` values that name one of the wanted files.

    Imports record the path as given on their command line; `--file` may name the file the same way,
    by its absolute path, or by its bare file name (`residents.xlsx` matches `/data/2026/residents.xlsx`).
    """
    out: list[str] = []
    for s in stored:
        for w in wanted:
            if s == w or (os.sep not in w and os.path.basename(s) == w) or (
                os.sep in w and os.path.abspath(s) == os.path.abspath(w)
            ):
                out.append(s)
                break
    return out


def get_campaign(store: Store, name: str) -> CampaignInfo:
    with store.session() as s:
        return CampaignInfo.of(_campaign(s, name))


def list_campaigns(store: Store) -> list[CampaignInfo]:
    with store.session() as s:
        return [CampaignInfo.of(c) for c in s.scalars(select(Campaign).order_by(Campaign.id))]


def set_state(
    store: Store,
    name: str,
    new_state: str,
    *,
    now: dt.datetime,
    actor: str = "",
    from_states: Sequence[str] | None = None,
    script_text: str | None = None,
) -> CampaignInfo:
    """Move a campaign along draft → running ⇄ paused → completed/cancelled (one transaction).

    Starting skips do-not-call contacts; cancelling skips every contact not yet finished (calls in
    flight end normally and are then not retried). `from_states` narrows the allowed current states
    (`start` only from draft, `resume` only from paused).

    Raises:
        CampaignNotFound, CampaignError: unknown campaign or a transition that is not allowed.
    """
    with store.session() as s:
        camp = s.scalar(select(Campaign).where(Campaign.name == name).with_for_update())
        if camp is None:
            raise CampaignNotFound(name)
        old = camp.state
        if new_state not in TRANSITIONS.get(old, frozenset()):
            allowed = ", ".join(sorted(TRANSITIONS.get(old, frozenset()))) or "none"
            raise CampaignError(f"campaign {name!r} is {old}; it cannot become {new_state} (allowed: {allowed})")
        if from_states is not None and old not in from_states:
            raise CampaignError(
                f"campaign {name!r} is {old}; this command only applies to a {' or '.join(from_states)} campaign"
            )
        camp.state = new_state
        if new_state == CampaignState.running:
            camp.paused_reason = ""
            if script_text and not camp.script_text:
                camp.script_text = script_text  # campaigns created before snapshots: taken at start
        if new_state == CampaignState.running and camp.started_at is None:
            camp.started_at = now
            s.execute(
                update(CampaignContact)
                .where(CampaignContact.campaign_id == camp.id, CampaignContact.state == ContactState.pending)
                .values(next_attempt_at=now)
            )
        if new_state == CampaignState.running:
            _skip_do_not_call(s, camp.id)
        if new_state == CampaignState.cancelled:
            s.execute(
                update(CampaignContact)
                .where(CampaignContact.campaign_id == camp.id, CampaignContact.state == ContactState.pending)
                .values(state=ContactState.skipped, final_outcome="cancelled")
            )
            camp.completed_at = now
        if new_state == CampaignState.completed:
            camp.completed_at = now
        audit(s, f"campaign.{new_state}", {"campaign": name, "from": old}, actor=actor, at=now)
        return CampaignInfo.of(camp)


def running_campaigns(store: Store, names: Sequence[str] = ()) -> list[CampaignInfo]:
    with store.session() as s:
        q = select(Campaign).where(Campaign.state == CampaignState.running)
        if names:
            q = q.where(Campaign.name.in_(list(names)))
        return [CampaignInfo.of(c) for c in s.scalars(q.order_by(Campaign.id))]


def _skip_do_not_call(s: Session, campaign_id: int) -> int:
    dnc = select(Resident.id).join(DoNotCall, DoNotCall.phone == Resident.phone)
    res = s.execute(
        update(CampaignContact)
        .where(
            CampaignContact.campaign_id == campaign_id,
            CampaignContact.state == ContactState.pending,
            CampaignContact.resident_id.in_(dnc),
        )
        .values(state=ContactState.skipped, final_outcome="do_not_call", next_attempt_at=None)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(res, "rowcount", 0) or 0)


def complete_if_done(store: Store, campaign_id: int, *, now: dt.datetime) -> bool:
    """Skip do-not-call contacts; mark a running campaign completed when no contact is pending or dialing."""
    with store.session() as s:
        _skip_do_not_call(s, campaign_id)
        busy = s.scalar(
            select(func.count())
            .select_from(CampaignContact)
            .where(
                CampaignContact.campaign_id == campaign_id,
                CampaignContact.state.in_([ContactState.pending, ContactState.dialing]),
            )
        )
        if busy:
            return False
        res = s.execute(
            update(Campaign)
            .where(Campaign.id == campaign_id, Campaign.state == CampaignState.running)
            .values(state=CampaignState.completed, completed_at=now)
        )
        if getattr(res, "rowcount", 0):
            audit(s, "campaign.completed", {"campaign_id": campaign_id}, at=now)
            return True
        return False


def next_due_at(store: Store, campaign_ids: Sequence[int]) -> dt.datetime | None:
    """The earliest next_attempt_at of a pending contact (not on the do-not-call list) in these campaigns."""
    if not campaign_ids:
        return None
    with store.session() as s:
        return s.scalar(
            select(func.min(CampaignContact.next_attempt_at)).where(
                CampaignContact.campaign_id.in_(list(campaign_ids)), CampaignContact.state == ContactState.pending
            )
        )


def latest_activity_at(store: Store) -> dt.datetime | None:
    """The newest time any campaign activity was stored (a virtual clock resumes from here)."""
    with store.session() as s:
        times = [
            s.scalar(select(func.max(CallAttempt.started_at))),
            s.scalar(select(func.max(CallAttempt.ended_at))),
            s.scalar(select(func.max(Campaign.started_at))),
            s.scalar(select(func.max(Campaign.created_at))),
        ]
    found = [t for t in times if t is not None]
    return max(found) if found else None


# ----------------------------------------------------------------------------- claiming


def claim_due(
    store: Store,
    *,
    campaign_id: int,
    slots: Sequence[dt.datetime],
    local_dates: Sequence[dt.date],
    due_by: dt.datetime,
    worker: str,
    history_from: int,
) -> list[Claim]:
    """Claim up to len(slots) due pending contacts and start one attempt for each at slots[i].

    `local_dates[i]` is the campaign-local date of slots[i] (for the per-day attempt count);
    `history_from`: attempt numbers >= this get the earlier outcomes (for the unreachable reason).
    Contacts on the do-not-call list, and residents in a call of any campaign right now, are never
    claimed. One transaction. (The dialer uses `admit_and_claim`, which also applies the trunk limits.)
    """
    if not slots:
        return []
    with store.session() as s:
        camp_state = s.scalar(select(Campaign.state).where(Campaign.id == campaign_id))
        if camp_state != CampaignState.running:
            return []
        return _claim(s, store, campaign_id=campaign_id, slots=slots, local_dates=local_dates, due_by=due_by,
                      worker=worker, history_from=history_from)


@dataclass(frozen=True, slots=True)
class Admission:
    """What one claim may take, decided by the engine from the campaign's settings and the clock."""

    campaign_id: int
    trunk: str
    want: int  # at most this many calls (the engine's own free lines)
    now: dt.datetime
    until: dt.datetime  # plan starts before this instant
    camp_max_lines: int
    camp_cps: float
    max_per_day: int  # per phone, across campaigns
    max_total: int  # per phone, across the campaigns that are running or paused
    day_start: dt.datetime  # start of the campaign-local day of `now` (UTC)
    next_day_open: dt.datetime  # where a phone at its daily cap goes
    next_open: Callable[[dt.datetime], dt.datetime]  # the calling windows: next open instant >= t
    local_date: Callable[[dt.datetime], dt.date]
    history_from: int = 5
    first_slot: dt.datetime | None = None  # no start before this (the engine's lead for its prepare step)


def ensure_trunk(s: Session, name: str, now: dt.datetime) -> Trunk:
    t = s.get(Trunk, name)
    if t is None:
        t = Trunk(name=name, channel="", max_channels=30, calls_per_second=2.0, breaker_state="closed",
                  breaker_reason="", breaker_trips=0, updated_at=now)
        s.add(t)
        s.flush()
    return t


def set_trunks(store: Store, specs: Sequence[Mapping[str, Any]], *, now: dt.datetime) -> None:
    """Store the configured trunks' limits (name, channel, max_channels, calls_per_second). Workers starting
    at once may race to insert the same trunk row: the loser retries once, finding the row."""
    from sqlalchemy.exc import IntegrityError

    try:
        _set_trunks(store, specs, now=now)
    except IntegrityError:
        _set_trunks(store, specs, now=now)


def _set_trunks(store: Store, specs: Sequence[Mapping[str, Any]], *, now: dt.datetime) -> None:
    with store.session() as s:
        for spec in specs:
            t = ensure_trunk(s, str(spec["name"]), now)
            t.channel = str(spec.get("channel", "") or "")
            t.max_channels = int(spec["max_channels"])
            t.calls_per_second = float(spec["calls_per_second"])
            t.updated_at = now


def admit_and_claim(store: Store, adm: Admission, *, worker: str) -> list[Claim]:
    """Admission and claim in one transaction, under a lock on the trunk rows (every worker and
    campaign): at most the trunk's and the campaign's free lines (calls `dialing` in the store), start
    instants paced by the trunk's and the campaign's calls per second (one shared bucket each, kept in
    the store), only inside the calling windows. A phone already in a call, at its daily cap or at its
    total cap (across campaigns) is not claimed; at the daily cap it moves to the next day, at the
    total cap its contact ends `unreachable`."""
    if adm.want <= 0:
        return []
    with store.session() as s:
        if store.dialect == "postgresql":
            s.execute(select(Trunk.name).order_by(Trunk.name).with_for_update())  # all trunks: one resident, one call
        else:  # take SQLite's write lock first, so what is read below is current
            s.execute(update(Trunk).where(Trunk.name == adm.trunk).values(updated_at=adm.now))
        trunk = ensure_trunk(s, adm.trunk, adm.now)
        camp = s.get(Campaign, adm.campaign_id)
        if camp is None or camp.state != CampaignState.running:
            return []
        if trunk.breaker_state == "open" and trunk.breaker_until is not None and trunk.breaker_until > adm.now:
            return []
        _cap_phones(s, adm)
        dialing_on = (
            select(func.count()).select_from(CampaignContact).join(Campaign, Campaign.id == CampaignContact.campaign_id)
        )
        trunk_busy = int(s.scalar(dialing_on.where(Campaign.trunk == adm.trunk,
                                                   CampaignContact.state == ContactState.dialing)) or 0)
        camp_busy = int(s.scalar(select(func.count()).select_from(CampaignContact).where(
            CampaignContact.campaign_id == adm.campaign_id, CampaignContact.state == ContactState.dialing)) or 0)
        n = min(adm.want, trunk.max_channels - trunk_busy, adm.camp_max_lines - camp_busy)
        if n <= 0:
            return []
        t_gap = 1.0 / max(trunk.calls_per_second, 1e-6)
        c_gap = 1.0 / max(adm.camp_cps, 1e-6)
        earliest = max(adm.now, adm.first_slot or adm.now)
        t_next = max(earliest, trunk.next_slot_at or earliest)
        c_next = max(earliest, camp.next_slot_at or earliest)
        slots: list[dt.datetime] = []
        while len(slots) < n:
            t = adm.next_open(max(t_next, c_next))
            if t >= adm.until:
                break
            slots.append(t)
            t_next = t + dt.timedelta(seconds=t_gap)
            c_next = t + dt.timedelta(seconds=c_gap)
        if not slots:
            return []
        claims = _claim(
            s, store, campaign_id=adm.campaign_id, slots=slots, local_dates=[adm.local_date(t) for t in slots],
            due_by=adm.now, worker=worker, history_from=adm.history_from, day_start=adm.day_start,
            max_per_day=adm.max_per_day, trunk=adm.trunk,
        )
        if claims:
            last = claims[-1].started_at
            trunk.next_slot_at = last + dt.timedelta(seconds=t_gap)
            camp.next_slot_at = last + dt.timedelta(seconds=c_gap)
        return claims


def _phone_attempts(day_start: dt.datetime | None, *, overlapping: dt.datetime | None = None) -> Any:
    """Attempts of the contact's resident in any campaign: since `day_start` (the daily cap), or else
    (the total cap) in the campaigns that ran at the same time as one started at `overlapping`: those
    still running or paused, and those that ended after it started. A campaign that ended before
    another began leaves the later one a fresh budget; one that completed meanwhile does not."""
    q = select(func.count()).select_from(CallAttempt).where(
        CallAttempt.resident_id == CampaignContact.resident_id, CallAttempt.outcome != "interrupted"
    )  # our own crashes are not the resident's attempts
    if day_start is not None:
        return q.where(CallAttempt.started_at >= day_start).scalar_subquery()
    alive: ColumnElement[bool] = Campaign.state.in_([CampaignState.running, CampaignState.paused])
    if overlapping is not None:
        alive = or_(alive, Campaign.completed_at >= overlapping)
    return q.where(CallAttempt.campaign_id.in_(select(Campaign.id).where(alive))).scalar_subquery()


def _cap_phones(s: Session, adm: Admission) -> None:
    """Due contacts whose phone reached its daily cap (any campaign) wait for the next day; at the total
    cap across active campaigns they end `unreachable` with an escalation for their community."""
    due = and_(
        CampaignContact.campaign_id == adm.campaign_id,
        CampaignContact.state == ContactState.pending,
        CampaignContact.next_attempt_at <= adm.now,
    )
    s.execute(
        update(CampaignContact)
        .where(due, _phone_attempts(adm.day_start) >= adm.max_per_day)
        .values(next_attempt_at=adm.next_day_open)
        .execution_options(synchronize_session=False)
    )
    camp = s.get(Campaign, adm.campaign_id)
    in_all = _phone_attempts(None, overlapping=camp.started_at if camp is not None else None)
    capped = s.execute(
        select(CampaignContact.id, CampaignContact.resident_id, Resident.community)
        .join(Resident, Resident.id == CampaignContact.resident_id)
        .where(due, CampaignContact.attempts < in_all, in_all >= adm.max_total)
    ).all()
    if not capped:
        return
    s.execute(
        update(CampaignContact),
        [{"id": cid, "state": ContactState.done, "final_outcome": "unreachable", "next_attempt_at": None}
         for cid, _, _ in capped],
    )
    s.execute(insert(Escalation), [
        {"resident_id": rid, "campaign_id": adm.campaign_id, "record_id": None, "kind": "unreachable",
         "community": community, "priority": 3, "status": "open", "reasons": ["多个活动合计呼叫次数已达上限，未完成筛查"],
         "notes": "", "due_at": None, "created_at": adm.now}
        for _, rid, community in capped
    ])


def _claim(
    s: Session,
    store: Store,
    *,
    campaign_id: int,
    slots: Sequence[dt.datetime],
    local_dates: Sequence[dt.date],
    due_by: dt.datetime,
    worker: str,
    history_from: int,
    day_start: dt.datetime | None = None,
    max_per_day: int | None = None,
    trunk: str = "default",
) -> list[Claim]:
    n = len(slots)
    dnc = exists().where(DoNotCall.phone == Resident.phone)
    other = aliased(CampaignContact)
    in_call = exists().where(other.resident_id == CampaignContact.resident_id, other.state == ContactState.dialing)
    conds = [
        CampaignContact.campaign_id == campaign_id,
        CampaignContact.state == ContactState.pending,
        CampaignContact.next_attempt_at <= due_by,
        ~dnc,
        ~in_call,
    ]
    if day_start is not None and max_per_day is not None:
        conds.append(_phone_attempts(day_start) < max_per_day)
    due = (
        select(CampaignContact.id)
        .join(Resident, Resident.id == CampaignContact.resident_id)
        .where(*conds)
        .order_by(CampaignContact.next_attempt_at, CampaignContact.id)
        .limit(n)
    )
    if store.dialect == "postgresql":
        ids = list(s.scalars(due.with_for_update(skip_locked=True, of=CampaignContact)))
        if not ids:
            return []
        rows = s.execute(
            update(CampaignContact)
            .where(CampaignContact.id.in_(ids), CampaignContact.state == ContactState.pending)
            .values(state=ContactState.dialing, claimed_by=worker, claimed_at=due_by)
            .returning(CampaignContact.id)
        ).all()
    else:
        rows = s.execute(
            update(CampaignContact)
            .where(CampaignContact.id.in_(due.scalar_subquery()), CampaignContact.state == ContactState.pending)
            .values(state=ContactState.dialing, claimed_by=worker, claimed_at=due_by)
            .returning(CampaignContact.id)
            .execution_options(synchronize_session=False)
        ).all()
    claimed = [r[0] for r in rows]
    if not claimed:
        return []
    data = s.execute(
        select(
            CampaignContact.id, CampaignContact.resident_id, CampaignContact.attempts,
            CampaignContact.attempts_today, CampaignContact.attempts_day, CampaignContact.last_outcome,
            CampaignContact.next_attempt_at, Resident.name, Resident.phone, Resident.community,
            Resident.address, Resident.national_id, Resident.arrival_date, Resident.tags,
        )
        .join(Resident, Resident.id == CampaignContact.resident_id)
        .where(CampaignContact.id.in_(claimed))
        .order_by(CampaignContact.next_attempt_at, CampaignContact.id)
    ).all()
    phone_today: dict[int, int] = {}
    if day_start is not None:
        phone_today = dict(s.execute(
            select(CallAttempt.resident_id, func.count())
            .where(CallAttempt.resident_id.in_([r.resident_id for r in data]), CallAttempt.started_at >= day_start,
                   CallAttempt.campaign_id != campaign_id, CallAttempt.outcome != "interrupted")
            .group_by(CallAttempt.resident_id)
        ).all())
    # attempt rows so far (interrupted ones included: they are numbered but not counted)
    seqs: dict[int, int] = dict(s.execute(
        select(CallAttempt.contact_id, func.count()).where(CallAttempt.contact_id.in_(claimed))
        .group_by(CallAttempt.contact_id)
    ).all())
    contact_updates: list[dict[str, Any]] = []
    attempt_rows: list[dict[str, Any]] = []
    pending: list[tuple[Any, int, int, str, dt.datetime]] = []
    for row, slot, day in zip(data, slots, local_dates, strict=False):
        attempts = row.attempts + 1
        today = row.attempts_today + 1 if row.attempts_day == day else 1
        channel_id = str(uuid.uuid4())
        contact_updates.append({"id": row.id, "attempts": attempts, "attempts_today": today, "attempts_day": day})
        attempt_rows.append({
            "campaign_id": campaign_id, "contact_id": row.id, "resident_id": row.resident_id,
            "channel_id": channel_id, "attempt_no": int(seqs.get(row.id, 0)) + 1, "worker": worker, "started_at": slot,
            "outcome": "dialing", "turns": [],
        })
        # the policy sees the phone's attempts of the day across campaigns
        pending.append((row, attempts, today + int(phone_today.get(row.resident_id, 0)), channel_id, slot))
    s.execute(update(CampaignContact), contact_updates)
    ids_by_channel = {
        ch: aid for aid, ch in s.execute(
            insert(CallAttempt).returning(CallAttempt.id, CallAttempt.channel_id, sort_by_parameter_order=True),
            attempt_rows,
        )
    }
    need_history = [row.id for row, attempts, *_ in pending if attempts >= history_from and attempts > 1]
    history: dict[int, list[str]] = {}
    if need_history:
        for cid, outcome, dialog_outcome in s.execute(
            select(CallAttempt.contact_id, CallAttempt.outcome, CallAttempt.dialog_outcome)
            .where(CallAttempt.contact_id.in_(need_history), CallAttempt.outcome != "dialing")
            .order_by(CallAttempt.contact_id, CallAttempt.attempt_no)
        ):
            shown = dialog_outcome if outcome == "answered" and dialog_outcome else outcome
            history.setdefault(cid, []).append(shown)
    claims = [
        Claim(
            contact_id=row.id, attempt_id=ids_by_channel[ch], channel_id=ch, campaign_id=campaign_id,
            resident_id=row.resident_id, attempt_no=attempts, attempts_today=today, started_at=slot,
            name=row.name, phone=row.phone, community=row.community, address=row.address,
            national_id=row.national_id, arrival_date=row.arrival_date, tags=tuple(row.tags or ()),
            last_outcome=row.last_outcome, history=tuple(history.get(row.id, ())), trunk=trunk,
        )
        for row, attempts, today, ch, slot in pending
    ]
    if log.isEnabledFor(logging.DEBUG):
        for c in claims:
            log.debug("claimed %s attempt %d (%s) for %s", mask_phone(c.phone), c.attempt_no, c.channel_id, worker)
    return claims


# ----------------------------------------------------------------------------- finishing


def finish_attempts(store: Store, finishes: Sequence[Finish], *, worker: str) -> int:
    """Write finished attempts in one transaction: attempt rows, screening records, escalations,
    do-not-call entries and the contacts' next state. Attempts no longer `dialing` under this worker
    (taken over by a recovery) are left alone. Returns how many were written."""
    if not finishes:
        return 0
    with store.session() as s:
        ids = [f.claim.attempt_id for f in finishes]
        live: set[int] = set()
        for i in range(0, len(ids), 1000):
            live.update(
                s.scalars(
                    select(CallAttempt.id).where(
                        CallAttempt.id.in_(ids[i : i + 1000]), CallAttempt.outcome == "dialing",
                        CallAttempt.worker == worker,
                    )
                )
            )
        todo = [f for f in finishes if f.claim.attempt_id in live]
        if len(todo) < len(finishes):
            log.warning("%d finished attempts were taken over by a recovery; not written", len(finishes) - len(todo))
        if not todo:
            return 0
        campaign_ids = {f.claim.campaign_id for f in todo}
        cancelled = set(
            s.scalars(select(Campaign.id).where(Campaign.id.in_(campaign_ids), Campaign.state == CampaignState.cancelled))
        )
        _write_finishes(s, todo, cancelled)
    return len(todo)


def _release(s: Session, undo: Sequence[Finish], cancelled: set[int]) -> None:
    """Attempts that never reached the network: gone, and the contact is as before the claim."""
    s.execute(delete(CallAttempt).where(CallAttempt.id.in_([f.claim.attempt_id for f in undo]))
              .execution_options(synchronize_session=False))
    for f in undo:
        values: dict[str, Any] = {
            "state": ContactState.pending, "next_attempt_at": f.next_attempt_at, "claimed_by": None,
            "claimed_at": None, "attempts": CampaignContact.attempts - 1,
            "attempts_today": func.max(CampaignContact.attempts_today - 1, 0)
            if s.get_bind().dialect.name == "sqlite" else func.greatest(CampaignContact.attempts_today - 1, 0),
        }
        if f.claim.campaign_id in cancelled:
            values.update(state=ContactState.skipped, final_outcome="cancelled", next_attempt_at=None)
        s.execute(update(CampaignContact).where(CampaignContact.id == f.claim.contact_id).values(**values))


def _write_finishes(s: Session, todo: Sequence[Finish], cancelled: set[int]) -> None:
    undo = [f for f in todo if f.outcome == NOT_DIALED]
    if undo:
        _release(s, undo, cancelled)
        todo = [f for f in todo if f.outcome != NOT_DIALED]
        if not todo:
            return
    s.execute(
        update(CallAttempt),
        [
            {
                "id": f.claim.attempt_id, "outcome": f.outcome, "answered_at": f.answered_at, "ended_at": f.ended_at,
                "dialog_outcome": f.dialog_outcome, "hangup_cause": f.cause, "duration_s": f.duration_s,
                "turns": f.turns,
            }
            for f in todo
        ],
    )
    with_record = [f for f in todo if f.record is not None]
    record_ids: dict[int, int] = {}
    if with_record:
        rows = []
        for f in with_record:
            r = f.record
            assert r is not None
            rows.append({
                "attempt_id": f.claim.attempt_id, "campaign_id": f.claim.campaign_id,
                "resident_id": f.claim.resident_id, "outcome": r.outcome, "risk_level": r.risk_level,
                "reasons": r.reasons, "answers": r.answers, "uncertain": r.uncertain,
                "reminder_needed": r.reminder_needed, "callback_at": r.callback_at, "created_at": f.ended_at,
            })
        for rid, aid in s.execute(
            insert(ScreeningRecord).returning(ScreeningRecord.id, ScreeningRecord.attempt_id, sort_by_parameter_order=True),
            rows,
        ):
            record_ids[aid] = rid
    contact_rows = []
    for f in todo:
        state, final = f.state, f.final_outcome
        nxt = f.next_attempt_at if state == ContactState.pending else None
        if state == ContactState.pending and f.claim.campaign_id in cancelled:
            state, final, nxt = ContactState.skipped, "cancelled", None
        contact_rows.append({
            "id": f.claim.contact_id, "state": state, "final_outcome": final, "next_attempt_at": nxt,
            "last_attempt_at": f.claim.started_at, "last_outcome": f.dialog_outcome or f.outcome,
            "claimed_by": None, "claimed_at": None,
        })
    s.execute(update(CampaignContact), contact_rows)
    cut = [f.claim.contact_id for f in todo if f.outcome == "interrupted"]
    if cut:  # our crash or shutdown cut these calls: not charged to the residents' attempt caps
        dialect = s.get_bind().dialect.name
        floor = func.max if dialect == "sqlite" else func.greatest
        s.execute(
            update(CampaignContact).where(CampaignContact.id.in_(cut)).values(
                attempts=floor(CampaignContact.attempts - 1, 0),
                attempts_today=floor(CampaignContact.attempts_today - 1, 0),
            ).execution_options(synchronize_session=False)
        )
    esc_rows = [
        {
            "resident_id": f.claim.resident_id, "campaign_id": f.claim.campaign_id,
            "record_id": record_ids.get(f.claim.attempt_id), "kind": e.kind, "community": f.claim.community,
            "priority": e.priority, "status": "open", "reasons": list(e.reasons), "notes": "",
            "due_at": e.due_at, "created_at": f.ended_at,
        }
        for f in todo
        for e in f.escalations
    ]
    if esc_rows:
        s.execute(insert(Escalation), esc_rows)
    # A screening completed by the robot settles the callbacks that resident asked for in this campaign.
    done_after_callback = [f for f in todo if f.dialog_outcome == "completed" and f.claim.attempt_no > 1]
    by_campaign: dict[int, list[Finish]] = {}
    for f in done_after_callback:
        by_campaign.setdefault(f.claim.campaign_id, []).append(f)
    for campaign_id, done in by_campaign.items():  # per campaign: a resident's callback in another stays open
        s.execute(
            update(Escalation)
            .where(
                Escalation.resident_id.in_([f.claim.resident_id for f in done]),
                Escalation.campaign_id == campaign_id,
                Escalation.kind == "callback_requested",
                Escalation.status == "open",
            )
            .values(status="closed", result="robot_called_back", closed_at=max(f.ended_at for f in done))
            .execution_options(synchronize_session=False)
        )
    for f in todo:
        if f.do_not_call:
            add_do_not_call(s, f.claim.phone, reason=DNC_SOURCE_LABELS.get(f.do_not_call_source, f.do_not_call_source),
                            source=f.do_not_call_source, at=f.ended_at)


# ----------------------------------------------------------------------------- recovery


def dialing_channels(store: Store, *, workers: Sequence[str]) -> list[str]:
    """Channel ids of the attempts still `dialing` whose contact one of `workers` claimed (what a
    restarted or recovering worker asks the telephony backend about before it recovers them)."""
    if not workers:
        return []
    with store.session() as s:
        return list(s.scalars(
            select(CallAttempt.channel_id)
            .join(CampaignContact, CampaignContact.id == CallAttempt.contact_id)
            .where(CallAttempt.outcome == "dialing", CampaignContact.state == ContactState.dialing,
                   CampaignContact.claimed_by.in_(list(workers)))
        ))


def recover_claims(
    store: Store,
    *,
    worker: str,
    stale_before: dt.datetime,
    now: dt.datetime,
    decide: Callable[[Recovered], Finish],
    include_own: bool = True,
    dead: Sequence[str] = (),
) -> int:
    """Route the attempts left `dialing` by this worker (`include_own`, at its start), by the `dead`
    workers (see `dead_workers`), and by unregistered workers whose claim is older than `stale_before`
    (a lease): `decide` (the engine's policy) says how each ended — interrupted, or never dialled
    (`NOT_DIALED`, undone). Claims of live workers are never touched. One transaction."""
    with store.session() as s:
        stale = CampaignContact.claimed_at < stale_before
        unregistered = or_(CampaignContact.claimed_by.is_(None), CampaignContact.claimed_by.not_in(select(Worker.id)))
        parts = [and_(stale, unregistered, or_(CampaignContact.claimed_by.is_(None),
                                               CampaignContact.claimed_by != worker))]
        if include_own:
            parts.append(CampaignContact.claimed_by == worker)
        if dead:
            parts.append(CampaignContact.claimed_by.in_(list(dead)))
        who = or_(*parts)
        q = (
            select(CampaignContact, Resident)
            .join(Resident, Resident.id == CampaignContact.resident_id)
            .where(CampaignContact.state == ContactState.dialing, who)
        )
        if store.dialect == "postgresql":
            q = q.with_for_update(skip_locked=True, of=CampaignContact)
        pairs = s.execute(q).all()
        if not pairs:
            return 0
        finishes: list[Finish] = []
        for contact, res in pairs:
            att = s.scalar(
                select(CallAttempt)
                .where(CallAttempt.contact_id == contact.id, CallAttempt.outcome == "dialing")
                .order_by(CallAttempt.attempt_no.desc())
                .limit(1)
            )
            history = [
                (d if o == "answered" and d else o)
                for o, d in s.execute(
                    select(CallAttempt.outcome, CallAttempt.dialog_outcome)
                    .where(CallAttempt.contact_id == contact.id, CallAttempt.outcome != "dialing")
                    .order_by(CallAttempt.attempt_no)
                )
            ]
            if att is None:  # claimed, but the attempt row is missing: cannot happen (same transaction)
                log.error("contact %d was dialing without an attempt row; releasing it", contact.id)
                contact.state, contact.claimed_by, contact.claimed_at = ContactState.pending, None, None
                continue
            claim = Claim(
                contact_id=contact.id, attempt_id=att.id, channel_id=att.channel_id, campaign_id=contact.campaign_id,
                resident_id=contact.resident_id, attempt_no=contact.attempts, attempts_today=contact.attempts_today,
                started_at=att.started_at, name=res.name, phone=res.phone, community=res.community,
                address=res.address, national_id=res.national_id, arrival_date=res.arrival_date,
                tags=tuple(res.tags or ()), last_outcome=contact.last_outcome, history=tuple(history),
            )
            f = decide(Recovered(claim=claim, attempt_started_at=att.started_at, claimed_by=contact.claimed_by or ""))
            att.worker = worker  # the recovering worker now owns the row, so the write below applies
            finishes.append(f)
        s.flush()
        campaign_ids = {f.claim.campaign_id for f in finishes}
        cancelled = set(
            s.scalars(select(Campaign.id).where(Campaign.id.in_(campaign_ids), Campaign.state == CampaignState.cancelled))
        )
        _write_finishes(s, finishes, cancelled)
        undone = sum(1 for f in finishes if f.outcome == NOT_DIALED)
        audit(s, "campaign.recover", {"worker": worker, "interrupted": len(finishes) - undone,
                                      "never_dialled": undone}, at=now)
    log.warning("recovered %d interrupted attempts, undid %d never dialled (worker %s)",
                len(finishes) - undone, undone, worker)
    return len(finishes)


# ----------------------------------------------------------------------------- workers, breaker, pauses


class WorkerConflict(CampaignError):
    """Another live process runs under this worker id."""


def register_worker(
    store: Store, worker_id: str, *, host: str, pid: int, now: dt.datetime, stale_s: float,
    is_alive: Callable[[int], bool],
) -> None:
    """Register (or take over the dead row of) worker `worker_id`, heartbeat `now` (wall clock).

    Raises:
        WorkerConflict: a live process already runs under that id (same host and its pid alive, or
            another host with a fresh heartbeat).
    """
    with store.session() as s:
        w = s.get(Worker, worker_id, with_for_update=store.dialect == "postgresql")
        if w is not None and w.state == "running" and w.pid != pid:
            fresh = w.heartbeat_at > now - dt.timedelta(seconds=stale_s)
            alive = is_alive(w.pid) if w.host == host else fresh
            if alive:
                raise WorkerConflict(
                    f"worker {worker_id!r} is already running (pid {w.pid} on {w.host}, heartbeat "
                    f"{w.heartbeat_at.isoformat(timespec='seconds')}); give this process another --worker name"
                )
        if w is None:
            s.add(Worker(id=worker_id, host=host, pid=pid, state="running", started_at=now, heartbeat_at=now,
                         lines_in_use=0, status={}))
        else:
            w.host, w.pid, w.state, w.started_at, w.heartbeat_at, w.lines_in_use, w.status = (
                host, pid, "running", now, now, 0, {})
        audit(s, "worker.start", {"worker": worker_id, "host": host, "pid": pid}, at=now)


def heartbeat(
    store: Store, worker_id: str, *, now: dt.datetime, clock_now: dt.datetime, lines_in_use: int,
    status: Mapping[str, Any],
) -> int:
    """The worker is alive: heartbeat `now` (wall clock), its status board, and the leases of its
    claims extended to `clock_now` (the campaign clock). Returns how many leases were extended."""
    with store.session() as s:
        s.execute(update(Worker).where(Worker.id == worker_id).values(
            heartbeat_at=now, lines_in_use=lines_in_use, status=dict(status), state="running"))
        res = s.execute(
            update(CampaignContact)
            .where(CampaignContact.claimed_by == worker_id, CampaignContact.state == ContactState.dialing)
            .values(claimed_at=clock_now)
            .execution_options(synchronize_session=False)
        )
        return int(getattr(res, "rowcount", 0) or 0)


def stop_worker(store: Store, worker_id: str, *, now: dt.datetime) -> None:
    with store.session() as s:
        s.execute(update(Worker).where(Worker.id == worker_id).values(state="stopped", heartbeat_at=now,
                                                                      lines_in_use=0))
        audit(s, "worker.stop", {"worker": worker_id}, at=now)


def dead_workers(
    store: Store, *, now: dt.datetime, stale_s: float, host: str, is_alive: Callable[[int], bool], me: str
) -> list[str]:
    """Workers whose claims may be recovered: stopped, heartbeat older than `stale_s` (wall clock), or
    on this host with their process gone. Never `me`, never a live one."""
    with store.session() as s:
        rows = s.execute(select(Worker.id, Worker.host, Worker.pid, Worker.state, Worker.heartbeat_at)).all()
    out = []
    for wid, whost, pid, state, beat in rows:
        if wid == me:
            continue
        if state != "running" or beat < now - dt.timedelta(seconds=stale_s) or (whost == host and not is_alive(pid)):
            out.append(wid)
    return out


def set_breaker(
    store: Store, trunk: str, *, state: str, reason: str, until: dt.datetime | None, now: dt.datetime,
    tripped: bool = False,
) -> None:
    """Record a trunk breaker's transition (closed, open, half_open) for every worker and the console."""
    with store.session() as s:
        t = ensure_trunk(s, trunk, now)
        t.breaker_state, t.breaker_reason, t.breaker_until, t.updated_at = state, reason, until, now
        if tripped:
            t.breaker_trips += 1
        audit(s, f"trunk.breaker_{state}", {"trunk": trunk, "reason": reason}, at=now)


def pause_campaign(store: Store, campaign_id: int, *, reason: str, now: dt.datetime) -> bool:
    """The dialer pauses a running campaign for a permanent fault (e.g. its script does not load)."""
    with store.session() as s:
        camp = s.get(Campaign, campaign_id)
        if camp is None or camp.state != CampaignState.running:
            return False
        camp.state, camp.paused_reason = CampaignState.paused, reason
        audit(s, "campaign.paused", {"campaign": camp.name, "reason": reason, "by": "dialer"}, at=now)
    log.error("campaign %s paused: %s", camp.name, reason)
    return True


def update_settings(
    store: Store, name: str, *, now: dt.datetime, actor: str = "", windows: Mapping[str, Any] | None = None,
    holidays: Sequence[str] | None = None, pacing: Mapping[str, Any] | None = None,
    retry_policy: Mapping[str, Any] | None = None,
) -> CampaignInfo:
    """Change a campaign's windows, holidays, pacing or retry rules (running engines pick them up at
    their next tick). The caller validates the values."""
    with store.session() as s:
        camp = _campaign(s, name)
        if camp.state in (CampaignState.completed, CampaignState.cancelled):
            raise CampaignError(f"campaign {name!r} is {camp.state}; its settings can no longer change")
        changed: dict[str, Any] = {}
        if windows is not None:
            camp.windows = changed["windows"] = dict(windows)
        if holidays is not None:
            camp.holidays = changed["holidays"] = list(holidays)
        if pacing is not None:
            camp.pacing = changed["pacing"] = {**(camp.pacing or {}), **dict(pacing)}
        if retry_policy is not None:
            camp.retry_policy = changed["retry_policy"] = {**(camp.retry_policy or {}), **dict(retry_policy)}
        audit(s, "campaign.settings", {"campaign": name, **changed}, actor=actor, at=now)
        return CampaignInfo.of(camp)


def get_meta(store: Store, key: str) -> str | None:
    with store.session() as s:
        row = s.get(StoreMeta, key)
        return row.value if row is not None else None


def set_meta(store: Store, key: str, value: str) -> None:
    """Insert or update one store fact; safe when several workers start at once and race to insert it."""
    from sqlalchemy.exc import IntegrityError

    try:
        with store.session() as s:
            row = s.get(StoreMeta, key)
            if row is None:
                s.add(StoreMeta(key=key, value=value))
            else:
                row.value = value
    except IntegrityError:
        # Another process inserted the key between our read and our insert: the row exists now.
        with store.session() as s:
            row = s.get(StoreMeta, key)
            if row is None:
                raise
            row.value = value


def real_residents(store: Store) -> int:
    """How many residents were imported from files (not synthetic): real people."""
    with store.session() as s:
        return int(s.scalar(select(func.count()).select_from(Resident).where(Resident.source_file != "synthetic")) or 0)


def dialer_overview(store: Store, *, now: dt.datetime, stale_s: float = 30.0) -> dict[str, Any]:
    """Workers (alive or not, lines in use, status board) and trunks (limits, lines in use, breaker),
    for `campaign status` and the web console."""
    with store.session() as s:
        workers = list(s.scalars(select(Worker).order_by(Worker.id)))
        trunks = list(s.scalars(select(Trunk).order_by(Trunk.name)))
        busy = dict(s.execute(
            select(Campaign.trunk, func.count()).select_from(CampaignContact)
            .join(Campaign, Campaign.id == CampaignContact.campaign_id)
            .where(CampaignContact.state == ContactState.dialing).group_by(Campaign.trunk)
        ).all())
    cutoff = now - dt.timedelta(seconds=stale_s)
    return {
        "workers": [
            {"id": w.id, "host": w.host, "pid": w.pid, "alive": w.state == "running" and w.heartbeat_at >= cutoff,
             "state": w.state, "heartbeat_at": w.heartbeat_at.isoformat(), "lines_in_use": w.lines_in_use,
             "status": dict(w.status or {})}
            for w in workers
        ],
        "trunks": [
            {"name": t.name, "max_channels": t.max_channels, "calls_per_second": t.calls_per_second,
             "lines_in_use": int(busy.get(t.name, 0)), "breaker": t.breaker_state, "breaker_reason": t.breaker_reason,
             "breaker_until": t.breaker_until.isoformat() if t.breaker_until else None, "trips": t.breaker_trips}
            for t in trunks
        ],
    }


# ----------------------------------------------------------------------------- demo stores


def non_demo_data(path: Path) -> str | None:
    """What in the SQLite file `path` is not demo data (None: a demo store, an empty one, or no file).

    `outreach demo` replaces its store; this keeps it from replacing a store that holds real work.
    """
    if not path.exists():
        return None
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        return f"it cannot be opened as a store ({exc})"
    try:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not tables:
            return None
        if not {"campaigns", "residents"} <= tables:
            return "it is not an outreach demo store"
        other = con.execute("SELECT count(*) FROM campaigns WHERE name != ?", ("demo",)).fetchone()[0]
        if other:
            return f"it holds {other} campaigns other than the demo"
        real = con.execute("SELECT count(*) FROM residents WHERE source_file != ?", ("synthetic",)).fetchone()[0]
        if real:
            return f"it holds {real} imported (not synthetic) residents"
        return None
    except sqlite3.Error as exc:
        return f"it cannot be read as a store ({exc})"
    finally:
        con.close()


# ----------------------------------------------------------------------------- residents (synthetic)


def add_residents(store: Store, rows: Sequence[Mapping[str, Any]], *, now: dt.datetime) -> int:
    """Bulk-insert residents (the demo's synthetic ones). Keys: Resident columns."""
    with store.session() as s:
        for i in range(0, len(rows), 5000):
            s.execute(insert(Resident), [{"created_at": now, "updated_at": now, **r} for r in rows[i : i + 5000]])
    return len(rows)


# ----------------------------------------------------------------------------- status, summary


def campaign_status(store: Store, name: str) -> dict[str, Any]:
    """Counts for `outreach campaign status`: contacts by state and final outcome, attempts by outcome,
    records by risk, escalations by kind."""
    with store.session() as s:
        camp = _campaign(s, name)
        cid = camp.id
        contacts = dict(
            s.execute(
                select(CampaignContact.state, func.count()).where(CampaignContact.campaign_id == cid)
                .group_by(CampaignContact.state)
            ).all()
        )
        finals = dict(
            s.execute(
                select(CampaignContact.final_outcome, func.count())
                .where(CampaignContact.campaign_id == cid, CampaignContact.final_outcome.is_not(None))
                .group_by(CampaignContact.final_outcome)
            ).all()
        )
        attempts = dict(
            s.execute(
                select(CallAttempt.outcome, func.count()).where(CallAttempt.campaign_id == cid)
                .group_by(CallAttempt.outcome)
            ).all()
        )
        risks = dict(
            s.execute(
                select(ScreeningRecord.risk_level, func.count()).where(ScreeningRecord.campaign_id == cid)
                .group_by(ScreeningRecord.risk_level)
            ).all()
        )
        escalations = dict(
            s.execute(
                select(Escalation.kind, func.count()).where(Escalation.campaign_id == cid).group_by(Escalation.kind)
            ).all()
        )
        nxt = s.scalar(
            select(func.min(CampaignContact.next_attempt_at)).where(
                CampaignContact.campaign_id == cid, CampaignContact.state == ContactState.pending
            )
        )
        trunk = s.get(Trunk, camp.trunk or "default")
        dialing = int(contacts.get(ContactState.dialing, 0))
        return {
            "campaign": camp.name,
            "state": camp.state,
            "paused_reason": camp.paused_reason or None,
            "trunk": {
                "name": camp.trunk or "default",
                "breaker": trunk.breaker_state if trunk else "closed",
                "breaker_reason": (trunk.breaker_reason or None) if trunk else None,
                "breaker_until": trunk.breaker_until.isoformat() if trunk and trunk.breaker_until else None,
                "max_channels": trunk.max_channels if trunk else None,
            },
            "lines_in_use": dialing,
            "timezone": camp.timezone,
            "created_at": camp.created_at.isoformat(),
            "started_at": camp.started_at.isoformat() if camp.started_at else None,
            "completed_at": camp.completed_at.isoformat() if camp.completed_at else None,
            "next_attempt_at": nxt.isoformat() if nxt else None,
            "contacts": {str(k): int(v) for k, v in contacts.items()},
            "final_outcomes": {str(k): int(v) for k, v in finals.items()},
            "attempts": {str(k): int(v) for k, v in attempts.items()},
            "records_by_risk": {str(k): int(v) for k, v in risks.items()},
            "escalations": {str(k): int(v) for k, v in escalations.items()},
        }


def campaign_summary(store: Store, campaign_id: int) -> dict[str, int]:
    """The demo's numbers: residents, calls, answered, completed, flagged, unreachable, opted_out,
    human_requested, reminders_needed, plus the rest of the accounting."""
    with store.session() as s:
        finals = Counter(
            dict(
                s.execute(
                    select(CampaignContact.final_outcome, func.count())
                    .where(CampaignContact.campaign_id == campaign_id)
                    .group_by(CampaignContact.final_outcome)
                ).all()
            )
        )
        residents = int(
            s.scalar(select(func.count()).select_from(CampaignContact).where(CampaignContact.campaign_id == campaign_id))
            or 0
        )
        calls = int(s.scalar(select(func.count()).select_from(CallAttempt).where(CallAttempt.campaign_id == campaign_id)) or 0)
        answered = int(
            s.scalar(
                select(func.count()).select_from(CallAttempt)
                .where(CallAttempt.campaign_id == campaign_id, CallAttempt.answered_at.is_not(None))
            ) or 0
        )
        flagged = int(
            s.scalar(
                select(func.count(func.distinct(ScreeningRecord.resident_id))).where(
                    ScreeningRecord.campaign_id == campaign_id, ScreeningRecord.risk_level.in_(["flagged", "high"])
                )
            ) or 0
        )
        reminders = int(
            s.scalar(
                select(func.count(func.distinct(ScreeningRecord.resident_id))).where(
                    ScreeningRecord.campaign_id == campaign_id, ScreeningRecord.reminder_needed.is_(True)
                )
            ) or 0
        )
        escalated = int(
            s.scalar(
                select(func.count(func.distinct(Escalation.resident_id))).where(Escalation.campaign_id == campaign_id)
            ) or 0
        )
        max_attempts = int(
            s.scalar(select(func.max(CampaignContact.attempts)).where(CampaignContact.campaign_id == campaign_id)) or 0
        )
        outside = int(
            s.scalar(
                select(func.count()).select_from(CampaignContact).where(
                    CampaignContact.campaign_id == campaign_id,
                    and_(CampaignContact.state != ContactState.done, CampaignContact.state != ContactState.skipped),
                )
            ) or 0
        )
    return {
        "residents": residents,
        "calls": calls,
        "answered": answered,
        "completed": int(finals.get("completed", 0)),
        "flagged": flagged,
        "unreachable": int(finals.get("unreachable", 0) + finals.get("invalid_number", 0) + finals.get("wrong_number", 0)),
        "opted_out": int(finals.get("opted_out", 0)),
        "human_requested": int(finals.get("human_requested", 0)),
        "not_understood": int(finals.get("not_understood", 0)),
        "do_not_call": int(finals.get("do_not_call", 0)),
        "cancelled": int(finals.get("cancelled", 0)),
        "reminders_needed": reminders,
        "escalated_residents": escalated,
        "max_attempts_per_resident": max_attempts,
        "unfinished": outside,
    }
