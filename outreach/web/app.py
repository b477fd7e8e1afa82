"""The web console: FastAPI, server-rendered Jinja2 pages with htmx, vendored static assets (no CDN).

`create_app(config, store)` builds it; `outreach serve` runs it with uvicorn. Pages are in Simplified
Chinese; routes of staff pages are in outreach/web/staff.py, of worker pages in outreach/web/worker.py.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from fastapi import Depends, FastAPI, Form, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy import text
from starlette.exceptions import HTTPException as StarletteHTTPException

from outreach.config import Config
from outreach.services import accounts
from outreach.services.accounts import LoginPolicy, LoginRefused
from outreach.web import labels
from outreach.web.dashcache import DashboardCache
from outreach.web.metrics import metrics_response
from outreach.web.security import (
    PRELOGIN_COOKIE,
    SESSION_COOKIE,
    LoginRequired,
    client_ip,
    cookie_args,
    csrf_protect,
    current_session,
    now_of,
)
from results.accounts import SessionInfo
from results.store import Store

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def create_app(
    config: Config,
    store: Store,
    *,
    clock: Callable[[], dt.datetime] = _utcnow,
    data_dir: Path | None = None,
    policy: LoginPolicy | None = None,
    dashboard_ttl_s: float = 3.0,
) -> FastAPI:
    """The app over `store`. `data_dir` holds uploaded files and their rejects (default: ./var/web);
    `clock` is the time used for sessions and lockouts (tests move it); the dashboard's numbers are
    recomputed at most every `dashboard_ttl_s` seconds per campaign."""
    app = FastAPI(title="outreach", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.config = config
    app.state.store = store
    app.state.clock = clock
    app.state.policy = policy or LoginPolicy(
        idle=dt.timedelta(minutes=config.web.session_idle_minutes),
        lifetime=dt.timedelta(hours=config.web.session_max_hours),
        max_failures=config.web.login_max_failures,
        lockout=dt.timedelta(minutes=config.web.lockout_minutes),
    )
    app.state.data_dir = Path(data_dir or config.web.data_dir)
    app.state.audio_dir = Path(config.turn.audio_dir)
    app.state.tz = ZoneInfo(config.campaign.timezone)
    app.state.dashboard_cache = DashboardCache(dashboard_ttl_s)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    labels.install(templates.env, app.state.tz)
    app.state.templates = templates
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    from outreach.web import staff, worker

    app.include_router(staff.router)
    app.include_router(worker.router)
    from outreach.sms_wiring import sms_router

    app.include_router(sms_router(config, store))  # delivery receipts and replies: /sms/... (signed, no login)

    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, exc: LoginRequired) -> Response:
        if request.headers.get("hx-request") or request.url.path.endswith(("/data", ".json")):
            return JSONResponse({"detail": "请先登录"}, status_code=401, headers={"HX-Redirect": "/login"})
        nxt = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(nxt)}", status_code=303)

    def error_page(request: Request, status: int, message: str) -> Response:
        if request.url.path.startswith(("/healthz", "/metrics")) or "application/json" in request.headers.get("accept", ""):
            return JSONResponse({"detail": message}, status_code=status)
        return render(request, "error.html", {"status": status, "message": message}, status_code=status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        messages = {404: "页面不存在或您无权查看", 403: "请求被拒绝", 405: "不支持的请求方式", 413: "请求内容过大",
                    400: "请求无效（表单内容过大、字段过多或格式不对）"}
        # Our own details are Chinese; the framework's are English ("Method Not Allowed", "Too many fields").
        ours = isinstance(exc.detail, str) and _CJK.search(exc.detail) is not None
        detail = exc.detail if ours and exc.status_code != 404 else None
        return error_page(request, exc.status_code, detail or messages.get(exc.status_code, "请求出错"))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        """A path, query or form value of the wrong type or missing: 422 naming the parameter, in Chinese."""
        return error_page(request, 422, "；".join(_invalid_field(e) for e in exc.errors()[:5]) or "请求参数无效")

    @app.get("/healthz")
    def healthz() -> JSONResponse:
        try:
            with store.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:  # any database failure is "unhealthy", reported, not raised
            log.warning("healthz: database check failed: %s", exc)
            return JSONResponse({"status": "error", "database": "unavailable"}, status_code=503)
        return JSONResponse({"status": "ok", "database": "ok"})

    @app.get("/metrics")
    def metrics() -> Response:
        return metrics_response(store)

    @app.get("/")
    def home(request: Request) -> Response:
        sess = current_session(request)
        if sess is None:
            return RedirectResponse("/login", status_code=303)
        return RedirectResponse("/queue" if sess.user.role == "worker" else "/campaigns", status_code=303)

    @app.get("/login")
    def login_form(request: Request, next: str = "/") -> Response:
        token = secrets.token_urlsafe(24)
        resp = render(request, "login.html", {"prelogin": token, "next": _safe_next(next), "error": None})
        resp.set_cookie(PRELOGIN_COOKIE, token, max_age=3600, **cookie_args(request))
        return resp

    @app.post("/login")
    def login(
        request: Request,
        username: str = Form(""),
        password: str = Form(""),
        csrf_token: str = Form(""),
        next: str = Form("/"),
    ) -> Response:
        cookie = request.cookies.get(PRELOGIN_COOKIE, "")
        if not cookie or not csrf_token or not secrets.compare_digest(cookie, csrf_token):
            raise HTTPException(status_code=403, detail="登录页面已过期，请刷新后重新登录")
        try:
            new = accounts.login(store, username, password, now=now_of(request), ip=client_ip(request),
                                 policy=app.state.policy)
        except LoginRefused as exc:
            token = secrets.token_urlsafe(24)
            resp = render(request, "login.html", {"prelogin": token, "next": _safe_next(next), "error": exc.zh,
                                                  "username": username}, status_code=429 if exc.retry_at else 401)
            resp.set_cookie(PRELOGIN_COOKIE, token, max_age=3600, **cookie_args(request))
            return resp
        target = _safe_next(next)
        if target == "/":
            target = "/queue" if new.session.user.role == "worker" else "/campaigns"
        done = RedirectResponse(target, status_code=303)
        done.set_cookie(SESSION_COOKIE, new.token, max_age=int(app.state.policy.lifetime.total_seconds()),
                        **cookie_args(request))
        done.delete_cookie(PRELOGIN_COOKIE, path="/")
        return done

    @app.post("/logout")
    def logout(request: Request, sess: SessionInfo = Depends(csrf_protect)) -> Response:
        accounts.logout(store, request.cookies.get(SESSION_COOKIE, ""), actor=sess.user.name, now=now_of(request))
        resp = RedirectResponse("/login", status_code=303)
        resp.delete_cookie(SESSION_COOKIE, path="/")
        return resp

    return app


_CJK = re.compile(r"[\u4e00-\u9fff]")
_WHY_ZH = {"missing": "缺少此项", "int_parsing": "应为整数", "float_parsing": "应为数字", "bool_parsing": "应为是或否",
           "string_too_long": "过长", "int_from_float": "应为整数"}


def _invalid_field(error: Mapping[str, Any]) -> str:
    """`参数 campaign_id 无效：应为整数` for one of FastAPI's validation errors (its input is not echoed)."""
    loc = [str(x) for x in error.get("loc", ()) if x not in ("path", "query", "body", "header", "cookie")]
    name = ".".join(loc) or "?"
    return f"参数 {name} 无效：{_WHY_ZH.get(str(error.get('type', '')), '格式不对')}"


def _safe_next(value: str) -> str:
    """Only local paths: never redirect to another site after login."""
    if not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


def render(request: Request, name: str, context: dict[str, Any], *, status_code: int = 200,
           headers: dict[str, str] | None = None) -> HTMLResponse:
    sess = current_session(request)
    ctx = {"user": sess.user if sess else None, "csrf": sess.csrf_token if sess else "", **context}
    templates: Jinja2Templates = request.app.state.templates
    resp: HTMLResponse = templates.TemplateResponse(request, name, ctx, status_code=status_code, headers=headers)
    resp.headers.setdefault("Cache-Control", "no-store")
    resp.headers.setdefault("X-Frame-Options", "DENY")
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    resp.headers.setdefault("Referrer-Policy", "same-origin")
    return resp
