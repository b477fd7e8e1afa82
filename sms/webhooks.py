"""Delivery receipts and replies over HTTP: a FastAPI router the web app mounts (`outreach serve`), and
`create_app()` for running it alone.

- `POST /sms/twilio/status`: Twilio status callbacks (form fields MessageSid, MessageStatus, ErrorCode),
  checked with the real `twilio.request_validator.RequestValidator` against `X-Twilio-Signature`
  (403 otherwise, logged). Behind a proxy set `public_base_url` to the URL Twilio calls, because the
  signature covers the full public URL.
- `POST /sms/twilio/inbound`: Twilio inbound messages (From, Body, MessageSid), same check; answers
  an empty TwiML `<Response/>`.
- `POST /sms/aliyun/report/{token}` and `POST /sms/aliyun/reply/{token}`: Aliyun SmsReport / SmsUp
  batch pushes (JSON arrays). Aliyun does not sign them, so the URL configured in the Aliyun console
  carries a secret token (`OUTREACH_SMS__ALIYUN_CALLBACK_TOKEN`), compared in constant time; anything
  else is refused with 403 and logged. Answers `{"code": 0, "msg": "成功"}` (anything else makes Aliyun
  retry).

Bodies over `MAX_BODY_BYTES` get 413 before they are read further; a field of the wrong type, or longer than
the store keeps (ids 64 characters, phone numbers 20), is refused with 400 naming the field, so nothing half
understood reaches the store (and SQLite and PostgreSQL behave the same).

Repeats are dropped (a receipt is identified by provider id + status + error code; a reply by its
provider id / sequence id) and a message's status only moves forward; see results.sms.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

from fastapi import APIRouter, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from common.masking import mask_phone
from sms.codes import explain
from sms.gateways import twilio_state
from sms.types import Reply, StatusUpdate

log = logging.getLogger(__name__)

CHINA = ZoneInfo("Asia/Shanghai")
ALIYUN_OK = {"code": 0, "msg": "成功"}
MAX_BODY_BYTES = 1 << 20  # providers push a few KB; a batch of hundreds of receipts stays far below this
ID_MAX = 64  # sms_events.provider_id / out_id
PHONE_MAX = 20  # sms_replies.phone
_PHONE_RE = re.compile(r"\+?\d{3,19}")


class BadPush(ValueError):
    """A webhook body the store cannot take; the message names the field."""


class TooLarge(ValueError):
    """The body is over MAX_BODY_BYTES."""


async def _body(request: Request) -> bytes:
    """The request body, refused (TooLarge) past MAX_BODY_BYTES without reading the rest."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise TooLarge()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise TooLarge()
        chunks.append(chunk)
    return b"".join(chunks)


def _text_field(item: dict[str, Any], key: str, limit: int | None = None) -> str:
    """A scalar field as text ('' when absent); a list, object or overlong value is a BadPush."""
    value = item.get(key)
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        raise BadPush(f"{key} must be a string, got {type(value).__name__}")
    text = str(value)
    if limit is not None and len(text) > limit:
        raise BadPush(f"{key} is {len(text)} characters long; at most {limit}")
    return text


def _phone_field(item: dict[str, Any], key: str) -> str:
    phone = _e164(_text_field(item, key, PHONE_MAX))
    if not _PHONE_RE.fullmatch(phone):
        raise BadPush(f"{key} is not a phone number")
    return phone


class SmsEvents(Protocol):
    """Where receipts and replies go (campaigns.reminders.StoreEvents)."""

    def on_status(self, updates: Sequence[StatusUpdate]) -> Any: ...

    def on_replies(self, replies: Sequence[Reply]) -> Any: ...


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    twilio_auth_token: str = ""
    aliyun_token: str = ""
    public_base_url: str = ""  # e.g. https://hotline.example.org, as the provider calls it


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:40]


def _e164(phone: str) -> str:
    p = phone.strip().replace(" ", "")
    if p.startswith("+"):
        return p
    if p.startswith("0086"):
        return "+" + p[2:]
    if len(p) == 11 and p.startswith("1"):
        return "+86" + p
    return "+" + p if p.startswith("86") and len(p) == 13 else p


def _china_time(value: Any) -> dt.datetime:
    try:
        return dt.datetime.strptime(str(value), "%Y-%m-%d %H:%M:%S").replace(tzinfo=CHINA).astimezone(dt.UTC)
    except ValueError:
        return dt.datetime.now(dt.UTC)


def make_router(events: SmsEvents, settings: WebhookSettings) -> APIRouter:
    router = APIRouter(prefix="/sms", tags=["sms"])

    def public_url(request: Request) -> str:
        if not settings.public_base_url:
            return str(request.url)
        url = settings.public_base_url.rstrip("/") + request.url.path
        return url + (f"?{request.url.query}" if request.url.query else "")

    async def twilio_form(request: Request) -> dict[str, str] | None:
        body = (await _body(request)).decode("utf-8", "replace")
        params = dict(parse_qsl(body, keep_blank_values=True))
        signature = request.headers.get("X-Twilio-Signature", "")
        if not settings.twilio_auth_token:
            log.warning("Twilio webhook %s refused: sms.twilio_auth_token is not configured", request.url.path)
            return None
        from twilio.request_validator import RequestValidator

        if not signature or not RequestValidator(settings.twilio_auth_token).validate(public_url(request), params,
                                                                                    signature):
            log.warning("Twilio webhook %s refused: bad X-Twilio-Signature from %s", request.url.path,
                        request.client.host if request.client else "?")
            return None
        return params

    async def twilio_params(request: Request) -> dict[str, str] | Response:
        try:
            params = await twilio_form(request)
        except TooLarge:
            return JSONResponse({"error": f"request body too large (at most {MAX_BODY_BYTES} bytes)"},
                                status_code=413)
        if params is None:
            return JSONResponse({"error": "invalid signature"}, status_code=403)
        for key in ("MessageSid", "SmsSid", "MessageStatus", "SmsStatus", "ErrorCode"):
            if len(params.get(key, "")) > ID_MAX:
                return JSONResponse({"error": f"{key} is longer than {ID_MAX} characters"}, status_code=400)
        return params

    @router.post("/twilio/status")
    async def twilio_status(request: Request) -> Response:
        params = await twilio_params(request)
        if isinstance(params, Response):
            return params
        sid = params.get("MessageSid") or params.get("SmsSid") or ""
        status = (params.get("MessageStatus") or params.get("SmsStatus") or "").lower()
        if not sid or not status:
            return JSONResponse({"error": "MessageSid and MessageStatus are required"}, status_code=400)
        code = params.get("ErrorCode", "")
        update = StatusUpdate(dedupe=f"twilio:{_digest(sid, status, code)}", state=twilio_state(status),
                              provider_status=status, provider_id=sid, error_code=code,
                              error_message=explain(code) if code else "")
        await run_in_threadpool(events.on_status, [update])
        return Response(status_code=204)

    @router.post("/twilio/inbound")
    async def twilio_inbound(request: Request) -> Response:
        params = await twilio_params(request)
        if isinstance(params, Response):
            return params
        sid = params.get("MessageSid") or params.get("SmsSid") or ""
        try:
            phone = _phone_field(params, "From")
        except BadPush as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        reply = Reply(dedupe=f"twilio:{sid or _digest(params.get('From', ''), params.get('Body', ''))}",
                      phone=phone, text=params.get("Body", ""),
                      received_at=dt.datetime.now(dt.UTC), provider="twilio")
        log.info("SMS reply from %s", mask_phone(reply.phone))
        await run_in_threadpool(events.on_replies, [reply])
        return Response('<?xml version="1.0" encoding="UTF-8"?><Response/>', media_type="application/xml")

    async def aliyun_items(request: Request, token: str) -> list[dict[str, Any]] | Response:
        if not settings.aliyun_token or not hmac.compare_digest(token.encode(), settings.aliyun_token.encode()):
            log.warning("Aliyun push %s refused: wrong or unconfigured token, from %s", request.url.path.rsplit("/", 1)[0],
                        request.client.host if request.client else "?")
            return JSONResponse({"code": 403, "msg": "forbidden"}, status_code=403)
        try:
            data = json.loads(await _body(request))
        except TooLarge:
            return JSONResponse({"code": 413, "msg": f"request body too large (at most {MAX_BODY_BYTES} bytes)"},
                                status_code=413)
        except RecursionError:
            return JSONResponse({"code": 400, "msg": "body is not JSON we accept (nested too deeply)"},
                                status_code=400)
        except ValueError:
            return JSONResponse({"code": 400, "msg": "body is not JSON"}, status_code=400)
        if isinstance(data, dict):
            data = [data]
        if not isinstance(data, list) or not all(isinstance(i, dict) for i in data):
            return JSONResponse({"code": 400, "msg": "expected a JSON array of objects"}, status_code=400)
        return data

    @router.post("/aliyun/report/{token}")
    async def aliyun_report(token: str, request: Request) -> Response:
        items = await aliyun_items(request, token)
        if isinstance(items, Response):
            return items
        updates = []
        for n, i in enumerate(items):
            ok = i.get("success") in (True, "true", "True", 1)
            try:
                code = _text_field(i, "err_code", ID_MAX) or ("DELIVERED" if ok else "")
                biz, out = _text_field(i, "biz_id", ID_MAX), _text_field(i, "out_id", ID_MAX)
                err_msg = _text_field(i, "err_msg", 1000)
            except BadPush as exc:
                return JSONResponse({"code": 400, "msg": f"item {n}: {exc}"}, status_code=400)
            updates.append(StatusUpdate(
                dedupe=f"aliyun:{_digest(biz, out, str(ok), code)}", state="delivered" if ok else "undelivered",
                provider_status=code, provider_id=biz, out_id=out, error_code="" if ok else code,
                error_message="" if ok else explain(code, err_msg),
                at=_china_time(i.get("report_time")),
            ))
        await run_in_threadpool(events.on_status, updates)
        return JSONResponse(ALIYUN_OK)

    @router.post("/aliyun/reply/{token}")
    async def aliyun_reply(token: str, request: Request) -> Response:
        items = await aliyun_items(request, token)
        if isinstance(items, Response):
            return items
        replies = []
        for n, i in enumerate(items):
            try:
                phone, text = _phone_field(i, "phone_number"), _text_field(i, "content")
                seq = _text_field(i, "sequence_id", ID_MAX)
                sent = _text_field(i, "send_time", 64)
            except BadPush as exc:
                return JSONResponse({"code": 400, "msg": f"item {n}: {exc}"}, status_code=400)
            key = seq or _digest(str(i.get("phone_number")), str(i.get("send_time")), str(i.get("content")))
            replies.append(Reply(dedupe=f"aliyun:{key}", phone=phone, text=text,
                                 received_at=_china_time(sent), provider="aliyun"))
        await run_in_threadpool(events.on_replies, replies)
        return JSONResponse(ALIYUN_OK)

    return router


def create_app(events: SmsEvents, settings: WebhookSettings) -> FastAPI:
    """A minimal app serving only the SMS webhooks (the web app includes `make_router` instead)."""
    app = FastAPI(title="outreach SMS webhooks", docs_url=None, redoc_url=None, openapi_url=None)
    app.include_router(make_router(events, settings))
    return app
