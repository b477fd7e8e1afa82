"""Escalation use cases of community workers: assign to self, record a callback or visit, close, reopen.
Everything is limited to the caller's communities (`scope`; None = all) and written to the audit log."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from outreach.services import ServiceError
from results import review
from results.models import Escalation
from results.review import CALLBACK_ACTIONS, NotFoundInScope
from results.store import Store

ACTION_ZH = {"none": "无", "visit": "上门", "hospital": "转医院", "tested": "已做核酸", "other": "其他"}
MAX_NOTES = 2000


class NotFound(ServiceError):
    def __init__(self, what: str) -> None:
        super().__init__(f"not found: {what}", zh="未找到")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def assign_to_self(store: Store, escalation_id: int, *, user: str, scope: Sequence[str] | None) -> Escalation:
    try:
        return review.assign(store, escalation_id, to=user, scope=scope, actor=user, now=_now())
    except NotFoundInScope as exc:
        raise NotFound(str(exc)) from exc


def record_callback(store: Store, escalation_id: int, *, user: str, scope: Sequence[str] | None, reached: bool,
                    action: str, notes: str, close: bool) -> Escalation:
    if action not in CALLBACK_ACTIONS:
        raise ServiceError(f"unknown follow-up action {action!r}", zh=f"未知的后续处理：{action}")
    if len(notes) > MAX_NOTES:
        raise ServiceError("notes too long", zh=f"备注最多 {MAX_NOTES} 字")
    try:
        return review.add_callback(store, escalation_id, reached=reached, action=action, notes=notes.strip(),
                                   close=close, scope=scope, actor=user, now=_now())
    except NotFoundInScope as exc:
        raise NotFound(str(exc)) from exc


def close(store: Store, escalation_id: int, *, user: str, scope: Sequence[str] | None, result: str = "") -> Escalation:
    try:
        return review.close(store, escalation_id, result=result, scope=scope, actor=user, now=_now())
    except NotFoundInScope as exc:
        raise NotFound(str(exc)) from exc


def reopen(store: Store, escalation_id: int, *, user: str, scope: Sequence[str] | None) -> Escalation:
    try:
        return review.reopen(store, escalation_id, scope=scope, actor=user, now=_now())
    except NotFoundInScope as exc:
        raise NotFound(str(exc)) from exc
