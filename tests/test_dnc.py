"""The do-not-call list: `outreach dnc list|add|remove` through the real CLI, audited, and honoured by
campaigns; the functions SMS reply handling uses."""

from __future__ import annotations

import json

from sqlalchemy import select
from typer.testing import CliRunner

from outreach.cli import app
from results.donotcall import add_do_not_call_numbers, is_do_not_call, list_do_not_call, remove_do_not_call
from results.models import AuditLog
from results.store import Store

runner = CliRunner()


def cli(db: str, *args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["--db", db, "dnc", *args])
    return result.exit_code, result.stdout, result.stderr


def test_add_list_remove_through_the_cli_is_audited_and_masked(sqlite_url: str) -> None:
    code, out, err = cli(sqlite_url, "add", "--phone", "138 0013 8000", "--reason", "居民来电要求")
    assert code == 0, err
    assert out.strip() == "added: +86138****8000"
    code, out, _ = cli(sqlite_url, "add", "--phone", "+8613800138000")
    assert (code, out.strip()) == (0, "already listed: +86138****8000")
    assert cli(sqlite_url, "add", "--phone", "010-6552-9988", "--reason", "单位座机")[0] == 0

    code, out, err = cli(sqlite_url, "list")
    assert code == 0
    lines = out.strip().splitlines()
    assert len(lines) == 2 and "2 number(s)" in err
    assert "13800138000" not in out and "+86138****8000" in out and "居民来电要求" in out and "工作人员添加" in out
    code, out, _ = cli(sqlite_url, "list", "--phone", "13800138000", "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert [(r["phone"], r["source"], r["reason"]) for r in rows] == [("+86138****8000", "staff", "居民来电要求")]

    code, out, _ = cli(sqlite_url, "remove", "--phone", "13800138000", "--reason", "居民同意再联系")
    assert (code, out.strip()) == (0, "removed: +86138****8000")
    code, _, err = cli(sqlite_url, "remove", "--phone", "13800138000")
    assert code == 1 and "not on the do-not-call list" in err
    code, _, err = cli(sqlite_url, "add", "--phone", "12ab")
    assert code == 2 and "--phone '12ab'" in err

    store = Store(sqlite_url)
    try:
        with store.session() as s:
            audits = [(a.action, a.details) for a in s.scalars(select(AuditLog).order_by(AuditLog.id))]
    finally:
        store.close()
    actions = [a for a, _ in audits]
    assert actions.count("do_not_call.add") == 3 and actions.count("do_not_call.remove") == 1
    assert all("13800138000" not in json.dumps(d) for _, d in audits)
    assert {"phone": "+86138****8000", "source": "staff", "reason": "居民同意再联系"} in [d for _, d in audits]


def test_functions_for_other_channels(sqlite_url: str) -> None:
    store = Store(sqlite_url)
    try:
        assert add_do_not_call_numbers(store, ["+8613900139000"], reason="短信回复T", source="sms_reply") == 1
        assert is_do_not_call(store, "+8613900139000") and not is_do_not_call(store, "+8613700137000")
        [entry] = list_do_not_call(store)
        assert (entry.phone, entry.source, entry.reason) == ("+8613900139000", "sms_reply", "短信回复T")
        assert remove_do_not_call(store, "+8613900139000", actor="tester")
        assert not remove_do_not_call(store, "+8613900139000")
        assert list_do_not_call(store) == []
    finally:
        store.close()
