"""All SQL of the web console's accounts: users, login sessions, failed-login throttling, the audit log.

Passwords are hashed by the caller (outreach.services.accounts, argon2); this module stores hashes only.
Session tokens are stored as their SHA-256, so a copy of the database does not log anyone in.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, or_, select, update

from results.models import AuditLog, LoginThrottle, User, WebSession
from results.store import Store

ROLES = ("admin", "staff", "worker")


class AccountError(ValueError):
    """An account operation is not possible; the message names the account."""


@dataclass(frozen=True, slots=True)
class UserInfo:
    id: int
    name: str
    role: str
    communities: tuple[str, ...]
    active: bool

    @property
    def scope(self) -> tuple[str, ...] | None:
        """The communities this user may see; None = all (admin and staff)."""
        return None if self.role in ("admin", "staff") else self.communities

    @classmethod
    def of(cls, u: User) -> UserInfo:
        return cls(id=u.id, name=u.name, role=u.role, communities=tuple(u.communities or ()), active=u.active)


@dataclass(frozen=True, slots=True)
class SessionInfo:
    user: UserInfo
    csrf_token: str
    created_at: dt.datetime
    expires_at: dt.datetime


@dataclass(frozen=True, slots=True)
class Throttle:
    failures: int
    blocked_until: dt.datetime | None


def _audit(s: Any, action: str, actor: str, details: dict[str, Any], at: dt.datetime) -> None:
    s.add(AuditLog(action=action, actor=actor, details=details, at=at))


# ----------------------------------------------------------------------------- users


def add_user(
    store: Store, *, name: str, role: str, communities: Sequence[str], password_hash: str, now: dt.datetime,
    actor: str = "", replace: bool = False,
) -> UserInfo:
    """Create an account (or, with `replace`, reset its role, communities and password).

    Raises:
        AccountError: the name is taken (without `replace`) or the role is unknown.
    """
    if role not in ROLES:
        raise AccountError(f"unknown role {role!r}: choose one of {', '.join(ROLES)}")
    with store.session() as s:
        u = s.scalar(select(User).where(User.name == name))
        if u is not None and not replace:
            raise AccountError(f"an account named {name!r} already exists")
        if u is None:
            u = User(name=name, role=role, communities=list(communities), password_hash=password_hash, active=True,
                     created_at=now)
            s.add(u)
        else:
            u.role, u.communities, u.password_hash, u.active = role, list(communities), password_hash, True
            s.execute(delete(WebSession).where(WebSession.user_id == u.id))
        s.flush()
        _audit(s, "user.add" if not replace else "user.reset", actor,
               {"user": name, "role": role, "communities": list(communities)}, now)
        return UserInfo.of(u)


def get_user(store: Store, name: str) -> tuple[UserInfo, str] | None:
    """(user, password hash) of an active account, or None."""
    with store.session() as s:
        u = s.scalar(select(User).where(User.name == name, User.active.is_(True)))
        return (UserInfo.of(u), u.password_hash) if u is not None else None


def set_password_hash(store: Store, user_id: int, password_hash: str) -> None:
    """Store a rehashed password (argon2 parameters changed since it was set)."""
    with store.session() as s:
        s.execute(update(User).where(User.id == user_id).values(password_hash=password_hash))


def list_users(store: Store) -> list[UserInfo]:
    with store.session() as s:
        return [UserInfo.of(u) for u in s.scalars(select(User).order_by(User.name))]


# ----------------------------------------------------------------------------- failed logins


def throttle_of(store: Store, name: str) -> Throttle:
    with store.session() as s:
        t = s.get(LoginThrottle, name)
        return Throttle(t.failures, t.blocked_until) if t is not None else Throttle(0, None)


def record_failure(store: Store, name: str, *, now: dt.datetime, blocked_until: dt.datetime | None,
                   failures: int, ip: str) -> None:
    with store.session() as s:
        t = s.get(LoginThrottle, name)
        if t is None:
            t = LoginThrottle(name=name)
            s.add(t)
        t.failures, t.last_failed_at, t.blocked_until = failures, now, blocked_until
        _audit(s, "login.failed", name, {"failures": failures, "ip": ip,
                                         "blocked_until": blocked_until.isoformat() if blocked_until else None}, now)


def clear_failures(store: Store, name: str) -> None:
    with store.session() as s:
        s.execute(delete(LoginThrottle).where(LoginThrottle.name == name))


# ----------------------------------------------------------------------------- sessions


def create_session(store: Store, *, user: UserInfo, token_hash: str, csrf_token: str, now: dt.datetime,
                   expires_at: dt.datetime, ip: str) -> None:
    with store.session() as s:
        s.execute(delete(WebSession).where(WebSession.expires_at < now))  # housekeeping
        s.add(WebSession(token_hash=token_hash, user_id=user.id, csrf_token=csrf_token, created_at=now,
                         last_seen_at=now, expires_at=expires_at))
        _audit(s, "login", user.name, {"ip": ip}, now)


def get_session(store: Store, token_hash: str, *, now: dt.datetime, idle: dt.timedelta) -> SessionInfo | None:
    """The live session of this token (not expired, not idle longer than `idle`), its last use set to now."""
    with store.session() as s:
        row = s.execute(
            select(WebSession, User).join(User, User.id == WebSession.user_id)
            .where(WebSession.token_hash == token_hash)
        ).first()
        if row is None:
            return None
        ws, u = row
        if not u.active or ws.expires_at <= now or ws.last_seen_at + idle <= now:
            s.delete(ws)
            return None
        if (now - ws.last_seen_at).total_seconds() >= 30:  # fewer writes: last use to the half minute
            ws.last_seen_at = now
        return SessionInfo(UserInfo.of(u), ws.csrf_token, ws.created_at, ws.expires_at)


def delete_session(store: Store, token_hash: str, *, actor: str, now: dt.datetime) -> None:
    with store.session() as s:
        s.execute(delete(WebSession).where(WebSession.token_hash == token_hash))
        _audit(s, "logout", actor, {}, now)


# ----------------------------------------------------------------------------- audit log


def audit(store: Store, action: str, *, actor: str, details: dict[str, Any], now: dt.datetime) -> None:
    with store.session() as s:
        _audit(s, action, actor, details, now)


@dataclass(frozen=True, slots=True)
class AuditRow:
    id: int
    at: dt.datetime
    actor: str
    action: str
    details: dict[str, Any]


def audit_page(store: Store, *, actor: str = "", action: str = "", before_id: int | None = None,
               limit: int = 50) -> list[AuditRow]:
    """Newest first; `before_id` pages further back."""
    q = select(AuditLog).order_by(AuditLog.id.desc()).limit(limit)
    if actor:
        q = q.where(AuditLog.actor == actor)
    if action:
        q = q.where(or_(AuditLog.action == action, AuditLog.action.startswith(action + ".")))
    if before_id is not None:
        q = q.where(AuditLog.id < before_id)
    with store.session() as s:
        return [AuditRow(a.id, a.at, a.actor, a.action, dict(a.details or {})) for a in s.scalars(q)]


def audit_count(store: Store) -> int:
    with store.session() as s:
        return int(s.scalar(select(func.count()).select_from(AuditLog)) or 0)
