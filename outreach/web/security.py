"""Login sessions and CSRF for the web console.

- The session cookie holds a random token (HttpOnly, SameSite=Lax, Secure when the request came over
  HTTPS, directly or through a proxy that says so); the store keeps its hash, the user and a CSRF token.
- Every unsafe request (POST) must carry the session's CSRF token, as the form field `csrf_token` or the
  header `X-CSRF-Token` (htmx sends it), else 403. The login form, before there is a session, uses a
  double-submit cookie.
- A page the user's role does not include, or an id outside a worker's communities, is 404.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Callable
from typing import Any

from fastapi import Depends, HTTPException, Request

from outreach.services import accounts
from results.accounts import SessionInfo, UserInfo

SESSION_COOKIE = "outreach_session"
PRELOGIN_COOKIE = "outreach_login_csrf"


class LoginRequired(Exception):
    """No live session: pages redirect to the login form, htmx and JSON calls get 401."""


def is_https(request: Request) -> bool:
    return request.url.scheme == "https"


def cookie_args(request: Request) -> dict[str, Any]:
    return {"httponly": True, "samesite": "lax", "secure": is_https(request), "path": "/"}


def now_of(request: Request) -> dt.datetime:
    clock: Callable[[], dt.datetime] = request.app.state.clock
    return clock()


def client_ip(request: Request) -> str:
    return request.client.host if request.client else ""


def current_session(request: Request) -> SessionInfo | None:
    if "session" in request.state._state:
        cached: SessionInfo | None = request.state.session
        return cached
    token = request.cookies.get(SESSION_COOKIE, "")
    sess = accounts.session_of(request.app.state.store, token, now=now_of(request), policy=request.app.state.policy)
    request.state.session = sess
    return sess


def require_session(request: Request) -> SessionInfo:
    sess = current_session(request)
    if sess is None:
        raise LoginRequired()
    return sess


def require_role(*roles: str) -> Callable[[Request], UserInfo]:
    def dep(request: Request) -> UserInfo:
        sess = require_session(request)
        if sess.user.role not in roles:
            raise HTTPException(status_code=404)
        return sess.user

    return dep


staff_user = require_role("admin", "staff")
any_user = require_role("admin", "staff", "worker")
admin_user = require_role("admin")


async def csrf_protect(request: Request, sess: SessionInfo = Depends(require_session)) -> SessionInfo:
    """For every POST: the session's CSRF token must come back with the request."""
    sent = request.headers.get("x-csrf-token", "")
    if not sent:
        form = await request.form()
        value = form.get("csrf_token", "")
        sent = value if isinstance(value, str) else ""
    if not sent or not secrets.compare_digest(sent, sess.csrf_token):
        raise HTTPException(status_code=403, detail="页面已过期或请求来源不可信，请刷新页面后重试")
    return sess
