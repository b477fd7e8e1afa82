"""`outreach sms preview|send-due|status` and `outreach escalations export` through the real CLI."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from openpyxl import load_workbook
from sqlalchemy import select
from typer.testing import CliRunner

from outreach.cli import app
from results import sms as sdb
from results.models import AuditLog, Escalation
from results.store import Store
from tests.sms_helpers import T0, residents, screen_all


@pytest.fixture
def url(tmp_path: Path) -> str:
    u = f"sqlite:///{tmp_path / 'store.db'}"
    store = Store(u)
    residents(store, 4, prefix="+86138", community="东湖社区")
    residents(store, 3, prefix="+86137", community="西街社区")
    screen_all(store, "first", second_test_done=False)
    store.close()
    return u


def test_preview_counts_and_warns(tmp_path: Path, url: str) -> None:
    runner = CliRunner()
    r = runner.invoke(app, ["--db", url, "sms", "preview", "--phone", "13800000001", "--due-date", "2026-11-25"])
    assert r.exit_code == 0, r.output
    assert "【健康热线】居民1您好，请于11月25日" in r.stdout and "1 part" in r.stdout and "warning" not in r.output
    cfg = tmp_path / "long.yaml"
    cfg.write_text("sms:\n  templates:\n    second_test_reminder:\n      body: \"" + "请" * 70 + "{name}\"\n", encoding="utf-8")
    r = runner.invoke(app, ["--config", str(cfg), "sms", "preview", "--name", "李四"])
    assert r.exit_code == 0, r.output
    assert "78 characters (UCS-2), 2 parts" in r.stdout and "warning: the text takes 2 messages" in r.stderr
    r = runner.invoke(app, ["--db", url, "sms", "preview", "--phone", "13999999999"])
    assert r.exit_code == 2 and "no stored resident" in r.stderr


def test_send_due_status_and_escalations_export(tmp_path: Path, url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OUTREACH_SMS__WINDOW", "00:00-23:59")
    runner = CliRunner()
    r = runner.invoke(app, ["--db", url, "sms", "send-due"])
    assert r.exit_code == 0, r.output
    assert "planned 7 second-test reminders" in r.stdout and "dry_run: sent 7, failed 0" in r.stdout
    r = runner.invoke(app, ["--db", url, "sms", "send-due"])
    assert "planned 0 second-test reminders" in r.stdout and "sent 0" in r.stdout  # exactly once
    r = runner.invoke(app, ["--db", url, "sms", "status"])
    assert "second_test_reminder: delivered 7" in r.stdout

    store = Store(url)
    try:
        with store.session() as s:
            rid_east = s.scalar(select(sdb.SmsMessage.resident_id).where(sdb.SmsMessage.to_phone == "+8613800000002"))
            rid_west = s.scalar(select(sdb.SmsMessage.resident_id).where(sdb.SmsMessage.to_phone == "+8613700000001"))
            s.add_all([
                Escalation(resident_id=rid_east, kind="unreachable", community="东湖社区", priority=3, reasons=["呼叫5次未接"], created_at=T0),
                Escalation(resident_id=rid_east, kind="high_risk", community="东湖社区", priority=1, reasons=["发烧"], created_at=T0),
                Escalation(resident_id=rid_west, kind="sms_undeliverable", community="西街社区", priority=3, reasons=["短信未送达：停机"], created_at=T0),
            ])
    finally:
        store.close()
    out = tmp_path / "esc.xlsx"
    r = runner.invoke(app, ["--db", url, "escalations", "export", "--format", "xlsx", "--out", str(out)])
    assert r.exit_code == 0, r.output
    wb = load_workbook(out)
    assert wb.sheetnames == ["东湖社区", "西街社区"]
    east = list(wb["东湖社区"].iter_rows(values_only=True))
    assert [row[1] for row in east[1:]] == ["高风险", "无法联系"]  # most urgent first
    assert east[1][6] == "+86138****0002" and "第二次核酸提醒：已送达" in east[1][-1]
    west = list(wb["西街社区"].iter_rows(values_only=True))
    assert west[1][1] == "短信未送达"
    csv_out = tmp_path / "esc.csv"
    r = runner.invoke(app, ["--db", url, "escalations", "export", "--format", "csv", "--unmasked", "--out", str(csv_out)])
    assert r.exit_code == 0 and "audit log" in r.stdout
    with csv_out.open(encoding="utf-8-sig") as f:
        phones = {row["手机号"] for row in csv.DictReader(f)}
    assert "+8613800000002" in phones
    store = Store(url)
    try:
        with store.session() as s:
            (entry,) = s.scalars(select(AuditLog).where(AuditLog.action == "export.unmasked"))
        assert entry.details["what"] == "escalations" and entry.details["rows"] == 3
    finally:
        store.close()
