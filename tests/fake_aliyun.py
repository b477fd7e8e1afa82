"""A local Aliyun SMS (dysmsapi 2017-05-25) server for tests, written from Alibaba Cloud's documented
API (aliyun_sms.md) and its V3 request signature (ACS3-HMAC-SHA256):

- RPC over `POST /`: the action in `x-acs-action` (and `x-acs-version: 2017-05-25`), parameters in the
  query string, `Authorization: ACS3-HMAC-SHA256 Credential=<AccessKeyId>,SignedHeaders=...,Signature=...`
  checked against the access key secret (400 SignatureDoesNotMatch / 404 InvalidAccessKeyId.NotFound).
- `SendSms` (PhoneNumbers, SignName, TemplateCode, TemplateParam, OutId) → `{Code, Message, BizId,
  RequestId}`; business errors come back as HTTP 200 with their `Code` (isv.MOBILE_NUMBER_ILLEGAL,
  isv.SMS_SIGNATURE_ILLEGAL, isv.SMS_TEMPLATE_ILLEGAL, isv.INVALID_JSON_PARAM, ... or the code set for
  a number in `permanent`).
- `QuerySendDetails` (PhoneNumber, SendDate yyyyMMdd, PageSize 1-50, CurrentPage) → `{Code, TotalCount,
  SmsSendDetailDTOs: {SmsSendDetailDTO: [{PhoneNum, SendStatus, ErrCode, TemplateCode, Content,
  SendDate, ReceiveDate, OutId}]}}`.
- Faults for the next SendSms (`fail_next`): "throttle" (HTTP 400 Throttling.User, nothing sent),
  "system_error" (200 isp.SYSTEM_ERROR, nothing sent), "500" (nothing sent), "500_created" (sent, then
  500), "timeout" (sent, the answer after `delay_s`), "drop" (sent, connection closed), "limit"
  (isv.BUSINESS_LIMIT_CONTROL).
- `push_reports(url, ...)` / `push_reply(url, ...)`: the SmsReport / SmsUp HTTP batch pushes (JSON arrays).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import re
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit
from zoneinfo import ZoneInfo

import httpx

CHINA = ZoneInfo("Asia/Shanghai")
MOBILE = re.compile(r"^1[3-9]\d{9}$")


def _enc(s: str) -> str:
    return quote(s, safe="-_.~")


def acs3_signature(secret: str, method: str, path: str, query: dict[str, str], headers: dict[str, str],
                   signed: list[str], body: bytes) -> str:
    canonical_query = "&".join(f"{_enc(k)}={_enc(v)}" for k, v in sorted(query.items()))
    canonical_headers = "".join(f"{h}:{headers.get(h, '').strip()}\n" for h in signed)
    payload_hash = headers.get("x-acs-content-sha256") or hashlib.sha256(body).hexdigest()
    canonical = "\n".join([method, path or "/", canonical_query, canonical_headers, ";".join(signed), payload_hash])
    to_sign = "ACS3-HMAC-SHA256\n" + hashlib.sha256(canonical.encode()).hexdigest()
    return hmac.new(secret.encode(), to_sign.encode(), hashlib.sha256).hexdigest()


@dataclass
class Sent:
    biz_id: str
    phone: str
    sign: str
    template: str
    content: str
    out_id: str
    at: dt.datetime
    status: int = 1  # 1 waiting for receipt, 2 failed, 3 delivered
    err_code: str = ""


@dataclass
class FakeAliyun:
    access_key_id: str = "LTAI-test"
    access_key_secret: str = "test-secret"
    signs: set[str] = field(default_factory=lambda: {"健康热线"})
    templates: dict[str, str] = field(default_factory=lambda: {
        "SMS_100001": "${name}您好，请于${due_date}前往${sites}完成第二次核酸检测。已做请回复已做。",
        "SMS_100002": "${name}您好，${hotline}多次来电未能联系到您，请回电${hotline}。回T退订",
    })
    delay_s: float = 2.0
    auto_deliver: bool = True
    permanent: dict[str, str] = field(default_factory=dict)
    sent: list[Sent] = field(default_factory=list)
    faults: list[str] = field(default_factory=list)
    requests: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    @property
    def endpoint(self) -> str:
        assert self.server is not None
        return f"127.0.0.1:{self.server.server_port}"

    def fail_next(self, *faults: str) -> None:
        with self.lock:
            self.faults.extend(faults)

    def out_ids(self) -> Counter[str]:
        with self.lock:
            return Counter(s.out_id for s in self.sent)

    def duplicates(self) -> int:
        return sum(n - 1 for n in self.out_ids().values() if n > 1)

    # ------------------------------------------------------------------ pushes
    @staticmethod
    def report(s: Sent, *, success: bool = True, err_code: str = "DELIVERED") -> dict[str, Any]:
        fmt = "%Y-%m-%d %H:%M:%S"
        return {"phone_number": s.phone, "send_time": s.at.astimezone(CHINA).strftime(fmt),
                "report_time": dt.datetime.now(CHINA).strftime(fmt), "success": success,
                "err_code": err_code if not success else "DELIVERED", "err_msg": "用户接收成功" if success else err_code,
                "sms_size": "1", "biz_id": s.biz_id, "out_id": s.out_id}

    @staticmethod
    def push(url: str, items: list[dict[str, Any]]) -> httpx.Response:
        return httpx.post(url, content=json.dumps(items, ensure_ascii=False).encode(),
                          headers={"Content-Type": "application/json;charset=utf-8"})

    @staticmethod
    def reply(phone: str, content: str, *, sequence_id: int | None = None) -> dict[str, Any]:
        return {"phone_number": phone, "send_time": dt.datetime.now(CHINA).strftime("%Y-%m-%d %H:%M:%S"),
                "content": content, "sign_name": "健康热线", "dest_code": "1234",
                "sequence_id": sequence_id if sequence_id is not None else int(time.time() * 1000)}

    # ------------------------------------------------------------------ server
    def start(self) -> FakeAliyun:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Keep-alive connections answer many requests: the status line, headers and body go out in one
            # write (a buffered wfile, flushed after each request), and with TCP_NODELAY, so no answer
            # waits for the client's delayed ACK (Nagle), as a real provider's front end would not.
            wbufsize = -1
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload, ensure_ascii=False).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json;charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
                    self.close_connection = True

            def _biz(self, code: str, message: str) -> None:
                self._send(200, {"Code": code, "Message": message, "RequestId": str(uuid.uuid4())})

            def _pop(self, status: int, code: str, message: str) -> None:
                self._send(status, {"Code": code, "Message": message, "RequestId": str(uuid.uuid4()),
                                    "HostId": "dysmsapi.aliyuncs.com"})

            def _authorized(self, query: dict[str, str], body: bytes) -> bool:
                auth = self.headers.get("Authorization", "")
                m = re.fullmatch(r"ACS3-HMAC-SHA256 Credential=([^,]+),SignedHeaders=([^,]+),Signature=([0-9a-f]+)", auth)
                if m is None:
                    self._pop(400, "MissingAuthorization", "Authorization is mandatory for this action.")
                    return False
                if m.group(1) != fake.access_key_id:
                    self._pop(404, "InvalidAccessKeyId.NotFound", "Specified access key is not found.")
                    return False
                headers = {k.lower(): v for k, v in self.headers.items()}
                want = acs3_signature(fake.access_key_secret, self.command, urlsplit(self.path).path, query,
                                      headers, m.group(2).split(";"), body)
                if not hmac.compare_digest(want, m.group(3)):
                    self._pop(400, "SignatureDoesNotMatch", "Specified signature does not match our calculation.")
                    return False
                return True

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                query = dict(parse_qsl(urlsplit(self.path).query, keep_blank_values=True))
                if not self._authorized(query, body):
                    return
                params = {**query, **dict(parse_qsl(body.decode()))}
                action = self.headers.get("x-acs-action") or params.get("Action", "")
                if self.headers.get("x-acs-version", params.get("Version")) != "2017-05-25":
                    self._pop(400, "InvalidVersion", "Specified parameter Version is not valid.")
                    return
                if action == "SendSms":
                    self._send_sms(params)
                elif action == "QuerySendDetails":
                    self._query(params)
                else:
                    self._pop(404, "InvalidAction.NotFound", f"Specified api {action} is not found.")

            def _send_sms(self, p: dict[str, str]) -> None:
                fake.requests["SendSms"] += 1
                with fake.lock:
                    fault = fake.faults.pop(0) if fake.faults else ""
                if fault == "throttle":
                    self._pop(400, "Throttling.User", "Request was denied due to user flow control.")
                    return
                if fault == "500":
                    self._pop(500, "ServiceUnavailable", "The request has failed due to a temporary failure of the server.")
                    return
                if fault == "system_error":
                    self._biz("isp.SYSTEM_ERROR", "系统错误")
                    return
                if fault == "limit":
                    self._biz("isv.BUSINESS_LIMIT_CONTROL", "触发号码天级流控Permits:10")
                    return
                phone = p.get("PhoneNumbers", "")
                if phone.startswith("+86"):
                    phone = phone[3:]
                if not MOBILE.match(phone):
                    self._biz("isv.MOBILE_NUMBER_ILLEGAL", "非法手机号")
                    return
                if phone in fake.permanent:
                    self._biz(fake.permanent[phone], "error for this number")
                    return
                if p.get("SignName") not in fake.signs:
                    self._biz("isv.SMS_SIGNATURE_ILLEGAL", "该账号下找不到对应签名")
                    return
                template = fake.templates.get(p.get("TemplateCode", ""))
                if template is None:
                    self._biz("isv.SMS_TEMPLATE_ILLEGAL", "该账号下找不到对应模板")
                    return
                try:
                    values = json.loads(p.get("TemplateParam") or "{}")
                except ValueError:
                    self._biz("isv.INVALID_JSON_PARAM", "JSON参数不合法，只接受字符串值")
                    return
                if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
                    self._biz("isv.INVALID_JSON_PARAM", "JSON参数不合法，只接受字符串值")
                    return
                names = re.findall(r"\$\{(\w+)\}", template)
                if any(n not in values for n in names):
                    self._biz("isv.TEMPLATE_MISSING_PARAMETERS", "模板缺少变量")
                    return
                content = f"【{p['SignName']}】" + re.sub(r"\$\{(\w+)\}", lambda m: values[m.group(1)], template)
                biz = f"{int(time.time() * 1000)}{len(fake.sent):06d}^0"
                s = Sent(biz, phone, p["SignName"], p["TemplateCode"], content, p.get("OutId", ""),
                         dt.datetime.now(dt.UTC), status=3 if fake.auto_deliver else 1,
                         err_code="DELIVERED" if fake.auto_deliver else "")
                with fake.lock:
                    fake.sent.append(s)
                if fault == "500_created":
                    self._pop(500, "InternalError", "The request processing has failed due to some unknown error.")
                    return
                if fault == "drop":
                    self.close_connection = True
                    self.connection.close()
                    return
                if fault == "timeout":
                    time.sleep(fake.delay_s)
                self._send(200, {"Code": "OK", "Message": "OK", "BizId": biz, "RequestId": str(uuid.uuid4())})

            def _query(self, p: dict[str, str]) -> None:
                fake.requests["QuerySendDetails"] += 1
                phone = p.get("PhoneNumber", "")
                day = p.get("SendDate", "")
                try:
                    size = int(p.get("PageSize", "0"))
                    page = int(p.get("CurrentPage", "0"))
                except ValueError:
                    size = page = 0
                if not MOBILE.match(phone) or not re.fullmatch(r"\d{8}", day) or not 1 <= size <= 50 or page < 1:
                    self._biz("isv.INVALID_PARAMETERS", "参数异常")
                    return
                fmt = "%Y-%m-%d %H:%M:%S"
                with fake.lock:
                    found = [s for s in fake.sent
                             if s.phone == phone and s.at.astimezone(CHINA).strftime("%Y%m%d") == day]
                chunk = found[(page - 1) * size : page * size]
                self._send(200, {
                    "Code": "OK", "Message": "OK", "RequestId": str(uuid.uuid4()), "TotalCount": len(found),
                    "SmsSendDetailDTOs": {"SmsSendDetailDTO": [
                        {"PhoneNum": s.phone, "SendStatus": s.status, "ErrCode": s.err_code, "TemplateCode": s.template,
                         "Content": s.content, "SendDate": s.at.astimezone(CHINA).strftime(fmt),
                         "ReceiveDate": s.at.astimezone(CHINA).strftime(fmt) if s.status == 3 else "",
                         "OutId": s.out_id}
                        for s in chunk
                    ]},
                })

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
