"""Accounts of the web console: adding users (argon2 password hashes), logging in with backoff and lockout
after failed attempts, sessions with an idle and an absolute expiry."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from outreach.services import ServiceError
from results import accounts as db
from results.accounts import ROLES, SessionInfo, UserInfo
from results.store import Store

_hasher = PasswordHasher()
# Verified against when the account does not exist, so an unknown name costs as much time as a known one.
_DUMMY_HASH = _hasher.hash("not a password of anyone")
MIN_PASSWORD = 8


@dataclass(frozen=True, slots=True)
class LoginPolicy:
    idle: dt.timedelta = dt.timedelta(minutes=30)
    lifetime: dt.timedelta = dt.timedelta(hours=12)
    free_failures: int = 3  # failures before any delay
    max_failures: int = 8  # then the name is locked for `lockout`
    lockout: dt.timedelta = dt.timedelta(minutes=15)
    max_backoff: dt.timedelta = dt.timedelta(seconds=60)

    def block_after(self, failures: int, now: dt.datetime) -> dt.datetime | None:
        """Until when the next login with this name is refused after `failures` consecutive failures."""
        if failures >= self.max_failures:
            return now + self.lockout
        if failures >= self.free_failures:
            return now + min(dt.timedelta(seconds=2 ** (failures - self.free_failures)), self.max_backoff)
        return None


class LoginRefused(ServiceError):
    """Wrong name or password, or too many failures (`retry_at` says when to try again)."""

    def __init__(self, zh: str, *, retry_at: dt.datetime | None = None, locked: bool = False) -> None:
        super().__init__("login refused", zh=zh)
        self.retry_at = retry_at
        self.locked = locked


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def add_user(store: Store, name: str, *, role: str, communities: Sequence[str], password: str, actor: str,
             replace: bool = False, now: dt.datetime | None = None) -> UserInfo:
    name = name.strip()
    if not name or len(name) > 100:
        raise ServiceError("a user name needs 1 to 100 characters", zh="用户名需要 1 到 100 个字符")
    if role not in ROLES:
        raise ServiceError(f"--role {role!r}: choose one of {', '.join(ROLES)}", zh=f"未知角色：{role}")
    comms = [c.strip() for c in communities if c.strip()]
    if role == "worker" and not comms:
        raise ServiceError("a worker needs at least one --community", zh="社区工作人员至少要有一个社区")
    if role != "worker" and comms:
        raise ServiceError(f"--community applies to workers only ({role} sees every community)",
                           zh="只有社区工作人员需要指定社区")
    if len(password) < MIN_PASSWORD:
        raise ServiceError(f"the password needs at least {MIN_PASSWORD} characters", zh=f"密码至少 {MIN_PASSWORD} 位")
    try:
        return db.add_user(store, name=name, role=role, communities=comms, password_hash=hash_password(password),
                           now=now or _now(), actor=actor, replace=replace)
    except db.AccountError as exc:
        raise ServiceError(f"{exc} (use --reset to change it)", zh=f"账号“{name}”已存在") from exc


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class NewSession:
    token: str  # goes into the cookie; only its hash is stored
    session: SessionInfo


def login(store: Store, name: str, password: str, *, now: dt.datetime, ip: str,
          policy: LoginPolicy = LoginPolicy()) -> NewSession:
    """Check the password and open a session.

    Raises:
        LoginRefused: wrong name or password (the same message for both), or the name is backing off or
            locked after repeated failures: then the password is not even checked.
    """
    name = name.strip()[:100]
    t = db.throttle_of(store, name)
    if t.blocked_until is not None and t.blocked_until > now:
        locked = t.failures >= policy.max_failures
        wait = max(1, int((t.blocked_until - now).total_seconds() + 0.999))
        zh = (f"连续登录失败次数过多，账号已锁定，请 {max(1, wait // 60)} 分钟后再试" if locked
              else f"登录失败次数过多，请 {wait} 秒后再试")
        raise LoginRefused(zh, retry_at=t.blocked_until, locked=locked)
    found = db.get_user(store, name)
    ok = False
    try:
        ok = _hasher.verify(found[1] if found else _DUMMY_HASH, password) and found is not None
    except (VerificationError, InvalidHashError):
        ok = False
    if not ok or found is None:
        failures = t.failures + 1
        until = policy.block_after(failures, now)
        db.record_failure(store, name, now=now, blocked_until=until, failures=failures, ip=ip)
        if until is not None and failures >= policy.max_failures:
            raise LoginRefused("连续登录失败次数过多，账号已锁定 15 分钟", retry_at=until, locked=True)
        raise LoginRefused("用户名或密码错误", retry_at=until)
    user, stored_hash = found
    if _hasher.check_needs_rehash(stored_hash):
        db.set_password_hash(store, user.id, hash_password(password))
    if t.failures:
        db.clear_failures(store, name)
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    expires = now + policy.lifetime
    db.create_session(store, user=user, token_hash=_token_hash(token), csrf_token=csrf, now=now, expires_at=expires,
                      ip=ip)
    return NewSession(token, SessionInfo(user, csrf, now, expires))


def session_of(store: Store, token: str, *, now: dt.datetime, policy: LoginPolicy = LoginPolicy()) -> SessionInfo | None:
    if not token:
        return None
    return db.get_session(store, _token_hash(token), now=now, idle=policy.idle)


def logout(store: Store, token: str, *, actor: str, now: dt.datetime) -> None:
    db.delete_session(store, _token_hash(token), actor=actor, now=now)


@dataclass(frozen=True, slots=True)
class DemoAccount:
    name: str
    role: str
    communities: tuple[str, ...]
    password: str


def demo_accounts(store: Store) -> list[DemoAccount]:
    """One staff and one worker account (for the community with the most open escalations) in a demo
    store, with fresh random passwords."""
    from results.review import busiest_community

    community = busiest_community(store) or "东湖社区"
    out = []
    for name, role, comms in (("demo-staff", "staff", ()), ("demo-worker", "worker", (community,))):
        password = secrets.token_urlsafe(9)
        add_user(store, name, role=role, communities=comms, password=password, actor="demo", replace=True)
        out.append(DemoAccount(name, role, tuple(comms), password))
    return out
