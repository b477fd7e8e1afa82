"""Pages of community workers (staff and admins see them for every community): the escalation queue, a
resident's page (answers, audio, call history, SMS, callbacks), the phone number on request (audited), the
escalation actions, an export of their communities' escalations, and the audit log for admins."""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.background import BackgroundTask

from outreach.services import ServiceError
from outreach.services import escalations as actions
from outreach.services.escalations import NotFound
from outreach.services.exports import export_campaign
from outreach.web.security import admin_user, any_user, csrf_protect, now_of
from results import accounts as accounts_db
from results import review
from results.accounts import SessionInfo, UserInfo
from results.campaigns import list_campaigns
from results.review import NotFoundInScope, QueueFilter

router = APIRouter()

PER_PAGE = 25


def _render(request: Request, name: str, ctx: dict[str, object], status_code: int = 200) -> HTMLResponse:
    from outreach.web.app import render

    return render(request, name, ctx, status_code=status_code)


def _int_or_none(value: str) -> int | None:
    try:
        return int(value) if value.strip() else None
    except ValueError:
        return None


@router.get("/queue")
def queue_page(
    request: Request,
    status: str = "active",
    kind: str = "",
    community: str = "",
    campaign: str = "",
    mine: str = "",
    q: str = "",
    page: int = 1,
    user: UserInfo = Depends(any_user),
) -> HTMLResponse:
    store = request.app.state.store
    if status not in ("active", "open", "in_progress", "closed", "all"):
        status = "active"
    filt = QueueFilter(status=status, kind=kind, community=community, campaign_id=_int_or_none(campaign),
                       mine=user.name if mine else "", search=q.strip()[:50])
    result = review.queue(store, scope=user.scope, filt=filt, page=page, per_page=PER_PAGE)
    facets = review.queue_facets(store, scope=user.scope)
    campaigns = list_campaigns(store)
    ctx = {"page": result, "filt": filt, "facets": facets, "campaigns": campaigns, "mine": bool(mine),
           "query": {"status": status, "kind": kind, "community": community, "campaign": campaign,
                     "mine": mine, "q": q}}
    name = "queue_table.html" if request.headers.get("hx-request") and request.headers.get("hx-target") == "queue" else "queue.html"
    return _render(request, name, ctx)


@router.get("/residents/{resident_id}")
def resident(request: Request, resident_id: int, user: UserInfo = Depends(any_user)) -> HTMLResponse:
    store = request.app.state.store
    try:
        page = review.resident_page(store, resident_id, scope=user.scope)
    except NotFoundInScope:
        raise HTTPException(status_code=404) from None
    accounts_db.audit(store, "resident.view", actor=user.name, now=now_of(request),
                      details={"resident_id": resident_id, "community": page.resident.community})
    return _render(request, "resident.html", {"p": page, "r": page.resident})


@router.post("/residents/{resident_id}/phone")
def show_phone(request: Request, resident_id: int, sess: SessionInfo = Depends(csrf_protect)) -> HTMLResponse:
    user = sess.user
    try:
        phone = review.resident_phone(request.app.state.store, resident_id, scope=user.scope, actor=user.name,
                                      now=now_of(request))
    except NotFoundInScope:
        raise HTTPException(status_code=404) from None
    return HTMLResponse(f'<a class="phone shown" href="tel:{phone}">{phone}</a>',
                        headers={"Cache-Control": "no-store"})


@router.get("/records/{record_id}/audio/{answer}")
def answer_audio(request: Request, record_id: int, answer: str, user: UserInfo = Depends(any_user)) -> Response:
    store = request.app.state.store
    try:
        ref = review.answer_audio_ref(store, record_id, answer, scope=user.scope, actor=user.name, now=now_of(request))
    except NotFoundInScope:
        raise HTTPException(status_code=404) from None
    root: Path = request.app.state.audio_dir.resolve()
    path = (root / ref).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise HTTPException(status_code=404)
    media = "audio/wav" if path.suffix.lower() == ".wav" else "application/octet-stream"
    return FileResponse(path, media_type=media, headers={"Cache-Control": "private, no-store"})


def _escalation_done(request: Request, resident_id: int, message: str) -> Response:
    if request.headers.get("hx-request"):
        return Response(status_code=204, headers={"HX-Redirect": f"/residents/{resident_id}?done={message}"})
    return RedirectResponse(f"/residents/{resident_id}?done={message}", status_code=303)


@router.post("/escalations/{escalation_id}/assign")
def assign(request: Request, escalation_id: int, sess: SessionInfo = Depends(csrf_protect)) -> Response:
    try:
        e = actions.assign_to_self(request.app.state.store, escalation_id, user=sess.user.name, scope=sess.user.scope)
    except NotFound:
        raise HTTPException(status_code=404) from None
    return _escalation_done(request, e.resident_id, "assigned")


@router.post("/escalations/{escalation_id}/callback")
def callback(
    request: Request,
    escalation_id: int,
    reached: str = Form(...),
    action: str = Form("none"),
    notes: str = Form(""),
    close: str = Form(""),
    sess: SessionInfo = Depends(csrf_protect),
) -> Response:
    store = request.app.state.store
    try:
        e = actions.record_callback(store, escalation_id, user=sess.user.name, scope=sess.user.scope,
                                    reached=reached == "yes", action=action, notes=notes, close=bool(close))
    except NotFound:
        raise HTTPException(status_code=404) from None
    except ServiceError as exc:
        raise HTTPException(status_code=400, detail=exc.zh) from None
    return _escalation_done(request, e.resident_id, "closed" if close else "recorded")


@router.post("/escalations/{escalation_id}/close")
def close_escalation(request: Request, escalation_id: int, sess: SessionInfo = Depends(csrf_protect)) -> Response:
    try:
        e = actions.close(request.app.state.store, escalation_id, user=sess.user.name, scope=sess.user.scope)
    except NotFound:
        raise HTTPException(status_code=404) from None
    return _escalation_done(request, e.resident_id, "closed")


@router.post("/escalations/{escalation_id}/reopen")
def reopen_escalation(request: Request, escalation_id: int, sess: SessionInfo = Depends(csrf_protect)) -> Response:
    try:
        e = actions.reopen(request.app.state.store, escalation_id, user=sess.user.name, scope=sess.user.scope)
    except NotFound:
        raise HTTPException(status_code=404) from None
    return _escalation_done(request, e.resident_id, "reopened")


@router.get("/escalations/{escalation_id}")
def escalation(request: Request, escalation_id: int, user: UserInfo = Depends(any_user)) -> Response:
    try:
        e = review.get_escalation(request.app.state.store, escalation_id, scope=user.scope)
    except NotFoundInScope:
        raise HTTPException(status_code=404) from None
    return RedirectResponse(f"/residents/{e.resident_id}#e{e.id}", status_code=303)


@router.get("/queue/export/{campaign_id}.xlsx")
def export_queue(request: Request, campaign_id: int, user: UserInfo = Depends(any_user)) -> Response:
    """The escalations of one campaign in the caller's communities (masked), as XLSX."""
    store = request.app.state.store
    camp = next((c for c in list_campaigns(store) if c.id == campaign_id), None)
    if camp is None or review.campaign_escalations_in_scope(store, campaign_id, scope=user.scope) == 0:
        raise HTTPException(status_code=404)
    out = Path(tempfile.mkdtemp(prefix="outreach-export-")) / "escalations.xlsx"
    try:
        n = export_campaign(store, campaign=camp.name, what="escalations", fmt="xlsx", out=out, actor=user.name,
                            communities=user.scope)
    except ServiceError as exc:
        raise HTTPException(status_code=400, detail=exc.zh) from None
    accounts_db.audit(store, "export", actor=user.name, now=now_of(request),
                      details={"campaign": camp.name, "what": "escalations", "rows": n,
                               "communities": list(user.scope) if user.scope is not None else None})
    stamp = dt.datetime.now(request.app.state.tz).strftime("%Y%m%d-%H%M")
    return FileResponse(out, filename=f"上报名单-{camp.name}-{stamp}.xlsx",
                        media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                        background=BackgroundTask(_remove_tree, out.parent))


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


@router.get("/audit")
def audit_log(request: Request, actor: str = "", action: str = "", before: int | None = None,
              user: UserInfo = Depends(admin_user)) -> HTMLResponse:
    rows = accounts_db.audit_page(request.app.state.store, actor=actor.strip(), action=action.strip(),
                                  before_id=before, limit=50)
    return _render(request, "audit.html", {"rows": rows, "actor": actor, "action": action,
                                           "older": rows[-1].id if len(rows) == 50 else None})
