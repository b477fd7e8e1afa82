"""Web console over HTTP: login, cookies, CSRF on every form, backoff and lockout, session expiry, roles,
and cross-community access (a worker of one community gets 404 for everything of the others)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from outreach.services.accounts import LoginPolicy
from outreach.web.app import create_app
from results.models import AuditLog, CallAttempt, Campaign, Escalation, Resident, ScreeningRecord
from results.store import Store
from tests.web_support import PASSWORD, Clock, World, build_world, copy_world, csrf_of, login


@pytest.fixture(scope="module")
def world_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("webworld")


@pytest.fixture(scope="module")
def base_world(world_dir: Path) -> World:
    return build_world(world_dir)


@pytest.fixture
def world(base_world: World, world_dir: Path, tmp_path: Path) -> World:
    return copy_world(base_world, world_dir, tmp_path / "w")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(world: World) -> Iterator[Store]:
    s = Store(world.url)
    yield s
    s.close()


@pytest.fixture
def app_client(world: World, store: Store, clock: Clock, tmp_path: Path) -> Iterator[TestClient]:
    app = create_app(world.config, store, clock=clock, data_dir=tmp_path / "web",
                     policy=LoginPolicy(free_failures=3, max_failures=6))
    with TestClient(app) as c:
        yield c


def new_client(client: TestClient) -> TestClient:
    return TestClient(client.app)


def test_login_sets_a_safe_cookie_and_logout_ends_the_session(app_client: TestClient, store: Store) -> None:
    assert app_client.get("/campaigns", follow_redirects=False).headers["location"].startswith("/login")
    r = login(app_client, "staff")
    assert r.status_code == 303 and r.headers["location"] == "/campaigns"
    cookie = r.headers["set-cookie"]
    assert "outreach_session=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert "Secure" not in cookie  # plain HTTP on loopback; Secure behind TLS, see below
    page = app_client.get("/campaigns")
    assert page.status_code == 200 and "外呼活动" in page.text
    r = app_client.post("/logout", data={"csrf_token": csrf_of(page.text)}, follow_redirects=False)
    assert r.status_code == 303
    assert app_client.get("/campaigns", follow_redirects=False).status_code == 303
    with store.session() as s:
        actions = [a for (a,) in s.execute(select(AuditLog.action).where(AuditLog.actor == "staff"))]
    assert "login" in actions and "logout" in actions


def test_cookie_is_secure_behind_tls(world: World, store: Store) -> None:
    app = create_app(world.config, store)
    with TestClient(app, base_url="https://console.example") as c:
        r = login(c, "staff")
        assert r.status_code == 303
        assert "Secure" in r.headers["set-cookie"]


def test_wrong_password_same_message_for_unknown_name(app_client: TestClient) -> None:
    r1 = login(app_client, "staff", "wrong password")
    r2 = login(new_client(app_client), "nobody-here", "wrong password")
    assert r1.status_code == r2.status_code == 401
    assert "用户名或密码错误" in r1.text and "用户名或密码错误" in r2.text
    assert "outreach_session" not in r1.headers.get("set-cookie", "")


def test_backoff_then_lockout_then_unlock(app_client: TestClient, clock: Clock) -> None:
    for _ in range(3):
        assert login(app_client, "worker_a", "nope").status_code in (401, 429)
    # from the 3rd failure on, the name backs off: even the right password is refused for now
    r = login(app_client, "worker_a")
    assert r.status_code == 429 and "秒后再试" in r.text
    clock.advance(seconds=2)
    for _ in range(3):
        login(app_client, "worker_a", "nope")
        clock.advance(seconds=70)
    r = login(app_client, "worker_a")
    assert r.status_code == 429 and "锁定" in r.text
    clock.advance(minutes=10)
    assert login(app_client, "worker_a").status_code == 429
    clock.advance(minutes=6)
    r = login(app_client, "worker_a")
    assert r.status_code == 303  # lock over, right password, failures cleared
    assert login(new_client(app_client), "worker_a", "nope").status_code == 401


def test_session_expires_when_idle_and_at_its_end(app_client: TestClient, clock: Clock) -> None:
    login(app_client, "staff")
    assert app_client.get("/campaigns").status_code == 200
    clock.advance(minutes=29)
    assert app_client.get("/campaigns").status_code == 200
    clock.advance(minutes=31)
    assert app_client.get("/campaigns", follow_redirects=False).status_code == 303
    login(app_client, "staff")
    for _ in range(25):  # active all along, but a session ends after 12 hours anyway
        clock.advance(minutes=29)
        app_client.get("/queue")
    assert app_client.get("/campaigns", follow_redirects=False).status_code == 303


def test_every_post_needs_the_csrf_token(app_client: TestClient, store: Store) -> None:
    login(app_client, "staff")
    with store.session() as s:
        esc = s.scalar(select(Escalation).order_by(Escalation.id).limit(1))
        assert esc is not None
        resident_id, esc_id = esc.resident_id, esc.id
    posts = [
        ("/logout", {}), ("/campaigns", {"name": "x"}), ("/campaigns/1/pause", {}), ("/campaigns/1/rehearse", {}),
        (f"/residents/{resident_id}/phone", {}), (f"/escalations/{esc_id}/assign", {}),
        (f"/escalations/{esc_id}/callback", {"reached": "yes"}), (f"/escalations/{esc_id}/close", {}),
        (f"/escalations/{esc_id}/reopen", {}),
    ]
    for path, data in posts:
        r = app_client.post(path, data=data, follow_redirects=False)
        assert r.status_code == 403, path
        r = app_client.post(path, data={**data, "csrf_token": "forged"}, follow_redirects=False)
        assert r.status_code == 403, path
    r = app_client.post("/upload", files={"file": ("a.csv", b"phone\n13800138000\n")}, follow_redirects=False)
    assert r.status_code == 403
    with store.session() as s:
        after = s.get(Escalation, esc_id)
        assert after is not None and after.status == esc.status  # nothing changed
        assert not s.scalar(select(AuditLog).where(AuditLog.action == "resident.phone_shown"))
    # the login form has its own token
    assert app_client.post("/login", data={"username": "staff", "password": PASSWORD}).status_code == 403


def test_roles_staff_pages_are_404_for_workers(app_client: TestClient) -> None:
    login(app_client, "worker_a")
    for path in ("/campaigns", "/campaigns/new", "/campaigns/1", "/campaigns/1/data", "/upload",
                 "/campaigns/1/export/screenings.xlsx", "/audit"):
        assert app_client.get(path).status_code == 404, path
    page = app_client.get("/queue")
    r = app_client.post("/campaigns/1/cancel", data={"csrf_token": csrf_of(page.text)})
    assert r.status_code == 404
    staff = new_client(app_client)
    login(staff, "staff")
    assert staff.get("/audit").status_code == 404  # admins only
    admin = new_client(app_client)
    login(admin, "admin")
    assert admin.get("/audit").status_code == 200


def test_worker_of_a_sees_nothing_of_other_communities(app_client: TestClient, world: World, store: Store) -> None:
    """Every resident, record, escalation, audio file and export of another community: 404, no leak."""
    login(app_client, "worker_a")
    a = world.a
    page = app_client.get("/queue?status=all")
    assert page.status_code == 200
    csrf = csrf_of(page.text)
    with store.session() as s:
        residents = list(s.execute(select(Resident.id, Resident.community, Resident.name, Resident.phone)))
        records = list(s.execute(select(ScreeningRecord.id, Resident.community).join(
            Resident, Resident.id == ScreeningRecord.resident_id)))
        escalations = list(s.execute(select(Escalation.id, Escalation.community, Escalation.resident_id)))
        campaign_id = s.scalar(select(Campaign.id))
        attempts = s.scalar(select(CallAttempt.id).limit(1))
    assert attempts is not None
    other = [r for r in residents if r.community != a]
    mine = [r for r in residents if r.community == a]
    assert other and mine and any(e.community != a for e in escalations)
    leaks: list[str] = []
    for r in other:
        for method, path in (("GET", f"/residents/{r.id}"), ("POST", f"/residents/{r.id}/phone")):
            resp = app_client.request(method, path, data={"csrf_token": csrf} if method == "POST" else None)
            if resp.status_code != 404 or r.phone in resp.text or (r.name and r.name in resp.text):
                leaks.append(f"{method} {path}: {resp.status_code}")
    for rec_id, community in records:
        if community == a:
            continue
        for field in ("has_symptoms", "temperature", "identity_confirmed"):
            resp = app_client.get(f"/records/{rec_id}/audio/{field}")
            if resp.status_code != 404:
                leaks.append(f"audio {rec_id}/{field}: {resp.status_code}")
    for e_id, community, _ in escalations:
        if community == a:
            continue
        resp = app_client.get(f"/escalations/{e_id}", follow_redirects=False)
        if resp.status_code != 404:
            leaks.append(f"GET /escalations/{e_id}: {resp.status_code}")
        for action, data in (("assign", {}), ("callback", {"reached": "yes", "action": "visit", "notes": "x"}),
                             ("close", {}), ("reopen", {})):
            resp = app_client.post(f"/escalations/{e_id}/{action}", data={**data, "csrf_token": csrf},
                                   follow_redirects=False)
            if resp.status_code != 404:
                leaks.append(f"POST /escalations/{e_id}/{action}: {resp.status_code}")
    # the queue and its filters never list another community's resident
    for q in ("/queue?status=all", "/queue?status=all&community=" + other[0].community, "/queue?status=closed"):
        html = app_client.get(q).text
        for r in other:
            if f"/residents/{r.id}\"" in html or f"/residents/{r.id}#" in html:
                leaks.append(f"{q} lists resident {r.id}")
    # export of the campaign's escalations: only A's rows
    resp = app_client.get(f"/queue/export/{campaign_id}.xlsx")
    if any(e.community == a for e in escalations):
        assert resp.status_code == 200
        from io import BytesIO

        from openpyxl import load_workbook

        wb = load_workbook(BytesIO(resp.content), read_only=True)
        cells = [str(c) for ws in wb.worksheets for row in ws.iter_rows(values_only=True) for c in row if c]
        for r in other:
            if r.name and r.name in cells:
                leaks.append(f"export lists {r.name}")
    assert app_client.get("/queue/export/999999.xlsx").status_code == 404
    assert leaks == [], leaks
    with store.session() as s:  # nothing was changed by the refused actions
        assert not s.scalar(select(AuditLog).where(AuditLog.actor == "worker_a",
                                                   AuditLog.action.in_(["escalation.assign", "escalation.close",
                                                                        "resident.phone_shown"])))
    # and their own community works
    own = next(e for e in escalations if e.community == a) if any(e.community == a for e in escalations) else None
    if own is not None:
        assert app_client.get(f"/residents/{own.resident_id}").status_code == 200
        r = app_client.post(f"/residents/{own.resident_id}/phone", data={"csrf_token": csrf})
        assert r.status_code == 200 and re.search(r"\+86\d{11}", r.text)


def test_worker_b_export_of_a_campaign_without_their_community_is_404(world: World, store: Store) -> None:
    with store.session() as s:
        campaign_id = s.scalar(select(Campaign.id))
        with_esc = {c for (c,) in s.execute(select(Escalation.community).distinct())}
    lonely = next((c for c in world.communities if c not in with_esc), None)
    from outreach.services.accounts import add_user

    add_user(store, "worker_lonely", role="worker", communities=[lonely or "没有的社区"], password=PASSWORD, actor="t")
    app = create_app(world.config, store)
    with TestClient(app) as c:
        login(c, "worker_lonely")
        assert c.get(f"/queue/export/{campaign_id}.xlsx").status_code == 404


def test_sms_receipts_are_mounted_and_refuse_unsigned_calls(app_client: TestClient) -> None:
    r = app_client.post("/sms/aliyun/report/not-the-token", json=[])
    assert r.status_code == 403
    r = app_client.post("/sms/twilio/status", data={"MessageSid": "SM1", "MessageStatus": "delivered"})
    assert r.status_code == 403  # no valid X-Twilio-Signature


def test_healthz_and_metrics(app_client: TestClient) -> None:
    r = app_client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok", "database": "ok"}
    text = app_client.get("/metrics").text
    assert 'outreach_call_attempts{outcome="answered"}' in text
    assert "outreach_escalations_open" in text and "outreach_lines_in_use" in text
    assert "outreach_turn_latency_seconds_bucket" in text and "outreach_nlu_latency_seconds_count" in text
    assert "outreach_campaigns{state=\"completed\"} 1.0" in text
    assert "outreach_workers_alive" in text and "outreach_breaker_open" in text
