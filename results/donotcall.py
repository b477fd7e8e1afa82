"""The do-not-call list: numbers the robot never calls again (residents who said 别再打了, staff entries,
scam-suspicion hang-ups, SMS opt-out replies).

Every change is written to the audit log with the masked number, in the same transaction. Numbers are
stored as E.164 text (`+8613800138000`); callers normalize what a person typed first
(`campaigns.contacts.normalize_phone`).

Used by: the campaign engine (opt-outs in calls), `outreach dnc list|add|remove`, SMS reply handling.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import CursorResult, delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from common.masking import mask_phone
from results.models import AuditLog, DoNotCall
from results.store import Store

# Where an entry came from (DoNotCall.source).
SOURCES = ("opt_out", "scam_hang_up", "staff", "sms_reply", "import")
SOURCE_LABELS = {
    "opt_out": "通话中要求不再来电",
    "scam_hang_up": "怀疑诈骗后挂断",
    "staff": "工作人员添加",
    "sms_reply": "短信回复退订",
    "import": "导入",
}


@dataclass(frozen=True, slots=True)
class DoNotCallEntry:
    phone: str
    reason: str
    source: str
    created_at: dt.datetime


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _audit(s: Session, action: str, phone: str, source: str, actor: str, at: dt.datetime, reason: str = "") -> None:
    details = {"phone": mask_phone(phone), "source": source}
    if reason:
        details["reason"] = reason
    s.add(AuditLog(action=action, details=details, actor=actor, at=at))


def add_do_not_call(
    s: Session, phone: str, *, reason: str, source: str, at: dt.datetime | None = None, actor: str = ""
) -> bool:
    """Put a number on the list inside the caller's transaction; False when it was there already
    (the first entry, with its reason, is kept). Audited either way."""
    at = at or _utcnow()
    values = {"phone": phone, "reason": reason[:200], "source": source, "created_at": at}
    dialect = s.get_bind().dialect.name
    stmt = (pg_insert(DoNotCall) if dialect == "postgresql" else sqlite_insert(DoNotCall)).values(**values)
    added = cast(CursorResult[Any], s.execute(stmt.on_conflict_do_nothing(index_elements=["phone"]))).rowcount
    _audit(s, "do_not_call.add", phone, source, actor, at, reason)
    return bool(added)


def add_do_not_call_numbers(
    store: Store, phones: Iterable[str], *, reason: str, source: str, now: dt.datetime | None = None, actor: str = ""
) -> int:
    """Put several numbers on the list in one transaction; returns how many were new."""
    with store.session() as s:
        return sum(add_do_not_call(s, p, reason=reason, source=source, at=now, actor=actor) for p in phones)


def remove_do_not_call(store: Store, phone: str, *, actor: str = "", reason: str = "", now: dt.datetime | None = None) -> bool:
    """Take a number off the list (audited); False when it was not on it."""
    at = now or _utcnow()
    with store.session() as s:
        removed = cast(CursorResult[Any], s.execute(delete(DoNotCall).where(DoNotCall.phone == phone))).rowcount
        if removed:
            _audit(s, "do_not_call.remove", phone, "staff", actor, at, reason)
    return bool(removed)


def is_do_not_call(store: Store, phone: str) -> bool:
    with store.session() as s:
        return s.execute(select(DoNotCall.phone).where(DoNotCall.phone == phone)).first() is not None


def list_do_not_call(store: Store, *, phone: str | None = None) -> list[DoNotCallEntry]:
    """Every entry, newest first (or only `phone`'s)."""
    with store.session() as s:
        q = select(DoNotCall).order_by(DoNotCall.created_at.desc(), DoNotCall.phone)
        if phone is not None:
            q = q.where(DoNotCall.phone == phone)
        return [DoNotCallEntry(d.phone, d.reason, d.source, d.created_at) for d in s.scalars(q)]
