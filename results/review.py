"""All SQL of the community workers' review: the escalation queue, a resident's page, callbacks and the
actions on an escalation (assign, record a callback, close, reopen).

Every function takes `scope`: the communities the caller may see (None = all, for staff and admins).
Anything outside the scope is reported as not found (`NotFoundInScope`), never as forbidden, so ids of
other communities leak nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from results.models import (
    AuditLog,
    CallAttempt,
    Callback,
    Campaign,
    Escalation,
    Resident,
    ScreeningRecord,
    SmsMessage,
)
from results.store import Store

OPEN_STATUSES = ("open", "in_progress")
CALLBACK_ACTIONS = ("none", "visit", "hospital", "tested", "other")


class NotFoundInScope(LookupError):
    """No such item among those the caller may see."""


@dataclass(frozen=True, slots=True)
class QueueFilter:
    status: str = "active"  # active (open + in progress), open, in_progress, closed, all
    kind: str = ""
    community: str = ""
    campaign_id: int | None = None
    mine: str = ""  # a user name: only items assigned to them
    search: str = ""  # resident name (prefix)


@dataclass(frozen=True, slots=True)
class QueueItem:
    id: int
    kind: str
    priority: int
    status: str
    community: str
    reasons: list[str]
    assigned_to: str | None
    due_at: dt.datetime | None
    created_at: dt.datetime
    resident_id: int
    resident_name: str
    phone: str
    campaign: str | None


@dataclass(frozen=True, slots=True)
class QueuePage:
    items: list[QueueItem]
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


def _scoped(q: Any, column: Any, scope: Sequence[str] | None) -> Any:
    return q if scope is None else q.where(column.in_(list(scope)))


def _queue_where(q: Any, f: QueueFilter, scope: Sequence[str] | None) -> Any:
    q = _scoped(q, Escalation.community, scope)
    if f.status == "active":
        q = q.where(Escalation.status.in_(OPEN_STATUSES))
    elif f.status != "all":
        q = q.where(Escalation.status == f.status)
    if f.kind:
        q = q.where(Escalation.kind == f.kind)
    if f.community:
        q = q.where(Escalation.community == f.community)
    if f.campaign_id is not None:
        q = q.where(Escalation.campaign_id == f.campaign_id)
    if f.mine:
        q = q.where(Escalation.assigned_to == f.mine)
    if f.search:
        q = q.where(Escalation.resident_id.in_(select(Resident.id).where(Resident.name.startswith(f.search))))
    return q


def queue(store: Store, *, scope: Sequence[str] | None, filt: QueueFilter, page: int = 1,
          per_page: int = 25) -> QueuePage:
    """Escalations most urgent first (priority, then due time, then oldest), one page of them."""
    page = max(1, page)
    with store.session() as s:
        total = int(s.scalar(_queue_where(select(func.count()).select_from(Escalation), filt, scope)) or 0)
        q = _queue_where(
            select(Escalation, Resident.name, Resident.phone, Campaign.name)
            .join(Resident, Resident.id == Escalation.resident_id)
            .outerjoin(Campaign, Campaign.id == Escalation.campaign_id),
            filt, scope,
        ).order_by(Escalation.priority, Escalation.created_at, Escalation.id).offset((page - 1) * per_page).limit(per_page)
        items = [
            QueueItem(
                id=e.id, kind=e.kind, priority=e.priority, status=e.status, community=e.community,
                reasons=list(e.reasons or []), assigned_to=e.assigned_to, due_at=e.due_at, created_at=e.created_at,
                resident_id=e.resident_id, resident_name=name, phone=phone, campaign=camp,
            )
            for e, name, phone, camp in s.execute(q)
        ]
    return QueuePage(items, total, page, per_page)


def queue_facets(store: Store, *, scope: Sequence[str] | None) -> dict[str, list[str]]:
    """The communities and kinds that occur in the caller's open queue (for the filter menus)."""
    with store.session() as s:
        base = _scoped(select(Escalation.community, Escalation.kind).where(Escalation.status.in_(OPEN_STATUSES)),
                       Escalation.community, scope).distinct()
        pairs = s.execute(base).all()
    return {"communities": sorted({c for c, _ in pairs}), "kinds": sorted({k for _, k in pairs})}


# ----------------------------------------------------------------------------- one resident


@dataclass(slots=True)
class ResidentPage:
    resident: Resident
    escalations: list[Escalation] = field(default_factory=list)
    records: list[tuple[ScreeningRecord, str]] = field(default_factory=list)  # (record, campaign name)
    attempts: list[tuple[CallAttempt, str]] = field(default_factory=list)
    sms: list[SmsMessage] = field(default_factory=list)
    callbacks: list[Callback] = field(default_factory=list)


def _resident(s: Session, resident_id: int, scope: Sequence[str] | None) -> Resident:
    r = s.get(Resident, resident_id)
    if r is None or (scope is not None and r.community not in scope):
        raise NotFoundInScope(f"resident {resident_id}")
    return r


def resident_page(store: Store, resident_id: int, *, scope: Sequence[str] | None, attempts_limit: int = 50) -> ResidentPage:
    with store.session() as s:
        r = _resident(s, resident_id, scope)
        page = ResidentPage(r)
        page.escalations = list(s.scalars(
            _scoped(select(Escalation).where(Escalation.resident_id == r.id), Escalation.community, scope)
            .order_by(Escalation.id.desc())
        ))
        page.records = [(rec, name) for rec, name in s.execute(
            select(ScreeningRecord, Campaign.name).join(Campaign, Campaign.id == ScreeningRecord.campaign_id)
            .where(ScreeningRecord.resident_id == r.id).order_by(ScreeningRecord.id.desc()).limit(20)
        )]
        page.attempts = [(a, name) for a, name in s.execute(
            select(CallAttempt, Campaign.name).join(Campaign, Campaign.id == CallAttempt.campaign_id)
            .where(CallAttempt.resident_id == r.id).order_by(CallAttempt.started_at.desc(), CallAttempt.id.desc())
            .limit(attempts_limit)
        )]
        page.sms = list(s.scalars(
            select(SmsMessage).where(SmsMessage.resident_id == r.id).order_by(SmsMessage.id.desc()).limit(20)
        ))
        page.callbacks = list(s.scalars(
            select(Callback).where(Callback.resident_id == r.id).order_by(Callback.id.desc()).limit(50)
        ))
        s.expunge_all()
    return page


def resident_phone(store: Store, resident_id: int, *, scope: Sequence[str] | None, actor: str,
                   now: dt.datetime) -> str:
    """The resident's number in clear; the view is written to the audit log in the same transaction."""
    with store.session() as s:
        r = _resident(s, resident_id, scope)
        s.add(AuditLog(action="resident.phone_shown", actor=actor, at=now,
                       details={"resident_id": r.id, "community": r.community}))
        return r.phone


def answer_audio_ref(store: Store, record_id: int, answer: str, *, scope: Sequence[str] | None, actor: str,
                     now: dt.datetime) -> str:
    """The kept audio of one answer of a screening record (relative to the audio folder); audited."""
    with store.session() as s:
        row = s.execute(
            select(ScreeningRecord.answers, Resident.id, Resident.community)
            .join(Resident, Resident.id == ScreeningRecord.resident_id).where(ScreeningRecord.id == record_id)
        ).first()
        if row is None or (scope is not None and row[2] not in scope):
            raise NotFoundInScope(f"record {record_id}")
        ans = (row[0] or {}).get(answer)
        ref = ans.get("audio") if isinstance(ans, dict) else None
        if not ref:
            raise NotFoundInScope(f"record {record_id} answer {answer}")
        s.add(AuditLog(action="audio.play", actor=actor, at=now,
                       details={"record_id": record_id, "answer": answer, "resident_id": row[1]}))
        return str(ref)


def record_in_scope(store: Store, record_id: int, *, scope: Sequence[str] | None) -> tuple[ScreeningRecord, int]:
    """A screening record (and its resident id) if the caller may see it."""
    with store.session() as s:
        row = s.execute(
            select(ScreeningRecord, Resident.community).join(Resident, Resident.id == ScreeningRecord.resident_id)
            .where(ScreeningRecord.id == record_id)
        ).first()
        if row is None or (scope is not None and row[1] not in scope):
            raise NotFoundInScope(f"record {record_id}")
        s.expunge(row[0])
        return row[0], row[0].resident_id


# ----------------------------------------------------------------------------- escalation actions


def _escalation(s: Session, escalation_id: int, scope: Sequence[str] | None) -> Escalation:
    e = s.get(Escalation, escalation_id, with_for_update=True)
    if e is None or (scope is not None and e.community not in scope):
        raise NotFoundInScope(f"escalation {escalation_id}")
    return e


def get_escalation(store: Store, escalation_id: int, *, scope: Sequence[str] | None) -> Escalation:
    with store.session() as s:
        e = s.get(Escalation, escalation_id)
        if e is None or (scope is not None and e.community not in scope):
            raise NotFoundInScope(f"escalation {escalation_id}")
        s.expunge(e)
        return e


def assign(store: Store, escalation_id: int, *, to: str, scope: Sequence[str] | None, actor: str,
           now: dt.datetime) -> Escalation:
    with store.session() as s:
        e = _escalation(s, escalation_id, scope)
        e.assigned_to = to
        if e.status == "open":
            e.status = "in_progress"
        s.add(AuditLog(action="escalation.assign", actor=actor, at=now, details={"escalation_id": e.id, "to": to}))
        s.flush()
        s.expunge(e)
        return e


def add_callback(store: Store, escalation_id: int, *, reached: bool, action: str, notes: str, close: bool,
                 scope: Sequence[str] | None, actor: str, now: dt.datetime) -> Escalation:
    """Record a callback or visit; with `close` the escalation is closed with its result."""
    with store.session() as s:
        e = _escalation(s, escalation_id, scope)
        s.add(Callback(escalation_id=e.id, resident_id=e.resident_id, worker=actor, reached=reached, action=action,
                       notes=notes, at=now))
        if e.assigned_to is None:
            e.assigned_to = actor
        result = ("reached" if reached else "not_reached") + (f":{action}" if action and action != "none" else "")
        e.result = result
        if close:
            e.status, e.closed_at = "closed", now
        elif e.status == "open":
            e.status = "in_progress"
        s.add(AuditLog(action="escalation.callback", actor=actor, at=now, details={
            "escalation_id": e.id, "reached": reached, "action": action, "closed": close}))
        s.flush()
        s.expunge(e)
        return e


def close(store: Store, escalation_id: int, *, result: str, scope: Sequence[str] | None, actor: str,
          now: dt.datetime) -> Escalation:
    with store.session() as s:
        e = _escalation(s, escalation_id, scope)
        e.status, e.closed_at = "closed", now
        if result:
            e.result = result
        s.add(AuditLog(action="escalation.close", actor=actor, at=now, details={"escalation_id": e.id}))
        s.flush()
        s.expunge(e)
        return e


def reopen(store: Store, escalation_id: int, *, scope: Sequence[str] | None, actor: str, now: dt.datetime) -> Escalation:
    with store.session() as s:
        e = _escalation(s, escalation_id, scope)
        e.status, e.closed_at = ("in_progress" if e.assigned_to else "open"), None
        s.add(AuditLog(action="escalation.reopen", actor=actor, at=now, details={"escalation_id": e.id}))
        s.flush()
        s.expunge(e)
        return e


def campaign_escalations_in_scope(store: Store, campaign_id: int, *, scope: Sequence[str] | None) -> int:
    """How many escalations of a campaign the caller may see (a worker's export of a campaign with none
    of their communities is 'not found')."""
    with store.session() as s:
        return int(s.scalar(_scoped(
            select(func.count()).select_from(Escalation).where(Escalation.campaign_id == campaign_id),
            Escalation.community, scope)) or 0)


def busiest_community(store: Store) -> str | None:
    """The community with the most open escalations (the demo's worker account gets it)."""
    with store.session() as s:
        row = s.execute(
            select(Escalation.community, func.count().label("n")).where(Escalation.status.in_(OPEN_STATUSES))
            .group_by(Escalation.community).order_by(func.count().desc(), Escalation.community).limit(1)
        ).first()
        if row is not None:
            return str(row[0])
        return s.scalar(select(Resident.community).where(Resident.community != "").limit(1))
