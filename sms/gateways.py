"""SMS gateways: dry-run (the embedded default), Twilio (the `twilio` client) and Aliyun (the official
`alibabacloud-dysmsapi20170525` SDK). Secrets are passed in by the caller, who reads them from the
environment only (outreach.config).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import threading
import uuid
from typing import Any
from zoneinfo import ZoneInfo

from common.masking import mask_phone
from sms import codes
from sms.types import (
    OutgoingSms,
    PermanentSmsError,
    SendResult,
    SmsError,
    SystemSmsError,
    TransientSmsError,
)

log = logging.getLogger(__name__)

CHINA = ZoneInfo("Asia/Shanghai")


class DryRunGateway:
    """Sends nothing: records what would be sent (and logs it) and reports it delivered."""

    name = "dry_run"

    def __init__(self) -> None:
        self.sent: list[OutgoingSms] = []
        self._lock = threading.Lock()

    def send(self, msg: OutgoingSms) -> SendResult:
        with self._lock:
            self.sent.append(msg)
        log.info("dry-run SMS to %s: %s", mask_phone(msg.to), msg.body)
        return SendResult(provider_id=f"dry-{msg.key}", state="delivered", provider_status="dry_run")

    def find(self, msg: OutgoingSms, since: dt.datetime) -> SendResult | None:
        with self._lock:
            hit = any(m.key == msg.key for m in self.sent)
        return SendResult(f"dry-{msg.key}", "delivered", "dry_run") if hit else None


# ----------------------------------------------------------------------------- Twilio

TWILIO_STATES = {
    "queued": "accepted", "accepted": "accepted", "scheduled": "accepted", "sending": "accepted",
    "sent": "sent", "delivered": "delivered", "read": "delivered", "partially_delivered": "delivered",
    "undelivered": "undelivered", "failed": "failed", "canceled": "failed",
}


def twilio_state(status: str) -> str:
    return TWILIO_STATES.get((status or "").lower(), "accepted")


class TwilioGateway:
    """Twilio Programmable Messaging through the real client.

    `base_url` replaces https://api.twilio.com (a proxy, or a local test server); `status_callback`
    is passed on each message so receipts come to `POST /sms/twilio/status`.
    """

    name = "twilio"

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        *,
        from_number: str = "",
        messaging_service_sid: str = "",
        status_callback: str = "",
        base_url: str = "",
        timeout_s: float = 10.0,
    ) -> None:
        if not account_sid or not auth_token:
            raise SystemSmsError("config", "Twilio needs sms.twilio_account_sid and OUTREACH_SMS__TWILIO_AUTH_TOKEN",
                                 "Twilio 账号未配置")
        if not from_number and not messaging_service_sid:
            raise SystemSmsError("config", "Twilio needs sms.from_number or sms.messaging_service_sid",
                                 "Twilio 发送号码未配置")
        self.account_sid = account_sid
        self._token = auth_token
        self.from_number = from_number
        self.messaging_service_sid = messaging_service_sid
        self.status_callback = status_callback
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self._local = threading.local()

    def _client(self) -> Any:
        client = getattr(self._local, "client", None)
        if client is None:  # one client (and connection pool) per worker thread
            from twilio.http.http_client import TwilioHttpClient
            from twilio.rest import Client

            http = TwilioHttpClient(timeout=self.timeout_s, proxy=self._proxies())
            if http.session is not None:
                # requests re-reads the proxy and CA variables of the environment on every call (a fifth
                # of a send's CPU): they were read once above, so the session no longer looks them up
                http.session.trust_env = False
                ca = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
                if ca:
                    http.session.verify = ca
            client = Client(self.account_sid, self._token, http_client=http)
            if self.base_url:
                client.api.base_url = self.base_url
            self._local.client = client
        return client

    def _proxies(self) -> dict[str, str]:
        """HTTP(S)_PROXY / NO_PROXY from the environment for the API's URL, read once per client."""
        from requests.utils import get_environ_proxies

        return dict(get_environ_proxies(self.base_url or "https://api.twilio.com"))

    def send(self, msg: OutgoingSms) -> SendResult:
        kwargs: dict[str, Any] = {"to": msg.to, "body": msg.body}
        if self.messaging_service_sid:
            kwargs["messaging_service_sid"] = self.messaging_service_sid
        if self.from_number:
            kwargs["from_"] = self.from_number
        if self.status_callback:
            kwargs["status_callback"] = self.status_callback
        try:
            m = self._client().messages.create(**kwargs)
        except Exception as exc:
            raise _twilio_error(exc) from exc
        return SendResult(provider_id=str(m.sid), state=twilio_state(str(m.status)), provider_status=str(m.status))

    def find(self, msg: OutgoingSms, since: dt.datetime) -> SendResult | None:
        """The newest messages to that number (the list is newest first), created since `since`,
        with our body: Twilio has no idempotency key, and we never send one text twice to a number."""
        floor = since - dt.timedelta(minutes=5)
        try:
            found = self._client().messages.list(to=msg.to, limit=50, page_size=50)
        except Exception as exc:
            err = _twilio_error(exc)
            raise TransientSmsError(err.code, f"reconcile: {err.message}", err.explanation) from exc
        for m in found:
            created = m.date_created
            if created is not None and created < floor:
                continue
            if (m.body or "") == msg.body:
                return SendResult(provider_id=str(m.sid), state=twilio_state(str(m.status)),
                                  provider_status=str(m.status))
        return None


def _twilio_error(exc: Exception) -> SmsError:
    import requests
    from twilio.base.exceptions import TwilioRestException

    if isinstance(exc, TwilioRestException):
        code = str(exc.code or "")
        status = int(exc.status or 0)
        msg = str(exc.msg or exc)
        if status >= 500:  # the message may exist: reconcile before resending
            return TransientSmsError(code or str(status), msg, "服务商错误，核对后重试", maybe_sent=True)
        if status == 429 or code in codes.TWILIO_TRANSIENT:  # 20429: never processed, safe to retry
            return TransientSmsError(code or str(status), msg, codes.explain(code, "请求过多，稍后重试"),
                                     maybe_sent=False)
        if code in codes.TWILIO_SYSTEM or status in (401, 403):
            return SystemSmsError(code or str(status), msg, codes.explain(code, "Twilio 账号或配置错误"))
        return PermanentSmsError(code or str(status), msg, codes.explain(code, f"发送被拒绝（{code or status}）"))
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return TransientSmsError("connect_timeout", str(exc), "连接服务商超时，稍后重试", maybe_sent=False)
    if isinstance(exc, requests.exceptions.RequestException | OSError):
        # a read timeout or a dropped connection: the message may have been taken
        return TransientSmsError("timeout", str(exc), "服务商无应答，核对后重试", maybe_sent=True)
    return TransientSmsError("error", f"{type(exc).__name__}: {exc}", "发送异常，核对后重试", maybe_sent=True)


# ----------------------------------------------------------------------------- Aliyun


def aliyun_number(phone: str) -> str:
    """Aliyun takes domestic numbers without +86."""
    return phone[3:] if phone.startswith("+86") else phone.lstrip("+")


class AliyunGateway:
    """Aliyun SMS (dysmsapi 2017-05-25) through the official SDK. `OutId` carries our key.

    `endpoint` is host[:port] (default dysmsapi.aliyuncs.com); `protocol` "https" (or "http" for a
    local test server). Timeouts are the SDK's connect/read timeouts.
    """

    name = "aliyun"

    def __init__(
        self,
        access_key_id: str,
        access_key_secret: str,
        *,
        sign_name: str,
        endpoint: str = "dysmsapi.aliyuncs.com",
        protocol: str = "https",
        timeout_s: float = 10.0,
    ) -> None:
        if not access_key_id or not access_key_secret:
            raise SystemSmsError("config", "Aliyun needs OUTREACH_SMS__ALIYUN_ACCESS_KEY_ID and "
                                 "OUTREACH_SMS__ALIYUN_ACCESS_KEY_SECRET", "阿里云短信账号未配置")
        if not sign_name:
            raise SystemSmsError("config", "Aliyun needs sms.sign_name (an approved signature)", "短信签名未配置")
        self.sign_name = sign_name
        self.endpoint = endpoint
        self.protocol = protocol
        self.timeout_ms = max(1000, int(timeout_s * 1000))
        self._ak = access_key_id
        self._sk = access_key_secret
        self._local = threading.local()

    def _client(self) -> Any:
        client = getattr(self._local, "client", None)
        if client is None:
            from alibabacloud_dysmsapi20170525.client import Client
            from alibabacloud_tea_openapi.models import Config

            client = Client(Config(
                access_key_id=self._ak, access_key_secret=self._sk, endpoint=self.endpoint,
                protocol=self.protocol, read_timeout=self.timeout_ms, connect_timeout=min(self.timeout_ms, 5000),
            ))
            self._local.client = client
        return client

    def send(self, msg: OutgoingSms) -> SendResult:
        from alibabacloud_dysmsapi20170525 import models

        if not msg.template_code:
            raise PermanentSmsError("no_template", "Aliyun sends approved templates only: give the template a code",
                                    "模板未配置阿里云模板编号（TemplateCode）")
        req = models.SendSmsRequest(
            phone_numbers=aliyun_number(msg.to), sign_name=msg.sign_name or self.sign_name,
            template_code=msg.template_code,
            template_param=json.dumps({k: str(v) for k, v in msg.params.items()}, ensure_ascii=False),
            out_id=msg.key,
        )
        try:
            body = self._client().send_sms(req).body
        except Exception as exc:
            raise _aliyun_error(exc) from exc
        code = str(body.code or "")
        if code != "OK":
            raise _aliyun_code(code, str(body.message or ""))
        return SendResult(provider_id=str(body.biz_id or ""), state="accepted", provider_status="OK")

    def find(self, msg: OutgoingSms, since: dt.datetime) -> SendResult | None:
        """QuerySendDetails for the number on the days since `since` (China time), matched on OutId."""
        from alibabacloud_dysmsapi20170525 import models

        today = dt.datetime.now(CHINA).date()
        day = since.astimezone(CHINA).date()
        days = [day + dt.timedelta(days=i) for i in range((today - day).days + 1)] or [today]
        for d in days[-3:]:
            page = 1
            while True:
                req = models.QuerySendDetailsRequest(
                    phone_number=aliyun_number(msg.to), send_date=d.strftime("%Y%m%d"), page_size=50,
                    current_page=page,
                )
                try:
                    body = self._client().query_send_details(req).body
                except Exception as exc:
                    err = _aliyun_error(exc)
                    raise TransientSmsError(err.code, f"reconcile: {err.message}", err.explanation) from exc
                if str(body.code or "") != "OK":
                    err = _aliyun_code(str(body.code or ""), str(body.message or ""))
                    raise TransientSmsError(err.code, f"reconcile: {err.message}", err.explanation)
                dtos = body.sms_send_detail_dtos.sms_send_detail_dto if body.sms_send_detail_dtos else []
                for item in dtos or []:
                    if item.out_id == msg.key:
                        status = int(item.send_status or 1)
                        state = {1: "accepted", 2: "undelivered", 3: "delivered"}.get(status, "accepted")
                        return SendResult(provider_id="", state=state, provider_status=str(item.err_code or status))
                total = int(body.total_count or 0)
                if page * 50 >= total or not dtos:
                    break
                page += 1
        return None


def _aliyun_code(code: str, message: str) -> SmsError:
    if code in codes.ALIYUN_SYSTEM:
        return SystemSmsError(code, message, codes.ALIYUN_SYSTEM[code])
    if code in codes.ALIYUN_TRANSIENT or code.startswith("Throttling") or code.startswith("isp."):
        return TransientSmsError(code, message, codes.explain(code, "服务商错误，稍后重试"), maybe_sent=False)
    return PermanentSmsError(code, message, codes.explain(code, f"发送被拒绝（{code}）"))


def _aliyun_error(exc: Exception) -> SmsError:
    from alibabacloud_tea_openapi.exceptions import ServerException, ThrottlingException
    from darabonba.exceptions import DaraException, RetryError, UnretryableException

    if isinstance(exc, ThrottlingException):
        return TransientSmsError(str(exc.code or "Throttling"), str(exc.message), "请求过于频繁，稍后重试",
                                 retry_after_s=(float(exc.retry_after) / 1000 if exc.retry_after else None))
    if isinstance(exc, ServerException):
        return TransientSmsError(str(exc.code or "ServerError"), str(exc.message), "服务商错误，核对后重试",
                                 maybe_sent=True)
    if isinstance(exc, RetryError | UnretryableException):
        # timeouts and dropped connections (the SDK wraps every IOError): the message may have been taken
        return TransientSmsError("timeout", str(exc), "服务商无应答，核对后重试", maybe_sent=True)
    if isinstance(exc, DaraException):
        return _aliyun_code(str(getattr(exc, "code", "") or "error"), str(getattr(exc, "message", "") or exc))
    return TransientSmsError("error", f"{type(exc).__name__}: {exc}", "发送异常，核对后重试", maybe_sent=True)


def new_key() -> str:
    """A fresh idempotency key (Aliyun OutId)."""
    return uuid.uuid4().hex
