"""Receipts and replies over real HTTP: Twilio status callbacks checked with the real RequestValidator,
Aliyun SmsReport/SmsUp pushes with the URL token; repeats and out-of-order receipts; opt-out and
"已做" replies; the results reach the store."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from sqlalchemy import func, select

from campaigns.reminders import StoreEvents, plan
from dialogs.nlu.builtin import BuiltinNlu
from results import campaigns as rdb
from results import sms as sdb
from results.models import DoNotCall, Escalation, Resident, SmsEvent, SmsReply
from results.store import Store
from sms.webhooks import WebhookSettings, create_app
from tests.fake_aliyun import FakeAliyun
from tests.fake_twilio import FakeTwilio
from tests.sms_helpers import (
    T0,
    aliyun_gateway,
    dispatcher,
    messages,
    plan_texts,
    residents,
    screen_all,
    settings,
    twilio_gateway,
)

TOKEN = "s3cret-callback-token"


class Server:
    def __init__(self, store: Store) -> None:
        app = create_app(StoreEvents(store, BuiltinNlu(), clock=lambda: T0),
                         WebhookSettings(twilio_auth_token="test-token", aliyun_token=TOKEN))
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def sqlite_store(sqlite_url: str) -> Iterator[Store]:
    s = Store(sqlite_url)
    yield s
    s.close()


@pytest.fixture
def web(sqlite_store: Store) -> Iterator[Server]:
    srv = Server(sqlite_store)
    yield srv
    srv.stop()


def _send_all(store: Store, gw) -> None:
    d = dispatcher(store, gw)
    try:
        asyncio.run(d.run_once())
    finally:
        d.close()


def _count(store: Store, model, *where) -> int:
    with store.session() as s:
        return int(s.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def test_twilio_status_callbacks_signed_repeated_and_out_of_order(sqlite_store: Store, web: Server) -> None:
    store = sqlite_store
    fake = FakeTwilio().start()
    try:
        ids = residents(store, 3)
        plan_texts(store, ids)
        _send_all(store, twilio_gateway(fake, callback=f"{web.url}/sms/twilio/status"))
        a, b, c = messages(store)
        assert a.provider_id and b.provider_id and c.provider_id
        assert fake.callback(a.provider_id, "delivered").status_code == 204
        assert fake.callback(a.provider_id, "sent").status_code == 204  # late, out of order: ignored
        assert fake.callback(a.provider_id, "delivered").status_code == 204  # repeated: dropped
        bad = fake.callback(b.provider_id, "delivered", bad_signature=True)
        assert bad.status_code == 403
        unsigned = httpx.post(f"{web.url}/sms/twilio/status", data={"MessageSid": b.provider_id, "MessageStatus": "delivered"})
        assert unsigned.status_code == 403
        assert fake.callback(c.provider_id, "undelivered", 30005).status_code == 204
        a, b, c = messages(store)
        assert a.state == "delivered" and a.delivered_at is not None
        assert b.state in ("accepted", "sent")  # the forged receipts changed nothing
        assert c.state == "undelivered" and c.error_code == "30005" and "停机" in (c.error_message or "")
        assert _count(store, SmsEvent) == 3  # delivered, sent (stale), undelivered; the repeat was dropped
        with store.session() as s:
            (esc,) = s.scalars(select(Escalation).where(Escalation.kind == "sms_undeliverable"))
        assert esc.resident_id == c.resident_id and "30005" in esc.reasons[0]
    finally:
        fake.stop()


def test_a_receipt_before_the_send_result_is_applied_when_the_result_is_stored(sqlite_store: Store) -> None:
    store = sqlite_store
    ids = residents(store, 1)
    plan_texts(store, ids)
    events = StoreEvents(store, BuiltinNlu(), clock=lambda: T0)
    (row,) = sdb.claim_due(store, now=T0, limit=10, daily_cap=5, day_start=T0 - dt.timedelta(hours=10),
                           next_day=T0 + dt.timedelta(days=1))
    from sms.types import StatusUpdate

    stats = events.on_status([StatusUpdate(dedupe="twilio:x1", state="delivered", provider_status="delivered",
                                           provider_id="SMabc")])
    assert stats.pending == 1 and messages(store)[0].state == "sending"
    sdb.record_sent(store, [(row.id, "SMabc", "accepted", "queued")], gateway="twilio", now=T0)
    assert messages(store)[0].state == "delivered"


def test_aliyun_reports_need_the_token_dedupe_and_move_forward_only(sqlite_store: Store, web: Server) -> None:
    store = sqlite_store
    fake = FakeAliyun(auto_deliver=False).start()
    try:
        ids = residents(store, 2)
        plan_texts(store, ids)
        _send_all(store, aliyun_gateway(fake))
        s1, s2 = fake.sent
        url = f"{web.url}/sms/aliyun/report/{TOKEN}"
        assert FakeAliyun.push(f"{web.url}/sms/aliyun/report/wrong", [fake.report(s1)]).status_code == 403
        assert all(m.state == "accepted" for m in messages(store))
        r = FakeAliyun.push(url, [fake.report(s1), fake.report(s2, success=False, err_code="MK:0001")])
        assert r.status_code == 200 and r.json() == {"code": 0, "msg": "成功"}
        FakeAliyun.push(url, [fake.report(s1)])  # repeated
        FakeAliyun.push(url, [fake.report(s2)])  # a success after the failure: the final state stays
        by_out = {m.out_id: m for m in messages(store)}
        m1, m2 = by_out[s1.out_id], by_out[s2.out_id]
        assert m1.state == "delivered"
        assert m2.state == "undelivered" and m2.error_code == "MK:0001" and m2.error_message == "停机"
        assert _count(store, SmsEvent) == 3
        assert FakeAliyun.push(url, [{"x": 1}]).status_code == 200  # unknown items are kept, not crashing
        assert httpx.post(url, content=b"not json").status_code == 400
    finally:
        fake.stop()


def test_replies_opt_out_done_and_other(sqlite_store: Store, web: Server) -> None:
    store = sqlite_store
    fake = FakeAliyun().start()
    try:
        ids = residents(store, 3)
        plan_texts(store, ids)
        _send_all(store, aliyun_gateway(fake))
        plan_texts(store, ids, key="later", at=T0 + dt.timedelta(days=1))  # queued follow-ups
        url = f"{web.url}/sms/aliyun/reply/{TOKEN}"
        p = [m.to_phone[3:] for m in messages(store)[:3]]
        assert FakeAliyun.push(url, [fake.reply(p[0], "退订", sequence_id=1)]).status_code == 200
        FakeAliyun.push(url, [fake.reply(p[0], "退订", sequence_id=1)])  # repeated push
        FakeAliyun.push(url, [fake.reply(p[1], "已做", sequence_id=2), fake.reply(p[2], "你们是哪里", sequence_id=3)])
        assert FakeAliyun.push(f"{web.url}/sms/aliyun/reply/nope", [fake.reply(p[2], "T")]).status_code == 403
        with store.session() as s:
            replies = {r.phone: r for r in s.scalars(select(SmsReply))}
            dnc = set(s.scalars(select(DoNotCall.phone)))
            kinds = sorted(e.kind for e in s.scalars(select(Escalation)))
        assert {r.intent for r in replies.values()} == {"opt_out", "second_test_done", "other"}
        assert len(replies) == 3 and replies["+86" + p[1]].text == "已做"
        assert dnc == {"+86" + p[0]}
        assert kinds == ["opted_out", "sms_reply"]
        later = [m for m in messages(store) if m.dedupe_key.startswith("later")]
        assert [m.state for m in later] == ["cancelled", "queued", "queued"]
    finally:
        fake.stop()


def test_self_reported_done_stops_reminders_and_opt_out_blocks_calls(sqlite_store: Store) -> None:
    from sms.gateways import DryRunGateway
    from sms.types import Reply

    store = sqlite_store
    ids = residents(store, 2)
    screen_all(store, "screening", second_test_done=False)
    cfg = settings()
    assert plan(store, cfg, T0).second_test == 2
    assert plan(store, cfg, T0).second_test == 0  # planned once
    d = dispatcher(store, DryRunGateway())
    assert asyncio.run(d.run_once()).sent == 2
    d.close()
    events = StoreEvents(store, BuiltinNlu(), clock=lambda: T0)
    phone0 = next(m.to_phone for m in messages(store) if m.resident_id == ids[0])
    assert events.on_replies([Reply("aliyun:9", phone0, "做了", T0, "aliyun")])[0].intent == "second_test_done"
    assert {c.resident_id for c in sdb.second_test_candidates(store, from_arrival=False)} == {ids[1]}
    assert events.on_replies([Reply("aliyun:10", phone0, "TD", T0, "aliyun")])[0].intent == "opt_out"
    camp, _ = rdb.create_campaign(store, name="next", script_path="x.yaml", windows={"daily": ["00:00-23:59"]},
                                  pacing={}, retry_policy={}, now=T0)
    rdb.set_state(store, "next", "running", now=T0)
    claims = rdb.claim_due(store, campaign_id=camp.id, slots=[T0, T0], local_dates=[T0.date()] * 2, due_by=T0,
                           worker="w2", history_from=99)
    assert [c.resident_id for c in claims] == [ids[1]]  # the opted-out number is never called again


def test_an_opt_out_is_one_escalation_kind_on_every_channel(sqlite_store: Store) -> None:
    """Voice "stop calling" (the campaign policy's decision, written as the engine writes it) and an SMS
    退订 reply both file `opted_out`; the reason keeps the channel; both numbers are blocked everywhere."""
    from zoneinfo import ZoneInfo

    from campaigns.policy import AttemptFacts, RetryPolicy, decide
    from campaigns.windows import CallingWindows
    from results.exports import escalation_tables
    from sms.types import Reply

    store = sqlite_store
    ids = residents(store, 2)
    camp, _ = rdb.create_campaign(store, name="calls", script_path="x.yaml", windows={"daily": ["00:00-23:59"]},
                                  pacing={}, retry_policy={}, now=T0)
    rdb.set_state(store, "calls", "running", now=T0)
    claims = rdb.claim_due(store, campaign_id=camp.id, slots=[T0], local_dates=[T0.date()], due_by=T0,
                           worker="w", history_from=99)
    assert [c.resident_id for c in claims] == [ids[0]]
    end = T0 + dt.timedelta(minutes=1)
    d = decide(AttemptFacts(outcome="answered", dialog_outcome="opted_out", started_at=T0, ended_at=end,
                            attempts_total=1, attempts_today=1),
               RetryPolicy(), CallingWindows.parse({"daily": ["09:00-20:00"]}))
    rdb.finish_attempts(store, [rdb.Finish(
        claim=claims[0], outcome="answered", ended_at=end, dialog_outcome="opted_out", final_outcome=d.final_outcome,
        escalations=[rdb.EscalationData(e.kind, e.priority, e.reasons, e.due_at) for e in d.escalations],
        do_not_call=d.do_not_call,
    )], worker="w")
    with store.session() as s:
        phone1 = s.scalar(select(Resident.phone).where(Resident.id == ids[1]))
    events = StoreEvents(store, BuiltinNlu(), clock=lambda: T0)
    assert events.on_replies([Reply("aliyun:1", str(phone1), "T", T0, "aliyun")])[0].intent == "opt_out"
    with store.session() as s:
        got = {e.resident_id: (e.kind, e.reasons[0]) for e in s.scalars(select(Escalation))}
        dnc = set(s.scalars(select(DoNotCall.source)))
    assert got[ids[0]][0] == got[ids[1]][0] == "opted_out"
    assert got[ids[0]][1].startswith("【电话】") and got[ids[1]][1].startswith("【短信】")
    assert dnc == {"opt_out", "sms_reply"}
    table = escalation_tables(store, None, ZoneInfo("Asia/Shanghai"), per_community=False)[0]
    rows = list(table.rows)
    kind_col, reason_col = table.headers.index("类型"), table.headers.index("原因")
    assert {r[kind_col] for r in rows} == {"已退订（不再联系）"}
    assert sorted(r[reason_col][:4] for r in rows) == ["【电话】", "【短信】"]
