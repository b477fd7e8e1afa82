"""A local Twilio REST server for tests, written from Twilio's documented API (sms_nlu.md §1):

- `POST /2010-04-01/Accounts/{AccountSid}/Messages.json` (form: To, From or MessagingServiceSid, Body,
  StatusCallback) → 201 with the Message resource (status `queued`, or `accepted` with a Messaging
  Service); HTTP basic auth with the account SID and auth token (401 / 20003 otherwise); an invalid
  `To` → 400 / 21211; numbers set in `permanent` get that error code.
- `GET /2010-04-01/Accounts/{AccountSid}/Messages.json?To=&PageSize=&Page=` → the list, newest first,
  paged with `next_page_uri`.
- Faults for the next creates (`fail_next`): "429" (20429, nothing created), "500" (nothing created),
  "500_created" (the message is created, then 500), "timeout" (created, the answer comes after
  `delay_s`), "drop" (created, the connection is closed without an answer).
- `callback(sid, status, error_code)` posts a status callback to the message's StatusCallback URL,
  signed with the auth token as Twilio signs (HMAC-SHA1 of URL + sorted params, base64).
"""

from __future__ import annotations

import base64
import datetime as dt
import email.utils
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
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx

E164 = re.compile(r"^\+[1-9]\d{6,14}$")


def twilio_signature(token: str, url: str, params: dict[str, str]) -> str:
    """Twilio's webhook signature (twilio.com/docs/usage/webhooks/webhooks-security)."""
    payload = url + "".join(k + params[k] for k in sorted(params))
    return base64.b64encode(hmac.new(token.encode(), payload.encode(), hashlib.sha1).digest()).decode()


@dataclass
class FakeMessage:
    sid: str
    to: str
    from_: str
    body: str
    status: str
    created: dt.datetime
    service: str = ""
    callback: str = ""
    error_code: int | None = None

    def resource(self, account: str) -> dict[str, Any]:
        rfc = email.utils.format_datetime(self.created, usegmt=True)
        return {
            "account_sid": account, "api_version": "2010-04-01", "body": self.body, "date_created": rfc,
            "date_sent": rfc if self.status not in ("queued", "accepted") else None, "date_updated": rfc,
            "direction": "outbound-api", "error_code": self.error_code, "error_message": None,
            "from": self.from_ or None, "messaging_service_sid": self.service or None, "num_media": "0",
            "num_segments": "1", "price": None, "price_unit": "USD", "sid": self.sid, "status": self.status,
            "subresource_uris": {"media": f"/2010-04-01/Accounts/{account}/Messages/{self.sid}/Media.json"},
            "to": self.to, "uri": f"/2010-04-01/Accounts/{account}/Messages/{self.sid}.json",
        }


@dataclass
class FakeTwilio:
    account_sid: str = "AC" + "0" * 32
    auth_token: str = "test-token"
    delay_s: float = 2.0
    permanent: dict[str, int] = field(default_factory=dict)
    messages: list[FakeMessage] = field(default_factory=list)
    faults: list[str] = field(default_factory=list)
    requests: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    # ------------------------------------------------------------------ control
    @property
    def base_url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_port}"

    def fail_next(self, *faults: str) -> None:
        with self.lock:
            self.faults.extend(faults)

    def bodies_to(self, to: str) -> list[str]:
        with self.lock:
            return [m.body for m in self.messages if m.to == to]

    def duplicates(self) -> int:
        with self.lock:
            c = Counter((m.to, m.body) for m in self.messages)
        return sum(n - 1 for n in c.values() if n > 1)

    def callback(self, sid: str, status: str, error_code: int | None = None, *, url: str | None = None,
                 bad_signature: bool = False) -> httpx.Response:
        with self.lock:
            m = next(m for m in self.messages if m.sid == sid)
            m.status = status
        params = {"AccountSid": self.account_sid, "MessageSid": sid, "SmsSid": sid, "MessageStatus": status,
                  "SmsStatus": status, "To": m.to, "From": m.from_, "ApiVersion": "2010-04-01"}
        if error_code is not None:
            params["ErrorCode"] = str(error_code)
        target = url or m.callback
        sig = twilio_signature("wrong" if bad_signature else self.auth_token, target, params)
        return httpx.post(target, data=params, headers={"X-Twilio-Signature": sig,
                                                        "I-Twilio-Idempotency-Token": str(uuid.uuid4())})

    # ------------------------------------------------------------------ server
    def start(self) -> FakeTwilio:
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
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
                    self.close_connection = True

            def _error(self, status: int, code: int, message: str) -> None:
                self._send(status, {"code": code, "message": message,
                                    "more_info": f"https://www.twilio.com/docs/errors/{code}", "status": status})

            def _auth_ok(self) -> bool:
                want = base64.b64encode(f"{fake.account_sid}:{fake.auth_token}".encode()).decode()
                return hmac.compare_digest(self.headers.get("Authorization", ""), f"Basic {want}")

            def _route(self) -> str | None:
                path = urlsplit(self.path).path
                m = re.fullmatch(r"/2010-04-01/Accounts/([^/]+)/Messages\.json", path)
                if m is None or m.group(1) != fake.account_sid:
                    self._error(404, 20404, "The requested resource was not found")
                    return None
                if not self._auth_ok():
                    self._error(401, 20003, "Authenticate")
                    return None
                return path

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = dict(parse_qsl(self.rfile.read(length).decode()))
                if self._route() is None:
                    return
                fake.requests["create"] += 1
                with fake.lock:
                    fault = fake.faults.pop(0) if fake.faults else ""
                if fault == "429":
                    self._error(429, 20429, "Too Many Requests")
                    return
                if fault == "500":
                    self._error(500, 20500, "Internal Server Error")
                    return
                to = form.get("To", "")
                if not E164.match(to):
                    self._error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
                    return
                if "Body" not in form:
                    self._error(400, 21602, "Message body is required.")
                    return
                if not form.get("From") and not form.get("MessagingServiceSid"):
                    self._error(400, 21603, "A 'From' or 'MessagingServiceSid' parameter is required")
                    return
                if to in fake.permanent:
                    code = fake.permanent[to]
                    self._error(400, code, f"error {code} for {to}")
                    return
                service = form.get("MessagingServiceSid", "")
                msg = FakeMessage(
                    sid="SM" + uuid.uuid4().hex, to=to, from_=form.get("From", ""), body=form["Body"],
                    status="accepted" if service else "queued", created=dt.datetime.now(dt.UTC),
                    service=service, callback=form.get("StatusCallback", ""),
                )
                with fake.lock:
                    fake.messages.append(msg)
                payload = msg.resource(fake.account_sid)
                with fake.lock:
                    msg.status = "sent"  # handed to the carrier right after the answer is prepared
                if fault == "500_created":
                    self._error(500, 20500, "Internal Server Error")
                    return
                if fault == "drop":
                    self.close_connection = True
                    self.connection.close()
                    return
                if fault == "timeout":
                    time.sleep(fake.delay_s)
                self._send(201, payload)

            def do_GET(self) -> None:
                if self._route() is None:
                    return
                fake.requests["list"] += 1
                q = dict(parse_qsl(urlsplit(self.path).query))
                size = int(q.get("PageSize", 50))
                page = int(q.get("Page", 0))
                with fake.lock:
                    found = [m for m in reversed(fake.messages) if not q.get("To") or m.to == q["To"]]
                    chunk = [m.resource(fake.account_sid) for m in found[page * size : (page + 1) * size]]
                base = f"/2010-04-01/Accounts/{fake.account_sid}/Messages.json"
                nxt = None
                if (page + 1) * size < len(found):
                    nxt = base + "?" + urlencode({**q, "Page": page + 1, "PageSize": size})
                self._send(200, {
                    "messages": chunk, "end": page * size + len(chunk) - 1, "first_page_uri": base,
                    "next_page_uri": nxt, "page": page, "page_size": size, "previous_page_uri": None,
                    "start": page * size, "uri": self.path,
                })

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
