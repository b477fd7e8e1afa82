"""Pages of hotline staff (and admins): campaigns, the live dashboard, creating, rehearsing and running a
campaign, uploading resident files, downloading exports."""

from __future__ import annotations

import datetime as dt
import re
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Form, HTTPException, Request, UploadFile
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.background import BackgroundTask

from outreach.services import ServiceError
from outreach.services import campaigns as camp_service
from outreach.services.exports import WHAT_ZH, export_campaign
from outreach.services.imports import import_file
from outreach.services.rehearsal import rehearse_campaign
from outreach.web.security import csrf_protect, now_of, staff_user
from results import accounts as accounts_db
from results import campaigns as db
from results.accounts import SessionInfo, UserInfo
from results.residents import count_residents

router = APIRouter()

UPLOAD_SUFFIXES = (".csv", ".xlsx")
_SAFE_NAME = re.compile(r"[^\w.\-\u4e00-\u9fff]+")


def _render(request: Request, name: str, ctx: dict[str, Any], status_code: int = 200) -> HTMLResponse:
    from outreach.web.app import render

    return render(request, name, ctx, status_code=status_code)


def _campaign_by_id(request: Request, campaign_id: int) -> db.CampaignInfo:
    for c in db.list_campaigns(request.app.state.store):
        if c.id == campaign_id:
            return c
    raise HTTPException(status_code=404)


@router.get("/campaigns")
def campaigns(request: Request, user: UserInfo = Depends(staff_user)) -> HTMLResponse:
    store = request.app.state.store
    rows = []
    for c in reversed(db.list_campaigns(store)):
        st = db.campaign_status(store, c.name)
        total = sum(st["contacts"].values())
        done = st["contacts"].get("done", 0) + st["contacts"].get("skipped", 0)
        rows.append({"c": c, "total": total, "done": done, "pct": round(100 * done / total) if total else 0})
    return _render(request, "campaigns.html", {"rows": rows, "residents": count_residents(store)})


@router.get("/campaigns/new")
def new_campaign(request: Request, user: UserInfo = Depends(staff_user)) -> HTMLResponse:
    return _render(request, "campaign_new.html", _new_ctx(request, {}, None))


def _new_ctx(request: Request, form: dict[str, Any], error: str | None) -> dict[str, Any]:
    cfg = request.app.state.config
    d = camp_service.campaign_defaults(cfg)
    from results.residents import list_communities, list_source_files

    store = request.app.state.store
    return {
        "form": form, "error": error, "defaults": d, "script_default": cfg.campaign.script,
        "communities": list_communities(store), "files": list_source_files(store),
        "windows_text": ",".join(d["windows"].get("daily", [])),
    }


def _lines(value: str) -> list[str]:
    return [v.strip() for v in re.split(r"[,\n，、]+", value) if v.strip()]


def _check_limits(max_concurrent: int | None, cps: float | None, max_attempts: int | None,
                  max_per_day: int | None) -> None:
    """The bounds of the campaign forms' numbers (creation and settings), named in the staff's words."""
    for label, value, lo, hi in (("最大并发线路", max_concurrent, 1, 2000), ("每人最多呼叫次数", max_attempts, 1, 10),
                                 ("每人每天最多呼叫次数", max_per_day, 1, 10)):
        if value is not None and not lo <= value <= hi:
            raise ServiceError(f"{label} out of range", zh=f"{label}应在 {lo} 到 {hi} 之间")
    if cps is not None and not 0.01 <= cps <= 100:
        raise ServiceError("cps out of range", zh="每秒新呼叫数应在 0.01 到 100 之间")


@router.post("/campaigns")
def create_campaign(
    request: Request,
    name: str = Form(""),
    script: str = Form(""),
    communities: list[str] = Form([]),
    source_files: list[str] = Form([]),
    tags: str = Form(""),
    windows: str = Form(""),
    holidays: str = Form(""),
    max_concurrent: int | None = Form(None),
    cps: float | None = Form(None),
    max_attempts: int | None = Form(None),
    max_per_day: int | None = Form(None),
    sess: SessionInfo = Depends(csrf_protect),
) -> Response:
    if sess.user.role not in ("admin", "staff"):
        raise HTTPException(status_code=404)
    form = {"name": name, "script": script, "communities": communities, "source_files": source_files, "tags": tags,
            "windows": windows, "holidays": holidays, "max_concurrent": max_concurrent, "cps": cps,
            "max_attempts": max_attempts, "max_per_day": max_per_day}
    cfg = request.app.state.config
    try:
        if not name.strip():
            raise ServiceError("a campaign needs a name", zh="请填写活动名称")
        _check_limits(max_concurrent, cps, max_attempts, max_per_day)
        spec = camp_service.CampaignSpec(
            name=name, script=script.strip() or None, source_files=source_files, communities=communities,
            tags=_lines(tags), windows={"daily": _lines(windows)} if windows.strip() else None,
            holidays=_lines(holidays), max_concurrent=max_concurrent, cps=cps, max_attempts=max_attempts,
            max_per_day=max_per_day,
        )
        info, n = camp_service.create_campaign(cfg, request.app.state.store, spec, actor=sess.user.name)
    except ServiceError as exc:
        return _render(request, "campaign_new.html", _new_ctx(request, form, exc.zh), status_code=400)
    return RedirectResponse(f"/campaigns/{info.id}?created={n}", status_code=303)


@router.get("/campaigns/{campaign_id}")
def dashboard(request: Request, campaign_id: int, user: UserInfo = Depends(staff_user)) -> HTMLResponse:
    info = _campaign_by_id(request, campaign_id)
    return _render(request, "campaign.html", {"c": info, "exports": WHAT_ZH, "settings": _settings_ctx(info),
                                               "created": request.query_params.get("created"),
                                               "saved": request.query_params.get("saved")})


@router.get("/campaigns/{campaign_id}/data")
def dashboard_data(request: Request, campaign_id: int, user: UserInfo = Depends(staff_user)) -> JSONResponse:
    store = request.app.state.store
    try:
        data = request.app.state.dashboard_cache.get(store, campaign_id)
    except LookupError:
        raise HTTPException(status_code=404) from None
    return JSONResponse(data, headers={"Cache-Control": "no-store"})


_DAY_ZH = {"每天": "daily", "周一": "mon", "周二": "tue", "周三": "wed", "周四": "thu", "周五": "fri", "周六": "sat",
           "周日": "sun", "周天": "sun", "星期一": "mon", "星期二": "tue", "星期三": "wed", "星期四": "thu",
           "星期五": "fri", "星期六": "sat", "星期日": "sun", "星期天": "sun"}
_DAY_LABEL = {"daily": "每天", "mon": "周一", "tue": "周二", "wed": "周三", "thu": "周四", "fri": "周五", "sat": "周六",
              "sun": "周日"}


def windows_text(windows: dict[str, Any]) -> str:
    """A campaign's windows as the settings form shows them: one line per day key, 每天=09:00-12:00,14:00-20:00."""
    return "\n".join(f"{_DAY_LABEL.get(k, k)}={','.join(v)}" for k, v in windows.items())


def parse_windows_text(text: str) -> dict[str, list[str]]:
    """The settings form's windows (每天=…, 周日=, or daily=/sun=) -> the stored mapping."""
    lines = [ln.strip() for ln in re.split(r"[\n;；]+", text) if ln.strip()]
    values = []
    for ln in lines:
        ln = ln.replace("＝", "=").replace("：", "=", 1) if "=" not in ln else ln
        key, sep, ranges = ln.partition("=")
        key = _DAY_ZH.get(key.strip(), key.strip())
        values.append(f"{key}{sep}{ranges.replace('，', ',')}" if sep else ln)
    return camp_service.parse_windows(values)


def _settings_ctx(info: db.CampaignInfo, form: dict[str, Any] | None = None) -> dict[str, Any]:
    pacing, retry = info.pacing, info.retry_policy
    current = {
        "windows": windows_text(info.windows), "holidays": "\n".join(map(str, info.holidays)),
        "max_concurrent": pacing.get("max_concurrent_calls", ""), "cps": pacing.get("calls_per_second", ""),
        "max_attempts": retry.get("max_attempts_total", ""), "max_per_day": retry.get("max_attempts_per_day", ""),
    }
    return {**current, **(form or {})}


@router.post("/campaigns/{campaign_id}/settings")
def edit_settings(
    request: Request,
    campaign_id: int,
    windows: str = Form(""),
    holidays: str = Form(""),
    max_concurrent: int | None = Form(None),
    cps: float | None = Form(None),
    max_attempts: int | None = Form(None),
    max_per_day: int | None = Form(None),
    sess: SessionInfo = Depends(csrf_protect),
) -> Response:
    """Staff change a campaign's calling windows, holidays, pacing or attempt limits; a running engine applies
    the change at its next tick. Only what differs from the stored settings is changed (and audited)."""
    if sess.user.role not in ("admin", "staff"):
        raise HTTPException(status_code=404)
    info = _campaign_by_id(request, campaign_id)
    form = {"windows": windows, "holidays": holidays, "max_concurrent": max_concurrent, "cps": cps,
            "max_attempts": max_attempts, "max_per_day": max_per_day}
    try:
        _check_limits(max_concurrent, cps, max_attempts, max_per_day)
        new_windows = parse_windows_text(windows) if windows.strip() else None
        if new_windows is not None and not new_windows:
            new_windows = None
        new_holidays = _lines(holidays)
        pacing, retry = info.pacing, info.retry_policy
        edit = camp_service.SettingsEdit(
            windows=new_windows if new_windows is not None and new_windows != info.windows else None,
            holidays=new_holidays if new_holidays != [str(h) for h in info.holidays] else None,
            max_concurrent=max_concurrent if max_concurrent != pacing.get("max_concurrent_calls") else None,
            cps=cps if cps is not None and cps != pacing.get("calls_per_second") else None,
            max_attempts=max_attempts if max_attempts != retry.get("max_attempts_total") else None,
            max_per_day=max_per_day if max_per_day != retry.get("max_attempts_per_day") else None,
        )
        if edit.empty:
            raise ServiceError("nothing to change", zh="设置没有变化")
        camp_service.update_campaign_settings(request.app.state.store, info.name, edit, actor=sess.user.name)
    except ServiceError as exc:
        return _render(request, "campaign.html", {"c": info, "exports": WHAT_ZH, "created": None,
                                                   "settings": _settings_ctx(info, form), "settings_error": exc.zh},
                       status_code=400)
    request.app.state.dashboard_cache.forget(campaign_id)
    return RedirectResponse(f"/campaigns/{campaign_id}?saved=1", status_code=303)


@router.post("/campaigns/{campaign_id}/{action}")
def lifecycle(request: Request, campaign_id: int, action: str, sess: SessionInfo = Depends(csrf_protect)) -> Response:
    if sess.user.role not in ("admin", "staff") or action not in ("start", "pause", "resume", "cancel", "rehearse"):
        raise HTTPException(status_code=404)
    info = _campaign_by_id(request, campaign_id)
    cfg, store, who = request.app.state.config, request.app.state.store, sess.user.name
    if action == "rehearse":
        page = "rehearsal.html" if request.headers.get("hx-request") else "rehearsal_page.html"
        try:
            forecast = rehearse_campaign(cfg, store, info.name)
        except ServiceError as exc:
            return _render(request, page, {"c": info, "f": None, "error": exc.zh}, status_code=400)
        accounts_db.audit(store, "campaign.rehearsal", actor=who, now=now_of(request),
                          details={"campaign": info.name, "forecast": forecast.as_dict()})
        return _render(request, page, {"c": info, "f": forecast, "error": None})
    try:
        if action == "start":
            camp_service.start_campaign(cfg, store, info.name, actor=who)
        elif action == "resume":
            camp_service.resume_campaign(cfg, store, info.name, actor=who)
        elif action == "pause":
            camp_service.pause_campaign(store, info.name, actor=who)
        else:
            camp_service.cancel_campaign(store, info.name, actor=who)
    except ServiceError as exc:
        fresh = _campaign_by_id(request, campaign_id)
        return _render(request, "campaign.html", {"c": fresh, "exports": WHAT_ZH, "settings": _settings_ctx(fresh),
                                                   "error": exc.zh, "created": None}, status_code=409)
    request.app.state.dashboard_cache.forget(campaign_id)
    return RedirectResponse(f"/campaigns/{campaign_id}", status_code=303)


@router.get("/campaigns/{campaign_id}/export/{what}.{fmt}")
def download(request: Request, campaign_id: int, what: str, fmt: str, unmasked: int = 0,
             user: UserInfo = Depends(staff_user)) -> Response:
    info = _campaign_by_id(request, campaign_id)
    if what not in WHAT_ZH or fmt not in ("csv", "xlsx"):
        raise HTTPException(status_code=404)
    store = request.app.state.store
    out = Path(tempfile.mkdtemp(prefix="outreach-export-")) / f"export.{fmt}"
    try:
        n = export_campaign(store, campaign=info.name, what=what, fmt=fmt, out=out, unmasked=bool(unmasked),
                            actor=user.name)
    except ServiceError as exc:
        shutil.rmtree(out.parent, ignore_errors=True)
        raise HTTPException(status_code=400, detail=exc.zh) from None
    if not unmasked:  # unmasked exports are audited by the export itself, before the file exists
        accounts_db.audit(store, "export", actor=user.name, now=now_of(request),
                          details={"campaign": info.name, "what": what, "format": fmt, "rows": n})
    stamp = dt.datetime.now(request.app.state.tz).strftime("%Y%m%d-%H%M")
    media = "text/csv; charset=utf-8" if fmt == "csv" else \
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    return FileResponse(out, filename=f"{WHAT_ZH[what]}-{info.name}-{stamp}.{fmt}", media_type=media,
                        background=BackgroundTask(shutil.rmtree, out.parent, ignore_errors=True))


# ----------------------------------------------------------------------------- uploads


@router.get("/upload")
def upload_form(request: Request, user: UserInfo = Depends(staff_user)) -> HTMLResponse:
    return _render(request, "upload.html", {"result": None, "error": None})


@router.post("/upload")
def upload(request: Request, file: UploadFile, community: str = Form(""),
                 sess: SessionInfo = Depends(csrf_protect)) -> Response:
    if sess.user.role not in ("admin", "staff"):
        raise HTTPException(status_code=404)
    original = Path(file.filename or "").name
    suffix = Path(original).suffix.lower()
    if suffix not in UPLOAD_SUFFIXES:
        return _render(request, "upload.html", {"result": None, "error": f"文件“{original or '（无文件名）'}”不是 .csv 或 .xlsx 文件"},
                       status_code=400)
    limit = request.app.state.config.web.max_upload_mb * 1024 * 1024
    token = secrets.token_hex(12)
    folder: Path = request.app.state.data_dir / "uploads" / token
    folder.mkdir(parents=True, exist_ok=True)
    safe = _SAFE_NAME.sub("_", original) or f"upload{suffix}"
    path = folder / safe
    size = 0
    with path.open("wb") as f:
        while chunk := file.file.read(1024 * 1024):
            size += len(chunk)
            if size > limit:
                f.close()
                shutil.rmtree(folder, ignore_errors=True)
                return _render(request, "upload.html", {
                    "result": None, "error": f"文件超过 {limit // (1024 * 1024)} MB 上限"}, status_code=413)
            f.write(chunk)
    rejects = folder / f"rejects{suffix}"
    store = request.app.state.store
    try:
        result = import_file(lambda: store, path, community=community, rejects=rejects, actor=sess.user.name,
                             source_name=original)
    except ServiceError as exc:
        shutil.rmtree(folder, ignore_errors=True)
        return _render(request, "upload.html", {"result": None, "error": exc.zh}, status_code=400)
    rows = _reject_preview(result.rejects_file) if result.rejects_file else []
    return _render(request, "upload.html", {"result": result, "error": None, "rejects_rows": rows,
                                            "token": token, "name": original, "suffix": suffix})


def _reject_preview(path: Path, limit: int = 100) -> list[tuple[str, str]]:
    """(row number, reason) of the first rejected rows."""
    out: list[tuple[str, str]] = []
    if path.suffix == ".csv":
        import csv

        with path.open(encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f)
            next(reader, None)
            for row in reader:
                if row:
                    out.append((row[0], row[-1]))
                if len(out) >= limit:
                    break
    else:
        from openpyxl import load_workbook

        wb = load_workbook(path, read_only=True)
        try:
            ws = wb.worksheets[0]
            for i, row in enumerate(ws.iter_rows(values_only=True)):
                if i == 0 or not row:
                    continue
                out.append((str(row[0]), str(row[-1] or "")))
                if len(out) >= limit:
                    break
        finally:
            wb.close()
    return out


@router.get("/upload/{token}/rejects{suffix}")
def rejects_download(request: Request, token: str, suffix: str, user: UserInfo = Depends(staff_user)) -> Response:
    if not re.fullmatch(r"[0-9a-f]{24}", token) or suffix not in UPLOAD_SUFFIXES:
        raise HTTPException(status_code=404)
    path: Path = request.app.state.data_dir / "uploads" / token / f"rejects{suffix}"
    if not path.is_file():
        raise HTTPException(status_code=404)
    return FileResponse(path, filename=f"错误行{suffix}")
