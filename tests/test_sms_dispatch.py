"""The dispatcher with the real twilio client and the real Aliyun SDK against local servers written
from each provider's documented API: exactly once under injected faults, permanent errors, the SMS
window across midnight, the per-number daily cap, pacing."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from results.models import Escalation
from results.store import Store
from sms.gateways import AliyunGateway, DryRunGateway, TwilioGateway
from tests.fake_aliyun import FakeAliyun
from tests.fake_twilio import FakeTwilio
from tests.sms_helpers import T0, aliyun_gateway, dispatcher, messages, plan_texts, residents, twilio_gateway


@pytest.fixture
def fake_twilio() -> Iterator[FakeTwilio]:
    f = FakeTwilio(delay_s=1.0).start()
    yield f
    f.stop()


@pytest.fixture
def fake_aliyun() -> Iterator[FakeAliyun]:
    f = FakeAliyun(delay_s=1.5).start()
    yield f
    f.stop()


@pytest.fixture
def sqlite_store(sqlite_url: str) -> Iterator[Store]:
    s = Store(sqlite_url)
    yield s
    s.close()


def run(d, **kw):
    try:
        return asyncio.run(d.run_once(**kw))
    finally:
        d.close()


def test_twilio_exactly_once_under_faults(store: Store, fake_twilio: FakeTwilio) -> None:
    ids = residents(store, 12)
    plan_texts(store, ids)
    # the first message meets 429, 429, 500, 500-after-creating: its fate is unclear after its attempts
    fake_twilio.fail_next("429", "429", "500", "500_created", "timeout", "drop", "429")
    stats = run(dispatcher(store, twilio_gateway(fake_twilio), concurrency=1))
    rows = messages(store)
    assert rows[0].state == "sending" and stats.unresolved == 1  # never resent blindly
    later = run(dispatcher(store, twilio_gateway(fake_twilio), now=T0 + dt.timedelta(minutes=2)))
    assert later.reconciled_found == 1 and later.claimed == 0
    stats.add(later)
    rows = messages(store)
    assert all(m.state in ("accepted", "sent") for m in rows), [m.state for m in rows]
    assert fake_twilio.duplicates() == 0
    assert sorted(len(fake_twilio.bodies_to(m.to_phone)) for m in rows) == [1] * 12
    assert all(m.provider_id and m.provider_id.startswith("SM") for m in rows)
    assert stats.sent + stats.reconciled_found == 12 and stats.failed == 0
    # creates: 4 for the first (its 4th went through), 1 each for the timeout and the drop (found by
    # listing, not resent), 2 for the 429, 1 for each of the other 8
    assert fake_twilio.requests["create"] == 16
    assert fake_twilio.requests["list"] >= 3  # the unclear answers were reconciled before any resend


def test_aliyun_exactly_once_under_faults(store: Store, fake_aliyun: FakeAliyun) -> None:
    ids = residents(store, 12)
    plan_texts(store, ids)
    fake_aliyun.fail_next("throttle", "system_error", "500", "500_created", "timeout", "drop", "throttle")
    stats = run(dispatcher(store, aliyun_gateway(fake_aliyun), concurrency=1))
    stats.add(run(dispatcher(store, aliyun_gateway(fake_aliyun), now=T0 + dt.timedelta(minutes=2))))
    rows = messages(store)
    assert all(m.state in ("accepted", "delivered") for m in rows), [(m.state, m.error_code) for m in rows]
    assert fake_aliyun.duplicates() == 0
    assert set(fake_aliyun.out_ids()) == {m.out_id for m in rows}
    sent = {s.out_id: s for s in fake_aliyun.sent}
    assert sent[rows[0].out_id or ""].content.startswith("【健康热线】居民")  # the SDK sent sign, template and params
    assert stats.sent + stats.reconciled_found == 12 and stats.failed == 0
    assert fake_aliyun.requests["QuerySendDetails"] >= 3


@pytest.mark.parametrize("gateway", ["twilio", "aliyun"])
def test_permanent_errors_are_final_with_a_chinese_reason_and_an_escalation(
    sqlite_store: Store, fake_twilio: FakeTwilio, fake_aliyun: FakeAliyun, gateway: str
) -> None:
    store = sqlite_store
    ids = residents(store, 3)
    plan_texts(store, ids)
    rows = messages(store)
    gw: TwilioGateway | AliyunGateway
    if gateway == "twilio":
        fake_twilio.permanent[rows[0].to_phone] = 21610
        fake_twilio.permanent[rows[1].to_phone] = 21211
        gw = twilio_gateway(fake_twilio)
        want = {"21610", "21211"}
    else:
        fake_aliyun.permanent[rows[0].to_phone[3:]] = "isv.BUSINESS_LIMIT_CONTROL"
        fake_aliyun.permanent[rows[1].to_phone[3:]] = "isv.MOBILE_NUMBER_ILLEGAL"
        gw = aliyun_gateway(fake_aliyun)
        want = {"isv.BUSINESS_LIMIT_CONTROL", "isv.MOBILE_NUMBER_ILLEGAL"}
    stats = run(dispatcher(store, gw))
    rows = messages(store)
    assert stats.failed == 2 and stats.sent == 1
    failed = [m for m in rows if m.state == "failed"]
    assert {m.error_code for m in failed} == want
    assert all(m.error_message and any("\u4e00" <= ch <= "\u9fff" for ch in m.error_message) for m in failed)
    with store.session() as s:
        esc = list(s.scalars(select(Escalation).where(Escalation.kind == "sms_undeliverable")))
    assert len(esc) == 2 and all(e.community == "东湖社区" and "未送达" in e.reasons[0] for e in esc)
    # a second run sends nothing more: final means final
    again = run(dispatcher(store, gw))
    assert again.claimed == 0


def test_transient_errors_are_bounded_then_requeued(sqlite_store: Store, fake_twilio: FakeTwilio) -> None:
    store = sqlite_store
    ids = residents(store, 1)
    plan_texts(store, ids)
    fake_twilio.fail_next(*["429"] * 4)
    stats = run(dispatcher(store, twilio_gateway(fake_twilio), retry_later_s=600.0))
    (m,) = messages(store)
    assert stats.requeued == 1 and m.state == "queued" and m.error_code == "20429"
    assert m.scheduled_for == T0 + dt.timedelta(minutes=10)
    assert fake_twilio.requests["create"] == 4  # attempts per claim, no more
    assert run(dispatcher(store, twilio_gateway(fake_twilio))).claimed == 0  # not before its time
    stats = run(dispatcher(store, twilio_gateway(fake_twilio), now=T0 + dt.timedelta(minutes=10)))
    assert stats.sent == 1 and messages(store)[0].state in ("accepted", "sent")


def _local(y: int, mo: int, d: int, h: int, mi: int = 0) -> dt.datetime:
    from zoneinfo import ZoneInfo

    return dt.datetime(y, mo, d, h, mi, tzinfo=ZoneInfo("Asia/Shanghai")).astimezone(dt.UTC)


def test_sms_window_across_midnight_and_day_boundaries(sqlite_store: Store) -> None:
    store = sqlite_store
    ids = residents(store, 2)
    gw = DryRunGateway()
    late = _local(2026, 11, 23, 22, 30)  # due at night
    plan_texts(store, ids[:1], at=late, key="night")
    plan_texts(store, ids[1:], at=_local(2026, 11, 23, 19, 59), key="evening")
    for when, expected in [
        (_local(2026, 11, 23, 19, 59), {"evening"}),  # inside the window: sent
        (_local(2026, 11, 23, 20, 0), set()),  # 20:00 closes the window
        (_local(2026, 11, 23, 23, 59), set()),
        (_local(2026, 11, 24, 0, 1), set()),  # after midnight: still night
        (_local(2026, 11, 24, 7, 59), set()),
        (_local(2026, 11, 24, 8, 0), {"night"}),  # the morning window opens
    ]:
        before = len(gw.sent)
        stats = run(dispatcher(store, gw, now=when))
        new = {m.body.rsplit("。", 1)[-1] for m in gw.sent[before:]}
        assert new == expected, when
        assert stats.window_closed == (not expected)
    assert [m.state for m in messages(store)] == ["delivered", "delivered"]


def test_per_number_daily_cap_moves_the_rest_to_the_next_morning(sqlite_store: Store) -> None:
    store = sqlite_store
    (rid,) = residents(store, 1)
    for k in range(5):
        plan_texts(store, [rid], key=f"k{k}")
    gw = DryRunGateway()
    stats = run(dispatcher(store, gw, daily_cap=3))
    assert stats.sent == 3 and len(gw.sent) == 3
    waiting = [m for m in messages(store) if m.state == "queued"]
    assert len(waiting) == 2 and all(m.scheduled_for == _local(2026, 11, 24, 8, 0) for m in waiting)
    assert run(dispatcher(store, gw, daily_cap=3, now=T0 + dt.timedelta(hours=1))).sent == 0
    assert run(dispatcher(store, gw, daily_cap=3, now=_local(2026, 11, 24, 8, 0))).sent == 2


def test_pacing_never_beats_the_rate(sqlite_store: Store, fake_twilio: FakeTwilio) -> None:
    """Over any stretch of sends, as the provider received them: at most RATE_BURST + rate × seconds
    (a lower bound on spacing only, with 20 % slack for the provider's receive-time jitter)."""
    from campaigns.reminders import RATE_BURST

    store = sqlite_store
    ids = residents(store, 12)
    plan_texts(store, ids)
    rate = 40.0
    assert run(dispatcher(store, twilio_gateway(fake_twilio), rate_per_s=rate, concurrency=1)).sent == 12
    # the first send also builds the client (it reaches the provider late): spacing is judged after it
    stamps = sorted(m.created.timestamp() for m in fake_twilio.messages)[1:]
    assert len(stamps) == 11
    for i in range(len(stamps)):
        for j in range(i + 1, len(stamps)):
            assert (j - i + 1) - RATE_BURST <= rate * (stamps[j] - stamps[i]) / 0.8 + 1e-9, (i, j)


def test_a_paced_dispatcher_claims_no_more_than_it_sends_before_a_reconcile(sqlite_store: Store) -> None:
    """At 1 msg/s with reconcile_after_s 40, a claim of 200 would leave rows `sending` (waiting their turn)
    for minutes: another worker's reconcile would take them while this one still sends them."""
    store = sqlite_store
    ids = residents(store, 30)
    plan_texts(store, ids)
    d = dispatcher(store, DryRunGateway(), rate_per_s=1.0, reconcile_after_s=40.0, batch=200)
    try:
        assert d.settings.batch == 10
        assert len(d.outbox.claim(T0, d.settings.batch)) == 10
    finally:
        d.close()
    fast = dispatcher(store, DryRunGateway(), rate_per_s=0.0, batch=200)
    assert fast.settings.batch == 200
    fast.close()
