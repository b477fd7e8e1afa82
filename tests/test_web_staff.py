"""Staff pages over HTTP: upload (row errors, rejects download, refused files), campaign creation with Chinese
error messages, rehearsal, lifecycle, the dashboard's data, every export (unmasked ones audited), the admin
audit log, worker actions (assign, callback, close, reopen) and the phone reveal audit."""

from __future__ import annotations

import re
from io import BytesIO

from fastapi.testclient import TestClient
from openpyxl import load_workbook
from sqlalchemy import select

from results.models import AuditLog, Callback, Campaign, Escalation, Resident
from results.store import Store
from tests import test_web_auth as _fixtures
from tests.web_support import World, csrf_of, login

# the same fixtures as the auth tests: a world per module, a private copy of it per test
world_dir = _fixtures.world_dir
base_world = _fixtures.base_world
world = _fixtures.world
clock = _fixtures.clock
store = _fixtures.store
app_client = _fixtures.app_client

CSV = "姓名,手机号,社区,地址\n张三,13800138000,河西社区,河西路1号\n李四,138001,河西社区,河西路2号\n王五,13900139000,河西社区,河西路3号\n"


def _csrf(c: TestClient, path: str = "/campaigns") -> str:
    return csrf_of(c.get(path).text)


def test_upload_shows_row_errors_and_offers_the_rejects(app_client: TestClient, store: Store) -> None:
    login(app_client, "staff")
    csrf = _csrf(app_client, "/upload")
    r = app_client.post("/upload", data={"csrf_token": csrf, "community": ""},
                        files={"file": ("名单.csv", CSV.encode("gbk"), "text/csv")})
    assert r.status_code == 200
    assert re.search(r"新增 <b>2</b> 人", r.text) and 'id="rejected">1<' in r.text
    assert "<td>3</td>" in r.text  # the rejected row, with its reason, on the page
    link = re.search(r'href="(/upload/[0-9a-f]{24}/rejects\.csv)"', r.text)
    assert link
    rej = app_client.get(link.group(1))
    assert rej.status_code == 200
    body = rej.content.decode("utf-8-sig")
    assert "李四" in body and "错误原因" in body
    with store.session() as s:
        assert s.scalar(select(Resident.source_file).where(Resident.name == "张三")) == "名单.csv"
    # refused files: wrong type, not really an XLSX; nothing imported
    r = app_client.post("/upload", data={"csrf_token": csrf}, files={"file": ("a.txt", b"x", "text/plain")})
    assert r.status_code == 400 and "不是 .csv 或 .xlsx" in r.text
    r = app_client.post("/upload", data={"csrf_token": csrf}, files={"file": ("a.xlsx", b"not a zip", "application/zip")})
    assert r.status_code == 400 and "文件无法导入" in r.text
    assert app_client.get("/upload/" + "0" * 24 + "/rejects.csv").status_code == 404
    worker = TestClient(app_client.app)
    login(worker, "worker_a")
    assert worker.get(link.group(1)).status_code == 404


def test_create_rehearse_start_pause_resume_cancel(app_client: TestClient, store: Store) -> None:
    login(app_client, "staff")
    csrf = _csrf(app_client, "/upload")
    app_client.post("/upload", data={"csrf_token": csrf}, files={"file": ("名单.csv", CSV.encode(), "text/csv")})
    csrf = _csrf(app_client, "/campaigns/new")
    r = app_client.post("/campaigns", data={"csrf_token": csrf, "name": "demo", "communities": ["河西社区"]})
    assert r.status_code == 400 and "已有名为“demo”的活动" in r.text
    r = app_client.post("/campaigns", data={"csrf_token": csrf, "name": "河西", "windows": "25:00-26:00"})
    assert r.status_code == 400 and "呼叫时段" in r.text
    r = app_client.post("/campaigns", data={"csrf_token": csrf, "name": "河西", "communities": ["没有这个社区"]})
    assert r.status_code == 400 and "没有符合条件的居民" in r.text
    r = app_client.post("/campaigns", data={"csrf_token": csrf, "name": "河西", "communities": ["河西社区"],
                                            "max_concurrent": "4", "cps": "0.5"}, follow_redirects=False)
    assert r.status_code == 303
    cid = int(r.headers["location"].split("/")[2].split("?")[0])
    with store.session() as s:
        camp = s.get(Campaign, cid)
        assert camp is not None and camp.state == "draft" and camp.pacing["max_concurrent_calls"] == 4
    page = app_client.get(f"/campaigns/{cid}")
    assert "共 2 名居民" not in page.text  # only after the redirect from the form
    r = app_client.post(f"/campaigns/{cid}/rehearse", data={"csrf_token": csrf}, headers={"HX-Request": "true"})
    assert r.status_code == 200 and "预计" in r.text and "<html" not in r.text
    with store.session() as s:
        assert s.get(Campaign, cid).state == "draft"  # type: ignore[union-attr]
        assert s.scalar(select(AuditLog).where(AuditLog.action == "campaign.rehearsal"))
        assert not s.scalar(select(Campaign.id).where(Campaign.name == "河西", Campaign.id != cid))
    r = app_client.post(f"/campaigns/{cid}/resume", data={"csrf_token": csrf})
    assert r.status_code == 409 and "不能开始/继续" in r.text
    for action, state in (("start", "running"), ("pause", "paused"), ("resume", "running"), ("cancel", "cancelled")):
        r = app_client.post(f"/campaigns/{cid}/{action}", data={"csrf_token": csrf}, follow_redirects=False)
        assert r.status_code == 303, action
        with store.session() as s:
            assert s.get(Campaign, cid).state == state  # type: ignore[union-attr]
    assert app_client.post(f"/campaigns/{cid}/explode", data={"csrf_token": csrf}).status_code == 404
    assert app_client.post("/campaigns/99999/start", data={"csrf_token": csrf}).status_code == 404
    data = app_client.get(f"/campaigns/{cid}/data").json()
    assert data["campaign"]["state"] == "cancelled" and sum(data["contacts"].values()) == 2


def test_dashboard_data_and_every_export(app_client: TestClient, store: Store) -> None:
    login(app_client, "staff")
    d = app_client.get("/campaigns/1/data").json()
    assert d["campaign"]["name"] == "demo" and d["answer_rate"] > 0
    assert sum(p["calls"] for p in d["timeline"]) == sum(d["attempts"].values())
    assert sum(r["total"] for r in d["per_community"].values()) == 80
    assert app_client.get("/campaigns/999/data").status_code == 404
    for what in ("screenings", "attempts", "escalations"):
        for fmt in ("csv", "xlsx"):
            r = app_client.get(f"/campaigns/1/export/{what}.{fmt}")
            assert r.status_code == 200, (what, fmt)
            text = r.content.decode("utf-8-sig") if fmt == "csv" else " ".join(
                str(c) for ws in load_workbook(BytesIO(r.content), read_only=True).worksheets
                for row in ws.iter_rows(values_only=True) for c in row if c)
            assert not re.search(r"\+86\d{11}", text), (what, fmt)  # masked
    # unmasked: staff may, and it is audited before the file exists
    r = app_client.get("/campaigns/1/export/screenings.csv?unmasked=1")
    assert r.status_code == 200 and re.search(r"\+86\d{11}", r.content.decode("utf-8-sig"))
    with store.session() as s:
        row = s.scalar(select(AuditLog).where(AuditLog.action == "export.unmasked"))
        assert row is not None and row.actor == "staff"
        assert s.scalar(select(AuditLog).where(AuditLog.action == "export", AuditLog.actor == "staff"))
    assert app_client.get("/campaigns/1/export/secrets.csv").status_code == 404


def test_worker_actions_and_audit_log(app_client: TestClient, store: Store, world: World) -> None:
    with store.session() as s:
        e = s.scalar(select(Escalation).where(Escalation.community == world.a).order_by(Escalation.id).limit(1))
        assert e is not None
        eid, rid = e.id, e.resident_id
    login(app_client, "worker_a")
    page = app_client.get(f"/residents/{rid}")
    assert page.status_code == 200 and "显示号码" in page.text and "****" in page.text
    csrf = csrf_of(page.text)
    r = app_client.post(f"/escalations/{eid}/assign", data={"csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 303
    r = app_client.post(f"/escalations/{eid}/callback", data={"csrf_token": csrf, "reached": "no", "action": "none",
                                                              "notes": "无人接"}, follow_redirects=False)
    assert r.status_code == 303
    r = app_client.post(f"/escalations/{eid}/callback", data={"csrf_token": csrf, "reached": "yes", "action": "bogus"})
    assert r.status_code == 400
    r = app_client.post(f"/escalations/{eid}/callback", data={"csrf_token": csrf, "reached": "yes",
                                                              "action": "tested", "notes": "已做核酸，阴性", "close": "1"},
                        follow_redirects=False)
    assert r.status_code == 303
    with store.session() as s:
        e2 = s.get(Escalation, eid)
        assert e2 is not None and e2.status == "closed" and e2.assigned_to == "worker_a" and e2.result == "reached:tested"
        assert len(list(s.scalars(select(Callback).where(Callback.escalation_id == eid)))) == 2
    r = app_client.post(f"/escalations/{eid}/reopen", data={"csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 303
    assert "已联系上，已做核酸" in app_client.get(f"/residents/{rid}").text
    r = app_client.post(f"/escalations/{eid}/close", data={"csrf_token": csrf}, follow_redirects=False)
    with store.session() as s:
        assert s.get(Escalation, eid).status == "closed"  # type: ignore[union-attr]
    phone = app_client.post(f"/residents/{rid}/phone", data={"csrf_token": csrf}, headers={"HX-Request": "true"})
    assert phone.status_code == 200 and re.search(r"\+86\d{11}", phone.text)
    q = app_client.get("/queue?status=closed&mine=1")
    assert f"/residents/{rid}#e{eid}" in q.text
    admin = TestClient(app_client.app)
    login(admin, "admin")
    log = admin.get("/audit?actor=worker_a")
    assert log.status_code == 200
    for label in ("显示号码", "查看居民", "认领", "记录回访", "重新打开"):
        assert label in log.text, label
    assert "显示号码" in admin.get("/audit?action=resident.phone_shown").text


def test_settings_form_edits_a_running_campaign_and_names_mistakes(app_client: TestClient, store: Store) -> None:
    login(app_client, "staff")
    csrf = _csrf(app_client, "/upload")
    app_client.post("/upload", data={"csrf_token": csrf}, files={"file": ("名单.csv", CSV.encode(), "text/csv")})
    csrf = _csrf(app_client, "/campaigns/new")
    r = app_client.post("/campaigns", data={"csrf_token": csrf, "name": "设置", "communities": ["河西社区"],
                                            "max_concurrent": "4", "cps": "0.5"}, follow_redirects=False)
    cid = int(r.headers["location"].split("/")[2].split("?")[0])
    assert app_client.post(f"/campaigns/{cid}/start", data={"csrf_token": csrf}, follow_redirects=False).status_code == 303
    page = app_client.get(f"/campaigns/{cid}").text
    # the form shows what is stored, in the staff's words
    windows_shown = re.search(r'<textarea name="windows"[^>]*>([^<]*)</textarea>', page)
    assert windows_shown and windows_shown.group(1).startswith("每天=")
    assert 'name="max_concurrent" min="1" max="2000" value="4"' in page
    form = {"csrf_token": csrf, "windows": "每天=09:00-12:00,14:00-18:30\n周日=", "holidays": "2026-12-25",
            "max_concurrent": "6", "cps": "0.5", "max_attempts": "4", "max_per_day": "2"}
    r = app_client.post(f"/campaigns/{cid}/settings", data=form, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/campaigns/{cid}?saved=1"
    with store.session() as s:
        camp = s.get(Campaign, cid)
        assert camp is not None and camp.state == "running"
        assert camp.windows == {"daily": ["09:00-12:00", "14:00-18:30"], "sun": []}
        assert camp.holidays == ["2026-12-25"] and camp.pacing["max_concurrent_calls"] == 6
        assert camp.pacing["calls_per_second"] == 0.5
        assert camp.retry_policy["max_attempts_total"] == 4 and camp.retry_policy["max_attempts_per_day"] == 2
        audits = s.scalars(select(AuditLog).where(AuditLog.action.like("campaign.settings%"))).all()
        assert len(audits) == 1
    assert "设置已保存" in app_client.get(f"/campaigns/{cid}?saved=1").text
    # the same values again: nothing to change, said so, nothing audited
    r = app_client.post(f"/campaigns/{cid}/settings", data=form)
    assert r.status_code == 400 and "设置没有变化" in r.text
    # mistakes named in Chinese, the stored settings untouched, the form keeps what was typed
    for bad, says in (({"windows": "每天=25:00-26:00"}, "呼叫时段"), ({"windows": "09:00-12:00"}, "格式不对"),
                      ({"max_attempts": "50"}, "每人最多呼叫次数应在 1 到 10 之间"),
                      ({"cps": "0"}, "每秒新呼叫数应在"), ({"max_per_day": "abc"}, "")):
        r = app_client.post(f"/campaigns/{cid}/settings", data={**form, **bad})
        assert r.status_code in (400, 422) and says in r.text, (bad, r.text[:300])
        assert "Traceback" not in r.text
    with store.session() as s:
        camp = s.get(Campaign, cid)
        assert camp is not None and camp.retry_policy["max_attempts_total"] == 4 and camp.pacing["calls_per_second"] == 0.5
    worker = TestClient(app_client.app)
    login(worker, "worker_a")
    r = worker.post(f"/campaigns/{cid}/settings", data={**form, "csrf_token": csrf_of(worker.get("/queue").text)})
    assert r.status_code in (403, 404)
