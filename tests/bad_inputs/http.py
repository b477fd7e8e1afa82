"""Bad HTTP requests to the web console and the SMS webhooks (`outreach serve`), judged like the CLI cases.

Each case runs the real FastAPI app (outreach.web.app.create_app, SMS router included) over a byte copy of the
seeded store, through Starlette's TestClient (server exceptions become 500 responses, as under uvicorn). A
case may log in first (as `staff` or `worker`, before the store's digest is taken); the request then must get
the expected status and a body naming the problem in Chinese (or the webhook's documented error), with no
traceback in the body or the log, no unmasked number anywhere, the store unchanged (login sessions and the
login throttle aside, which every request may touch) and nothing written outside the case folder.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import shutil
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from tests.bad_inputs.harness import Outcome, captured_logs, finish_case, store_digest, unmasked_numbers

PASSWORD = "correct horse 1"
TWILIO_TOKEN = "twilio-test-token"
ALIYUN_TOKEN = "aliyun-test-token"
BASE = "http://testserver"
VOLATILE_TABLES = ("web_sessions", "login_throttle")


@dataclass
class HttpCase:
    """One bad request. `body` is form fields (dict), raw bytes, or a function of the logged-in client's CSRF
    token returning either; `csrf`: "good" sends the session's token, "bad" a wrong one, "none" nothing.
    `expect`: texts the response body must contain; `check(folder, response)` an extra check."""

    id: str
    method: str
    path: str
    status: int | tuple[int, ...]
    expect: list[str] = field(default_factory=list)
    role: str | None = None
    csrf: str = "good"
    body: dict[str, Any] | bytes | None = None
    files: dict[str, tuple[str, bytes, str]] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    cookies: dict[str, str] = field(default_factory=dict)
    sign_twilio: bool = False  # sign the form body with the configured Twilio token (a valid X-Twilio-Signature)
    config: dict[str, Any] = field(default_factory=dict)
    changes_store: bool = False
    check: Callable[[Path, Any], str | None] | None = None

    kind = "http"

    @property
    def accepted(self) -> bool:
        codes = self.status if isinstance(self.status, tuple) else (self.status,)
        return all(c < 400 for c in codes)


def twilio_signature(url: str, params: dict[str, str]) -> str:
    """X-Twilio-Signature as Twilio computes it: HMAC-SHA1 of the URL and the sorted POST fields."""
    data = url + "".join(k + params[k] for k in sorted(params))
    return base64.b64encode(hmac.new(TWILIO_TOKEN.encode(), data.encode(), hashlib.sha1).digest()).decode()


def _digest(path: Path) -> str:
    return store_digest(path, skip_tables=VOLATILE_TABLES)


def _login(client: Any, role: str) -> str:
    """Log `role` in; returns the session's CSRF token."""
    import re

    client.get("/login")
    token = client.cookies.get("outreach_login_csrf")
    r = client.post("/login", data={"username": role, "password": PASSWORD, "csrf_token": token, "next": "/"},
                    follow_redirects=False)
    if r.status_code != 303:
        raise RuntimeError(f"login as {role} failed: {r.status_code}")
    page = client.get("/upload" if role != "worker" else "/queue")
    m = re.search(r'name="csrf_token" value="([^"]+)"', page.text) or re.search(
        r'name="csrf-token" content="([^"]+)"', page.text)
    if not m:
        raise RuntimeError("no CSRF token on the page")
    return m.group(1)


def run_http_case(case: HttpCase, folder: Path, seed_db: Path) -> Outcome:
    from fastapi.testclient import TestClient

    from outreach.config import load_config
    from outreach.web.app import create_app
    from results.store import Store

    folder.mkdir(parents=True, exist_ok=True)
    store_path = folder / "store.db"
    shutil.copyfile(seed_db, store_path)
    url = f"sqlite:///{store_path}"
    overrides: dict[str, Any] = {
        "database": {"url": url},
        "turn": {"audio_dir": str(folder / "answers")},
        "tts": {"cache_dir": str(folder / "prompts")},
        "web": {"data_dir": str(folder / "web")},
        "sms": {"public_base_url": BASE},
    }
    for section, values in case.config.items():
        overrides.setdefault(section, {}).update(values)
    env = {"OUTREACH_SMS__TWILIO_AUTH_TOKEN": TWILIO_TOKEN, "OUTREACH_SMS__ALIYUN_CALLBACK_TOKEN": ALIYUN_TOKEN}
    config = load_config(None, environ=env, overrides=overrides)
    cwd = os.getcwd()
    problems: list[str] = []
    store = Store(url)
    with captured_logs() as capture:
        try:
            os.chdir(folder)
            app = create_app(config, store)
            with TestClient(app, base_url=BASE, raise_server_exceptions=False) as client:
                csrf = _login(client, case.role) if case.role else ""
                before = _digest(store_path)
                before_files = {p for p in folder.rglob("*")}
                headers = dict(case.headers)
                body = case.body
                if isinstance(body, dict) and case.csrf != "none" and case.role:
                    body = {"csrf_token": csrf if case.csrf == "good" else "forged" + csrf[:4], **body}
                if case.sign_twilio and isinstance(body, dict):
                    headers["X-Twilio-Signature"] = twilio_signature(BASE + case.path, {k: str(v) for k, v in body.items()})
                for k, v in case.cookies.items():
                    client.cookies.set(k, v)
                kwargs: dict[str, Any] = {"headers": headers, "follow_redirects": False}
                if case.files is not None:
                    kwargs["files"] = case.files
                    kwargs["data"] = body if isinstance(body, dict) else {}
                    if case.role and case.csrf != "none" and "csrf_token" not in kwargs["data"]:
                        kwargs["data"] = {"csrf_token": csrf, **kwargs["data"]}
                elif isinstance(body, dict):
                    kwargs["content"] = urlencode(body, doseq=True).encode()
                    headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
                elif body is not None:
                    kwargs["content"] = body
                response = client.request(case.method, case.path, **kwargs)
        except Exception as exc:  # the harness itself must report, not die, on a case it cannot drive
            output = "".join(traceback.format_exception(exc)) + "\n" + capture.text
            return Outcome("crash", [f"uncaught {type(exc).__name__}: {str(exc)[:200]}"], output, None)
        finally:
            os.chdir(cwd)
            store.close()
    text = response.text if "text" in response.headers.get("content-type", "") or "json" in response.headers.get(
        "content-type", "") or "xml" in response.headers.get("content-type", "") else ""
    logs = capture.text
    output = f"HTTP {response.status_code} {text}\n--- log\n{logs}"
    if response.status_code >= 500 or "Traceback (most recent call last)" in output:
        return Outcome("crash", [f"status {response.status_code}" + (" with a traceback" if "Traceback" in output
                                                                     else "")], output, response.status_code)
    codes = case.status if isinstance(case.status, tuple) else (case.status,)
    if response.status_code not in codes:
        problems.append(f"status {response.status_code}, expected {case.status}")
    for want in case.expect:
        if want not in text:
            problems.append(f"response does not say {want!r}")
    leaked = unmasked_numbers(text) + [f"(log) {x}" for x in unmasked_numbers(logs)]
    leaked += [f"(header) {x}" for x in unmasked_numbers(str(dict(response.headers)))]
    if leaked:
        problems.append(f"unmasked numbers: {', '.join(leaked)}")
    if not case.changes_store and _digest(store_path) != before:
        problems.append("the store changed")
    if not case.changes_store:
        new = [str(p.relative_to(folder)) for p in folder.rglob("*") if p not in before_files and p.is_file()]
        if new:
            problems.append(f"files written: {', '.join(new[:5])}")
    return finish_case(case, problems, folder, output, response.status_code, checked=response)


# --------------------------------------------------------------------------- the cases

CSV_OK = "姓名,手机号,社区\n赵六,13500135000,阳光社区\n".encode()


def _no_escape(folder: Path, _response: Any) -> str | None:
    """Nothing was written outside the case folder's web/ data folder (no path traversal)."""
    outside = [p for p in folder.parent.rglob("passwd*") if folder not in p.parents]
    return f"written outside: {outside}" if outside else None


def _stays_local(_folder: Path, response: Any) -> str | None:
    where = response.headers.get("location", "")
    return None if where.startswith("/") and not where.startswith("//") else f"redirects to {where!r}"


def _deep_json(n: int) -> bytes:
    return b"[" * n + b"]" * n


def http_cases() -> list[HttpCase]:
    form = {"username": "staff", "password": PASSWORD}
    ali = f"/sms/aliyun/report/{ALIYUN_TOKEN}"
    ali_reply = f"/sms/aliyun/reply/{ALIYUN_TOKEN}"
    json_h = {"Content-Type": "application/json"}
    return [
        # login, sessions, CSRF
        HttpCase("http-login-no-csrf", "POST", "/login", 403, ["登录页面已过期"], body=form),
        HttpCase("http-login-forged-csrf", "POST", "/login", 403, ["登录页面已过期"],
                 body={**form, "csrf_token": "forged"}, cookies={"outreach_login_csrf": "other"}),
        HttpCase("http-login-json-body", "POST", "/login", 403, ["登录页面已过期"], body=b'{"username": "staff"}',
                 headers=json_h),
        HttpCase("http-login-not-utf8", "POST", "/login", (400, 403), ["登录"], body=b"username=%FF%FE&password=\xff",
                 headers={"Content-Type": "application/x-www-form-urlencoded"}),
        HttpCase("http-login-broken-multipart", "POST", "/login", (400, 403), ["登录"], body=b"--x\r\nbroken",
                 headers={"Content-Type": "multipart/form-data; boundary=x"}),
        HttpCase("http-login-huge-form", "POST", "/login", (400, 413), ["请求无效"],
                 body={**form, "username": "u" * (4 << 20)}),
        HttpCase("http-login-many-fields", "POST", "/login", 400, ["请求无效"],
                 body=b"&".join(b"f%d=x" % i for i in range(20_000)),
                 headers={"Content-Type": "application/x-www-form-urlencoded"}),
        HttpCase("http-healthz-post", "POST", "/healthz", 405, ["不支持的请求方式"]),
        HttpCase("http-post-no-session", "POST", "/campaigns/1/pause", 303, [], body={"x": "1"},
                 check=lambda _f, r: None if r.headers.get("location", "").startswith("/login") else "no login"),
        HttpCase("http-post-no-csrf", "POST", "/campaigns/1/pause", 403, ["页面已过期"], role="staff", csrf="none",
                 body={"x": "1"}),
        HttpCase("http-post-forged-csrf", "POST", "/campaigns/1/pause", 403, ["页面已过期"], role="staff", csrf="bad",
                 body={"x": "1"}),
        HttpCase("http-forged-session-cookie", "GET", "/campaigns", 303, [], cookies={"outreach_session": "x" * 40},
                 check=lambda _f, r: None if r.headers.get("location", "").startswith("/login") else "no login"),
        HttpCase("http-huge-session-cookie", "GET", "/campaigns", 303, [], cookies={"outreach_session": "x" * 8000}),
        HttpCase("http-login-next-elsewhere", "GET", "/login?next=//evil.example/x", 200, ["登录"],
                 check=lambda _f, r: None if "evil.example" not in r.text else "the form keeps a foreign next"),
        # unknown ids, wrong types in the path or query
        HttpCase("http-campaign-unknown-id", "GET", "/campaigns/999999", 404, ["页面不存在"], role="staff"),
        HttpCase("http-campaign-id-text", "GET", "/campaigns/abc", 422, ["参数", "campaign_id"], role="staff"),
        HttpCase("http-campaign-id-huge", "GET", "/campaigns/" + "9" * 40, (404, 422), [], role="staff"),
        HttpCase("http-campaign-unknown-action", "POST", "/campaigns/1/explode", 404, ["页面不存在"], role="staff",
                 body={"x": "1"}),
        HttpCase("http-export-unknown-format", "GET", "/campaigns/1/export/attempts.pdf", 404, ["页面不存在"],
                 role="staff"),
        HttpCase("http-export-unknown-what", "GET", "/campaigns/1/export/passwords.csv", 404, ["页面不存在"],
                 role="staff"),
        HttpCase("http-export-unmasked-text", "GET", "/campaigns/1/export/attempts.csv?unmasked=yes", 422,
                 ["参数", "unmasked"], role="staff"),
        HttpCase("http-resident-unknown", "GET", "/residents/424242", 404, ["页面不存在"], role="staff"),
        HttpCase("http-worker-staff-page", "GET", "/campaigns", 404, ["页面不存在"], role="worker"),
        HttpCase("http-escalation-unknown", "POST", "/escalations/999999/close", 404, ["页面不存在"], role="worker",
                 body={"x": "1"}),
        HttpCase("http-audit-before-text", "GET", "/audit?before=yesterday", 422, ["参数", "before"], role="admin"),
        # path traversal in file-ish parameters
        HttpCase("http-audio-traversal", "GET", "/records/1/audio/..%2F..%2F..%2Fetc%2Fpasswd", 404, ["页面不存在"],
                 role="staff"),
        HttpCase("http-rejects-traversal-token", "GET", "/upload/..%2F..%2Fweb/rejects.csv", 404, ["页面不存在"],
                 role="staff"),
        HttpCase("http-rejects-unknown-token", "GET", "/upload/" + "a" * 24 + "/rejects.csv", 404, ["页面不存在"],
                 role="staff"),
        HttpCase("http-static-traversal", "GET", "/static/..%2F..%2F..%2Fconfig.py", 404, []),
        HttpCase("http-upload-traversal-name", "POST", "/upload", 200, ["导入"], role="staff",
                 files={"file": ("../../../passwd.csv", CSV_OK, "text/csv")}, changes_store=True, check=_no_escape),
        # uploads
        HttpCase("http-upload-no-file", "POST", "/upload", 422, ["参数", "file"], role="staff", body={"community": ""}),
        HttpCase("http-upload-exe", "POST", "/upload", 400, ["不是 .csv 或 .xlsx"], role="staff",
                 files={"file": ("list.exe", b"MZ\x90\x00", "application/octet-stream")}),
        HttpCase("http-upload-too-big", "POST", "/upload", 413, ["上限"], role="staff",
                 files={"file": ("big.csv", b"a,b\n" * 300_000, "text/csv")}, config={"web": {"max_upload_mb": 1}}),
        HttpCase("http-upload-binary-csv", "POST", "/upload", 400, ["big.csv"], role="staff",
                 files={"file": ("big.csv", os.urandom(4096), "text/csv")}),
        HttpCase("http-upload-long-community", "POST", "/upload", 400, ["社区"], role="staff", body={"community": "社" * 500},
                 files={"file": ("a.csv", CSV_OK, "text/csv")}),
        HttpCase("http-upload-no-csrf", "POST", "/upload", 403, ["页面已过期"], role="staff", csrf="none",
                 files={"file": ("a.csv", CSV_OK, "text/csv")}),
        # the campaign form
        HttpCase("http-campaign-long-name", "POST", "/campaigns", 400, ["名称"], role="staff", body={"name": "名" * 1000}),
        HttpCase("http-campaign-cps-text", "POST", "/campaigns", 422, ["参数", "cps"], role="staff",
                 body={"name": "cx", "cps": "fast"}),
        HttpCase("http-campaign-script-traversal", "POST", "/campaigns", 400, ["脚本"], role="staff",
                 body={"name": "cx", "script": "../../../../etc/passwd"}),
        HttpCase("http-campaign-bad-window", "POST", "/campaigns", 400, ["时段"], role="staff",
                 body={"name": "cx", "windows": "daily=25:00-26:00"}),
        HttpCase("http-campaign-nul-name", "POST", "/campaigns", 400, ["名称"], role="staff", body={"name": "a\x00b"}),
        HttpCase("http-wrong-method", "DELETE", "/campaigns/1", 405, ["不支持的请求方式"], role="staff"),
        # SMS webhooks: Twilio
        HttpCase("http-twilio-no-signature", "POST", "/sms/twilio/status", 403, ["invalid signature"],
                 body={"MessageSid": "SM1", "MessageStatus": "delivered"}),
        HttpCase("http-twilio-bad-signature", "POST", "/sms/twilio/inbound", 403, ["invalid signature"],
                 body={"From": "+8613800138000", "Body": "T"}, headers={"X-Twilio-Signature": "AAAA"}),
        HttpCase("http-twilio-missing-fields", "POST", "/sms/twilio/status", 400, ["MessageSid"],
                 body={"AccountSid": "AC1"}, sign_twilio=True),
        HttpCase("http-twilio-unknown-sid", "POST", "/sms/twilio/status", 204, [],
                 body={"MessageSid": "SMnosuch", "MessageStatus": "delivered"}, sign_twilio=True,
                 changes_store=True),  # kept pending until its message is known (results.sms.apply_receipts)
        HttpCase("http-twilio-long-sid", "POST", "/sms/twilio/status", 400, ["MessageSid"],
                 body={"MessageSid": "SM" + "9" * 200, "MessageStatus": "delivered"}, sign_twilio=True),
        HttpCase("http-twilio-reply-masked-in-log", "POST", "/sms/twilio/inbound", 200, [],
                 body={"MessageSid": "SMr1", "From": "+8613800138000", "Body": "已做"}, sign_twilio=True,
                 changes_store=True),
        HttpCase("http-twilio-reply-bad-from", "POST", "/sms/twilio/inbound", 400, ["From"],
                 body={"MessageSid": "SMr2", "From": "1" * 60, "Body": "T"}, sign_twilio=True),
        HttpCase("http-twilio-huge-body", "POST", "/sms/twilio/status", 413, ["too large"],
                 body=b"Body=" + b"x" * (3 << 20), headers={"Content-Type": "application/x-www-form-urlencoded"}),
        # SMS webhooks: Aliyun
        HttpCase("http-aliyun-wrong-token", "POST", "/sms/aliyun/report/guess", 403, ["forbidden"], body=b"[]",
                 headers=json_h),
        HttpCase("http-aliyun-not-json", "POST", ali, 400, ["not JSON"], body=b"<xml/>", headers=json_h),
        HttpCase("http-aliyun-not-utf8", "POST", ali, 400, ["not JSON"], body=b'[{"biz_id": "\xff\xfe"}]',
                 headers=json_h),
        HttpCase("http-aliyun-scalar", "POST", ali, 400, ["JSON array"], body=b"42", headers=json_h),
        HttpCase("http-aliyun-deep-json", "POST", ali, 400, ["JSON"], body=_deep_json(100_000), headers=json_h),
        HttpCase("http-aliyun-huge-body", "POST", ali, 413, ["too large"], body=b"[" + b'{"biz_id": "1"},' * 300_000 + b"{}]",
                 headers=json_h),
        HttpCase("http-aliyun-unknown-biz", "POST", ali, 200, [], body=b'[{"biz_id": "nosuch", "success": true}]',
                 headers=json_h, changes_store=True),  # kept pending until its message is known
        HttpCase("http-aliyun-long-biz-id", "POST", ali, 400, ["biz_id"],
                 body=('[{"biz_id": "' + "9" * 200 + '", "success": true}]').encode(), headers=json_h),
        HttpCase("http-aliyun-report-object-id", "POST", ali, 400, ["out_id"],
                 body=b'[{"biz_id": "1", "out_id": {"a": [1]}, "success": true}]', headers=json_h),
        HttpCase("http-aliyun-reply-odd-types", "POST", ali_reply, 400, ["phone_number"],
                 body=b'[{"phone_number": {"x": 1}, "content": ["T"], "send_time": 5}]', headers=json_h),
        HttpCase("http-aliyun-reply-long-phone", "POST", ali_reply, 400, ["phone_number"],
                 body=('[{"phone_number": "' + "1" * 60 + '", "content": "T"}]').encode(), headers=json_h),
        HttpCase("http-aliyun-reply-long-text", "POST", ali_reply, 200, [],
                 body=('[{"phone_number": "13800138000", "content": "' + "长" * 100_000 + '"}]').encode(),
                 headers=json_h, changes_store=True),
    ]
