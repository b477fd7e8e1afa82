"""All SQL of SMS: the outbox (planned messages, claiming, results), delivery receipts, replies, the
per-number daily cap, escalations for undeliverable texts, status and summaries.

Exactly once: a message is switched to `sending` (and committed) before the provider is called. A row
left `sending` (timeout, 5xx, crash) is only resolved by what the provider says it has (reconciliation
in `sms.dispatcher`): found → its state; not found → queued again. States only move forward
(`sms.types.advances`, mirrored in RANK here).
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import case, exists, func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from common.masking import mask_phone
from results.campaigns import audit
from results.donotcall import add_do_not_call
from results.models import (
    CallAttempt,
    CampaignContact,
    DoNotCall,
    Escalation,
    Resident,
    ScreeningRecord,
    SmsEvent,
    SmsMessage,
    SmsReply,
)
from results.store import Store

log = logging.getLogger(__name__)

RANK = {"queued": 0, "sending": 1, "accepted": 2, "sent": 3, "delivered": 4, "undelivered": 4, "failed": 4,
        "cancelled": 4}
FINAL = ("delivered", "undelivered", "failed", "cancelled")
# Rows that took a place in the per-number daily cap.
COUNTED = ("sending", "accepted", "sent", "delivered", "undelivered")
SMS_ESCALATION_PRIORITY = {"sms_undeliverable": 3, "opted_out": 3, "sms_reply": 3}


@dataclass(frozen=True, slots=True)
class NewSms:
    resident_id: int
    campaign_id: int | None
    kind: str
    dedupe_key: str
    to_phone: str
    body: str
    template: str
    params: Mapping[str, str]
    segments: int
    scheduled_for: dt.datetime


@dataclass(frozen=True, slots=True)
class SmsRow:
    """A message claimed for sending (or left `sending`), as the dispatcher needs it."""

    id: int
    out_id: str
    to_phone: str
    body: str
    template: str
    params: dict[str, str]
    kind: str
    tries: int
    sending_since: dt.datetime | None


@dataclass(frozen=True, slots=True)
class Receipt:
    """A delivery receipt, provider-neutral (built from sms.types.StatusUpdate by the caller)."""

    dedupe: str
    provider: str
    state: str
    provider_status: str = ""
    provider_id: str = ""
    out_id: str = ""
    error_code: str = ""
    error_message: str = ""


@dataclass(frozen=True, slots=True)
class IncomingReply:
    dedupe: str
    provider: str
    phone: str
    text: str
    received_at: dt.datetime


@dataclass(frozen=True, slots=True)
class ReplyOutcome:
    reply_id: int
    intent: str
    resident_id: int | None
    duplicate: bool = False


@dataclass(slots=True)
class ReceiptStats:
    received: int = 0
    duplicates: int = 0
    applied: int = 0
    pending: int = 0  # for a message we do not know (yet): kept, applied when its send result is stored
    stale: int = 0  # would move a message backwards: ignored
    escalations: list[int] = field(default_factory=list)


def _insert_ignore(s: Session, model: Any, values: Mapping[str, Any], key: str) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING; True if the row was inserted."""
    dialect = s.get_bind().dialect.name
    stmt = (pg_insert(model) if dialect == "postgresql" else sqlite_insert(model)).values(**values)
    res = s.execute(stmt.on_conflict_do_nothing(index_elements=[key]))
    return bool(getattr(res, "rowcount", 0))


# ----------------------------------------------------------------------------- planning


def enqueue(store: Store, messages: Sequence[NewSms], *, now: dt.datetime) -> int:
    """Plan messages (state `queued`); one per dedupe key, ever. Numbers on the do-not-call list are
    not planned. Returns how many new rows were written."""
    if not messages:
        return 0
    n = 0
    with store.session() as s:
        phones = {m.to_phone for m in messages}
        blocked = set(s.scalars(select(DoNotCall.phone).where(DoNotCall.phone.in_(phones))))
        for m in messages:
            if m.to_phone in blocked:
                continue
            n += _insert_ignore(s, SmsMessage, {
                "resident_id": m.resident_id, "campaign_id": m.campaign_id, "kind": m.kind,
                "dedupe_key": m.dedupe_key, "out_id": uuid.uuid4().hex, "to_phone": m.to_phone, "body": m.body,
                "template": m.template, "params": dict(m.params), "segments": m.segments, "state": "queued",
                "tries": 0, "scheduled_for": m.scheduled_for, "created_at": now, "updated_at": now,
            }, "dedupe_key")
    return n


def existing_keys(store: Store, keys: Iterable[str]) -> set[str]:
    wanted = list(set(keys))
    out: set[str] = set()
    with store.session() as s:
        for i in range(0, len(wanted), 1000):
            out.update(s.scalars(select(SmsMessage.dedupe_key).where(SmsMessage.dedupe_key.in_(wanted[i : i + 1000]))))
    return out


@dataclass(frozen=True, slots=True)
class ReminderCandidate:
    resident_id: int
    campaign_id: int | None
    name: str
    phone: str
    community: str
    arrival_date: dt.date | None
    screened_at: dt.datetime | None


def second_test_candidates(store: Store, *, from_arrival: bool) -> list[ReminderCandidate]:
    """Residents who still owe their second test: a screening record needs a reminder (and no later
    record says it is done), or — with `from_arrival` — residents with an arrival date who have no
    record saying it is done. Residents who replied by SMS that it is done, and do-not-call numbers,
    are left out."""
    with store.session() as s:
        self_reported = select(SmsReply.resident_id).where(SmsReply.intent == "second_test_done",
                                                           SmsReply.resident_id.is_not(None))
        dnc = exists().where(DoNotCall.phone == Resident.phone)
        out: dict[int, ReminderCandidate] = {}
        latest = (
            select(ScreeningRecord.resident_id, func.max(ScreeningRecord.id).label("rid"))
            .group_by(ScreeningRecord.resident_id)
            .subquery()
        )
        q = (
            select(Resident, ScreeningRecord.campaign_id, ScreeningRecord.created_at, ScreeningRecord.reminder_needed,
                   ScreeningRecord.answers)
            .join(latest, latest.c.resident_id == Resident.id)
            .join(ScreeningRecord, ScreeningRecord.id == latest.c.rid)
            .where(~dnc, Resident.id.not_in(self_reported))
        )
        for res, campaign_id, created, needed, answers in s.execute(q):
            done = ((answers or {}).get("second_test_done") or {}).get("value") is True
            if needed and not done:
                out[res.id] = ReminderCandidate(res.id, campaign_id, res.name, res.phone, res.community,
                                                res.arrival_date, created)
        if from_arrival:
            screened_done = [
                rid for rid, answers in s.execute(select(ScreeningRecord.resident_id, ScreeningRecord.answers))
                if ((answers or {}).get("second_test_done") or {}).get("value") is True
            ]
            q2 = select(Resident).where(Resident.arrival_date.is_not(None), ~dnc, Resident.id.not_in(self_reported))
            done_set = set(screened_done)
            for res in s.scalars(q2):
                if res.id not in out and res.id not in done_set:
                    out[res.id] = ReminderCandidate(res.id, None, res.name, res.phone, res.community,
                                                    res.arrival_date, None)
    return sorted(out.values(), key=lambda c: c.resident_id)


def ring_back_candidates(store: Store) -> list[ReminderCandidate]:
    """Contacts whose last call attempt failed and who are finished as unreachable (not invalid numbers,
    not do-not-call): one text asks them to ring the hotline back."""
    with store.session() as s:
        dnc = exists().where(DoNotCall.phone == Resident.phone)
        q = (
            select(Resident, CampaignContact.campaign_id, CampaignContact.last_attempt_at)
            .join(CampaignContact, CampaignContact.resident_id == Resident.id)
            .where(CampaignContact.final_outcome == "unreachable", ~dnc)
            .order_by(CampaignContact.campaign_id, Resident.id)
        )
        return [
            ReminderCandidate(res.id, cid, res.name, res.phone, res.community, res.arrival_date, last)
            for res, cid, last in s.execute(q)
        ]


# ----------------------------------------------------------------------------- the outbox


def _row(m: SmsMessage) -> SmsRow:
    return SmsRow(id=m.id, out_id=m.out_id or f"sms{m.id}", to_phone=m.to_phone, body=m.body, template=m.template,
                  params=dict(m.params or {}), kind=m.kind, tries=m.tries, sending_since=m.sending_since)


def next_scheduled(store: Store) -> dt.datetime | None:
    with store.session() as s:
        return s.scalar(select(func.min(SmsMessage.scheduled_for)).where(SmsMessage.state == "queued"))


def claim_due(
    store: Store,
    *,
    now: dt.datetime,
    limit: int,
    daily_cap: int,
    day_start: dt.datetime,
    next_day: dt.datetime,
) -> list[SmsRow]:
    """Switch up to `limit` due queued messages to `sending` (committed on return, before any send).

    Do-not-call numbers are cancelled; a number that already has `daily_cap` messages since
    `day_start` (the local day) waits until `next_day`. Multi-worker safe like campaign claims
    (PostgreSQL SKIP LOCKED, SQLite one atomic UPDATE ... RETURNING)."""
    with store.session() as s:
        dnc = exists().where(DoNotCall.phone == SmsMessage.to_phone)
        res = s.execute(
            update(SmsMessage)
            .where(SmsMessage.state == "queued", SmsMessage.scheduled_for <= now, dnc)
            .values(state="cancelled", error_code="do_not_call", error_message="号码已退订或在免打扰名单中",
                    updated_at=now)
            .execution_options(synchronize_session=False)
        )
        cancelled = int(getattr(res, "rowcount", 0) or 0)
        if cancelled:
            log.info("cancelled %d queued texts to do-not-call numbers", cancelled)
        due = (
            select(SmsMessage.id, SmsMessage.to_phone)
            .where(SmsMessage.state == "queued", SmsMessage.scheduled_for <= now)
            .order_by(SmsMessage.scheduled_for, SmsMessage.id)
            .limit(limit)
        )
        if store.dialect == "postgresql":
            due = due.with_for_update(skip_locked=True)
        candidates = s.execute(due).all()
        if not candidates:
            return []
        phones = list({p for _, p in candidates})
        used: Counter[str] = Counter()
        for i in range(0, len(phones), 1000):
            used.update(dict(s.execute(
                select(SmsMessage.to_phone, func.count())
                .where(SmsMessage.to_phone.in_(phones[i : i + 1000]), SmsMessage.state.in_(COUNTED),
                       SmsMessage.sending_since >= day_start)
                .group_by(SmsMessage.to_phone)
            ).all()))
        take: list[int] = []
        wait: list[int] = []
        for mid, phone in candidates:
            if used[phone] >= daily_cap:
                wait.append(mid)
            else:
                used[phone] += 1
                take.append(mid)
        if wait:
            s.execute(update(SmsMessage).where(SmsMessage.id.in_(wait), SmsMessage.state == "queued")
                      .values(scheduled_for=next_day, error_message="已达每个号码每日条数上限，次日发送", updated_at=now)
                      .execution_options(synchronize_session=False))
        if not take:
            return []
        ids = [r[0] for r in s.execute(
            update(SmsMessage)
            .where(SmsMessage.id.in_(take), SmsMessage.state == "queued")
            .values(state="sending", sending_since=now, tries=SmsMessage.tries + 1, updated_at=now)
            .returning(SmsMessage.id)
            .execution_options(synchronize_session=False)
        ).all()]
        rows = [_row(m) for m in s.scalars(select(SmsMessage).where(SmsMessage.id.in_(ids)).order_by(SmsMessage.id))]
    return rows


def stale_sending(store: Store, *, before: dt.datetime, limit: int = 1000) -> list[SmsRow]:
    """Messages left `sending` since before `before`: a timeout, a 5xx or a crash; reconcile them."""
    with store.session() as s:
        q = (
            select(SmsMessage)
            .where(SmsMessage.state == "sending", or_(SmsMessage.sending_since < before, SmsMessage.sending_since.is_(None)))
            .order_by(SmsMessage.id)
            .limit(limit)
        )
        return [_row(m) for m in s.scalars(q)]


def record_sent(
    store: Store, results: Sequence[tuple[int, str, str, str]], *, gateway: str, now: dt.datetime
) -> int:
    """Store what the provider answered: (message id, provider id, state, provider status). Only rows
    still `sending` are changed. Receipts that arrived before the answer are applied now."""
    if not results:
        return 0
    n = 0
    groups: dict[tuple[str, str], dict[int, str]] = {}
    for mid, provider_id, state, provider_status in results:
        groups.setdefault((state, provider_status[:32]), {})[mid] = provider_id
    with store.session() as s:
        # One UPDATE per (state, status) and chunk, not one per message: a batch's answers mostly share
        # both, and each statement is a round of the database thread (and of the GIL) while sends run.
        for (state, provider_status), by_id in groups.items():
            items = list(by_id.items())
            for i in range(0, len(items), 500):
                chunk = dict(items[i : i + 500])
                with_pid = {mid: pid for mid, pid in chunk.items() if pid}
                vals: dict[str, Any] = {"state": state, "provider_status": provider_status, "sent_at": now,
                                        "gateway": gateway, "updated_at": now, "error_code": None,
                                        "error_message": None}
                if with_pid:
                    vals["provider_id"] = case(with_pid, value=SmsMessage.id, else_=SmsMessage.provider_id)
                if state == "delivered":
                    vals["delivered_at"] = now
                res = s.execute(update(SmsMessage)
                                .where(SmsMessage.id.in_(list(chunk)), SmsMessage.state == "sending")
                                .values(**vals).execution_options(synchronize_session=False))
                n += int(getattr(res, "rowcount", 0) or 0)
        ids = [r[0] for r in results]
        _apply_pending_events(s, ids, now)
    return n


def record_failed(store: Store, failures: Sequence[tuple[int, str, str]], *, gateway: str, now: dt.datetime) -> int:
    """Permanent errors: (message id, code, Chinese explanation). Final; each gets an escalation."""
    if not failures:
        return 0
    n = 0
    with store.session() as s:
        for mid, code, explanation in failures:
            res = s.execute(
                update(SmsMessage).where(SmsMessage.id == mid, SmsMessage.state == "sending")
                .values(state="failed", error_code=code[:64], error_message=explanation, gateway=gateway, updated_at=now)
            )
            if getattr(res, "rowcount", 0):
                n += 1
                _undeliverable(s, mid, code, explanation, now)
    return n


def requeue(store: Store, items: Sequence[tuple[int, dt.datetime, str, str]], *, now: dt.datetime) -> int:
    """Back to `queued` (known not sent, or reconciled as not sent): (id, when, code, explanation)."""
    n = 0
    with store.session() as s:
        for mid, when, code, explanation in items:
            res = s.execute(
                update(SmsMessage).where(SmsMessage.id == mid, SmsMessage.state == "sending")
                .values(state="queued", scheduled_for=when, sending_since=None, error_code=code[:64] or None,
                        error_message=explanation or None, updated_at=now)
            )
            n += int(getattr(res, "rowcount", 0) or 0)
    return n


def note_pending(store: Store, mid: int, code: str, explanation: str, *, now: dt.datetime) -> None:
    """A message stays `sending` (the provider may have it; it cannot be asked now): note why."""
    with store.session() as s:
        s.execute(update(SmsMessage).where(SmsMessage.id == mid, SmsMessage.state == "sending")
                  .values(error_code=code[:64], error_message=explanation, updated_at=now))


def cancel_for_phone(s: Session, phone: str, *, why: str, now: dt.datetime) -> int:
    res = s.execute(
        update(SmsMessage).where(SmsMessage.to_phone == phone, SmsMessage.state == "queued")
        .values(state="cancelled", error_code="do_not_call", error_message=why, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(res, "rowcount", 0) or 0)


# ----------------------------------------------------------------------------- receipts


def _escalate(s: Session, *, resident_id: int, campaign_id: int | None, kind: str, reasons: list[str],
              now: dt.datetime) -> int:
    community = s.scalar(select(Resident.community).where(Resident.id == resident_id)) or ""
    return int(s.execute(insert(Escalation).returning(Escalation.id), [{
        "resident_id": resident_id, "campaign_id": campaign_id, "kind": kind, "community": community,
        "priority": SMS_ESCALATION_PRIORITY.get(kind, 3), "status": "open", "reasons": reasons, "notes": "",
        "created_at": now,
    }]).scalar_one())


def _undeliverable(s: Session, mid: int, code: str, explanation: str, now: dt.datetime) -> int:
    m = s.get(SmsMessage, mid)
    assert m is not None
    what = {"second_test_reminder": "第二次核酸提醒短信", "ring_back": "回电提醒短信"}.get(m.kind, "短信")
    reason = f"{what}未送达：{explanation}" + (f"（代码 {code}）" if code else "")
    return _escalate(s, resident_id=m.resident_id, campaign_id=m.campaign_id, kind="sms_undeliverable",
                     reasons=[reason], now=now)


def apply_receipts(store: Store, receipts: Sequence[Receipt], *, now: dt.datetime,
                   explain: Callable[[str], str] = lambda c: c) -> ReceiptStats:
    """Store receipts (repeats dropped by their dedupe key) and move their messages forward only.
    A receipt for a message not known yet is kept and applied once its send result is stored.
    Undelivered/failed receipts get the error and an escalation."""
    stats = ReceiptStats()
    with store.session() as s:
        for r in receipts:
            stats.received += 1
            inserted = _insert_ignore(s, SmsEvent, {
                "dedupe": r.dedupe[:128], "provider": r.provider, "provider_id": r.provider_id or None,
                "out_id": r.out_id or None, "state": r.state, "provider_status": r.provider_status[:32],
                "error_code": r.error_code[:64] or None, "error_message": r.error_message or None,
                "received_at": now,
            }, "dedupe")
            if not inserted:
                stats.duplicates += 1
                continue
            ev = s.scalar(select(SmsEvent).where(SmsEvent.dedupe == r.dedupe[:128]))
            assert ev is not None
            m = _message_for(s, ev)
            if m is None:
                stats.pending += 1
                continue
            _apply_event(s, m, ev, now, stats, explain)
    return stats


def _message_for(s: Session, ev: SmsEvent) -> SmsMessage | None:
    """The message a receipt is about, once its send result is stored (else None: kept pending)."""
    conds = []
    if ev.provider_id:
        conds.append(SmsMessage.provider_id == ev.provider_id)
    if ev.out_id:
        conds.append(SmsMessage.out_id == ev.out_id)
    if not conds:
        return None
    m = s.scalar(select(SmsMessage).where(or_(*conds)).limit(1))
    if m is None or m.state in ("queued", "sending"):
        return None
    return m


def _apply_event(s: Session, m: SmsMessage, ev: SmsEvent, now: dt.datetime, stats: ReceiptStats,
                 explain: Callable[[str], str]) -> None:
    ev.message_id = m.id
    if m.state in FINAL or RANK.get(ev.state, -1) <= RANK.get(m.state, -1):
        stats.stale += 1
        return
    m.state = ev.state
    m.provider_status = ev.provider_status[:32]
    if ev.provider_id and not m.provider_id:
        m.provider_id = ev.provider_id
    m.updated_at = now
    if ev.state == "delivered":
        m.delivered_at = now
    stats.applied += 1
    if ev.state in ("undelivered", "failed"):
        code = ev.error_code or ev.provider_status
        why = ev.error_message if ev.error_message and ev.error_message != code else explain(code or "")
        m.error_code = (code or "")[:64] or None
        m.error_message = why
        s.flush()
        stats.escalations.append(_undeliverable(s, m.id, code or "", why, now))


def _apply_pending_events(s: Session, message_ids: Sequence[int], now: dt.datetime) -> None:
    msgs = list(s.scalars(select(SmsMessage).where(SmsMessage.id.in_(list(message_ids)))))
    pids = [m.provider_id for m in msgs if m.provider_id]
    oids = [m.out_id for m in msgs if m.out_id]
    if not pids and not oids:
        return
    events = list(s.scalars(
        select(SmsEvent).where(SmsEvent.message_id.is_(None),
                               or_(SmsEvent.provider_id.in_(pids), SmsEvent.out_id.in_(oids)))
        .order_by(SmsEvent.id)
    ))
    if not events:
        return
    by_pid = {m.provider_id: m for m in msgs if m.provider_id}
    by_oid = {m.out_id: m for m in msgs if m.out_id}
    stats = ReceiptStats()
    for ev in sorted(events, key=lambda e: RANK.get(e.state, 0)):
        m = by_pid.get(ev.provider_id or "") or by_oid.get(ev.out_id or "")
        if m is not None:
            _apply_event(s, m, ev, now, stats, _default_explain)
    log.info("applied %d receipts that arrived before their send result", stats.applied)


def _default_explain(code: str) -> str:
    return f"运营商报告未送达（{code}）" if code else "运营商报告未送达"


# ----------------------------------------------------------------------------- replies


def latest_message_to(s: Session, phone: str) -> SmsMessage | None:
    return s.scalar(
        select(SmsMessage).where(SmsMessage.to_phone == phone, SmsMessage.state.in_(COUNTED + ("accepted",)))
        .order_by(SmsMessage.sending_since.desc(), SmsMessage.id.desc()).limit(1)
    )


def record_reply(
    store: Store, reply: IncomingReply, *, classify: Callable[[str, str | None], str], now: dt.datetime
) -> ReplyOutcome:
    """Store a resident's reply once (dedupe key) and act on what `classify(text, kind of the latest
    message sent to them)` says it is:
    - opt_out: the number goes on the do-not-call list (every channel), queued texts are cancelled,
      an `opted_out` escalation tells the community (the kind every channel's opt-out has; the reason
      names the channel, 【短信】);
    - second_test_done: kept as a self-reported second test (the raw text stays in the reply row);
    - anything else: an `sms_reply` escalation, a message for the community to read."""
    with store.session() as s:
        if s.scalar(select(SmsReply.id).where(SmsReply.dedupe == reply.dedupe[:128])) is not None:
            rid, intent, res_id = s.execute(
                select(SmsReply.id, SmsReply.intent, SmsReply.resident_id).where(SmsReply.dedupe == reply.dedupe[:128])
            ).one()
            return ReplyOutcome(rid, intent, res_id, duplicate=True)
        resident_id = s.scalar(select(Resident.id).where(Resident.phone == reply.phone))
        last = latest_message_to(s, reply.phone)
        intent = classify(reply.text, last.kind if last else None)
        campaign_id = last.campaign_id if last else None
        inserted = _insert_ignore(s, SmsReply, {
            "dedupe": reply.dedupe[:128], "provider": reply.provider, "phone": reply.phone, "resident_id": resident_id,
            "message_id": last.id if last else None, "text": reply.text, "intent": intent,
            "received_at": reply.received_at,
        }, "dedupe")
        reply_id = s.scalar(select(SmsReply.id).where(SmsReply.dedupe == reply.dedupe[:128]))
        assert reply_id is not None
        if not inserted:
            return ReplyOutcome(reply_id, intent, resident_id, duplicate=True)
        if intent == "opt_out":
            add_do_not_call(s, reply.phone, reason=f"居民短信回复退订：{reply.text}", source="sms_reply", at=now)
            cancelled = cancel_for_phone(s, reply.phone, why="居民短信回复退订", now=now)
            if resident_id is not None:
                _escalate(s, resident_id=resident_id, campaign_id=campaign_id, kind="opted_out",
                          reasons=[f"【短信】居民回复退订（“{reply.text}”），已停止短信和电话"], now=now)
            audit(s, "sms.opt_out", {"phone": mask_phone(reply.phone), "cancelled": cancelled}, at=now)
        elif intent == "second_test_done":
            audit(s, "sms.self_report", {"phone": mask_phone(reply.phone), "text": reply.text}, at=now)
        elif resident_id is not None:
            _escalate(s, resident_id=resident_id, campaign_id=campaign_id, kind="sms_reply",
                      reasons=[f"居民短信回复：“{reply.text}”"], now=now)
    return ReplyOutcome(reply_id, intent, resident_id)


# ----------------------------------------------------------------------------- status, summaries


def sms_status(store: Store) -> dict[str, Any]:
    with store.session() as s:
        by = s.execute(select(SmsMessage.kind, SmsMessage.state, func.count()).group_by(SmsMessage.kind, SmsMessage.state))
        kinds: dict[str, dict[str, int]] = {}
        for kind, state, n in by:
            kinds.setdefault(kind, {})[state] = int(n)
        errors = dict(s.execute(
            select(SmsMessage.error_code, func.count()).where(SmsMessage.error_code.is_not(None))
            .group_by(SmsMessage.error_code)
        ).all())
        replies = dict(s.execute(select(SmsReply.intent, func.count()).group_by(SmsReply.intent)).all())
        nxt = s.scalar(select(func.min(SmsMessage.scheduled_for)).where(SmsMessage.state == "queued"))
        stuck = int(s.scalar(select(func.count()).select_from(SmsMessage).where(SmsMessage.state == "sending")) or 0)
    return {"messages": kinds, "errors": {str(k): int(v) for k, v in errors.items()},
            "replies": {str(k): int(v) for k, v in replies.items()}, "sending": stuck,
            "next_scheduled": nxt.isoformat() if nxt else None}


def sms_summary(store: Store, campaign_id: int | None = None) -> dict[str, int]:
    """The demo's SMS lines: reminders sent / delivered, ring-back texts sent, undeliverable."""
    with store.session() as s:
        q = select(SmsMessage.kind, SmsMessage.state, func.count()).group_by(SmsMessage.kind, SmsMessage.state)
        if campaign_id is not None:
            q = q.where(SmsMessage.campaign_id == campaign_id)
        counts = {(k, st): int(n) for k, st, n in s.execute(q)}
    sent_states = ("accepted", "sent", "delivered", "undelivered")

    def total(kind: str, states: Iterable[str]) -> int:
        return sum(counts.get((kind, st), 0) for st in states)

    return {
        "reminders_sent": total("second_test_reminder", sent_states),
        "reminders_delivered": total("second_test_reminder", ("delivered",)),
        "ring_back_sent": total("ring_back", sent_states),
        "ring_back_delivered": total("ring_back", ("delivered",)),
        "sms_undeliverable": sum(n for (k, st), n in counts.items() if st in ("undelivered", "failed")),
        "sms_queued": sum(n for (k, st), n in counts.items() if st in ("queued", "sending")),
    }


def sms_state_by_resident(s: Session, resident_ids: Sequence[int]) -> dict[int, str]:
    """Per resident, the states of their texts in words (for exports), e.g. "第二次核酸提醒：已送达"."""
    labels = {"queued": "待发送", "sending": "发送中", "accepted": "已提交", "sent": "已发出", "delivered": "已送达",
              "undelivered": "未送达", "failed": "发送失败", "cancelled": "已取消"}
    kinds = {"second_test_reminder": "第二次核酸提醒", "ring_back": "回电提醒"}
    out: dict[int, list[str]] = {}
    ids = list(resident_ids)
    for i in range(0, len(ids), 1000):
        q = (select(SmsMessage.resident_id, SmsMessage.kind, SmsMessage.state, SmsMessage.error_message)
             .where(SmsMessage.resident_id.in_(ids[i : i + 1000])).order_by(SmsMessage.id))
        for rid, kind, state, err in s.execute(q):
            text = f"{kinds.get(kind, kind)}：{labels.get(state, state)}"
            if state in ("undelivered", "failed") and err:
                text += f"（{err}）"
            out.setdefault(rid, []).append(text)
        for reply_rid, txt in s.execute(
            select(SmsReply.resident_id, SmsReply.text).where(SmsReply.resident_id.in_(ids[i : i + 1000]),
                                                              SmsReply.intent == "second_test_done")
        ):
            if reply_rid is not None:
                out.setdefault(reply_rid, []).append(f"短信自报已做第二次核酸（“{txt}”）")
    return {k: "；".join(v) for k, v in out.items()}


def last_attempt_by_resident(s: Session, campaign_id: int | None, resident_ids: Sequence[int]) -> dict[int, CallAttempt]:
    """The latest call attempt of each resident (in one campaign, or any)."""
    out: dict[int, CallAttempt] = {}
    ids = list(resident_ids)
    for i in range(0, len(ids), 1000):
        q = select(CallAttempt).where(CallAttempt.resident_id.in_(ids[i : i + 1000]))
        if campaign_id is not None:
            q = q.where(CallAttempt.campaign_id == campaign_id)
        for a in s.scalars(q.order_by(CallAttempt.started_at, CallAttempt.id)):
            out[a.resident_id] = a
    return out


def resident_for_preview(store: Store, phone: str) -> tuple[str, str, dt.date | None] | None:
    """(name, phone, arrival date) of the resident with this number, for `outreach sms preview`."""
    with store.session() as s:
        row = s.execute(select(Resident.name, Resident.phone, Resident.arrival_date).where(Resident.phone == phone)).first()
    return (row[0], row[1], row[2]) if row else None
