"""Shared pieces of the SMS tests: a store with residents, planned messages, gateways on the fakes."""

from __future__ import annotations

import datetime as dt
from typing import Any

from campaigns.reminders import ReminderSettings, TemplateSpec, make_dispatcher
from results import campaigns as rdb
from results import sms as sdb
from results.models import SmsMessage
from results.store import Store
from sms.dispatcher import Dispatcher, DispatchSettings
from sms.gateways import AliyunGateway, TwilioGateway
from sms.types import Gateway
from tests.fake_aliyun import FakeAliyun
from tests.fake_twilio import FakeTwilio

# A Monday, 10:00 in Shanghai (inside the SMS window).
T0 = dt.datetime(2026, 11, 23, 2, 0, tzinfo=dt.UTC)
FAST = DispatchSettings(concurrency=4, batch=50, attempts=4, backoff_s=0.01, max_backoff_s=0.05,
                        retry_later_s=0.0, reconcile_after_s=60.0)


def settings(**kw: Any) -> ReminderSettings:
    templates = {
        "second_test_reminder": TemplateSpec("{name}您好，请于{due_date}前往{sites}完成第二次核酸检测。已做请回复已做。",
                                             code="SMS_100001"),
        "ring_back": TemplateSpec("{name}您好，{hotline}多次来电未能联系到您，请回电{hotline}。", code="SMS_100002",
                                  notification=False),
    }
    import dataclasses

    dispatch_keys = {f.name for f in dataclasses.fields(DispatchSettings)}
    dispatch = dataclasses.replace(FAST, **{k: kw.pop(k) for k in list(kw) if k in dispatch_keys})
    base: dict[str, Any] = {"templates": templates, "dispatch": dispatch, "daily_cap": 5}
    base.update(kw)
    return ReminderSettings(**base)


def residents(store: Store, n: int, *, prefix: str = "+86139", community: str = "东湖社区") -> list[int]:
    rows = [{"name": f"居民{i}", "phone": f"{prefix}{i:08d}", "community": community} for i in range(n)]
    rdb.add_residents(store, rows, now=T0)
    with store.session() as s:
        from sqlalchemy import select

        from results.models import Resident
        return list(s.scalars(select(Resident.id).where(Resident.phone.like(f"{prefix}%")).order_by(Resident.id)))


def plan_texts(store: Store, ids: list[int], *, kind: str = "second_test_reminder", at: dt.datetime = T0,
               key: str = "t", phones: dict[int, str] | None = None) -> None:
    from sqlalchemy import select

    from results.models import Resident

    with store.session() as s:
        phone_of = dict(s.execute(select(Resident.id, Resident.phone).where(Resident.id.in_(ids))).all())
    msgs = [
        sdb.NewSms(resident_id=i, campaign_id=None, kind=kind, dedupe_key=f"{key}:{i}",
                   to_phone=(phones or phone_of)[i], body=f"【健康热线】居民{i}您好，请完成第二次核酸检测。{key}",
                   template=kind, params={"name": f"居民{i}", "due_date": "11月25日", "sites": "社区医院"},
                   segments=1, scheduled_for=at)
        for i in ids
    ]
    sdb.enqueue(store, msgs, now=at)


def messages(store: Store) -> list[SmsMessage]:
    from sqlalchemy import select

    with store.session() as s:
        return list(s.scalars(select(SmsMessage).order_by(SmsMessage.id)))


def twilio_gateway(fake: FakeTwilio, *, timeout_s: float = 0.5, callback: str = "") -> TwilioGateway:
    return TwilioGateway(fake.account_sid, fake.auth_token, from_number="+15005550006", base_url=fake.base_url,
                         timeout_s=timeout_s, status_callback=callback)


def aliyun_gateway(fake: FakeAliyun, *, timeout_s: float = 1.0) -> AliyunGateway:
    return AliyunGateway(fake.access_key_id, fake.access_key_secret, sign_name="健康热线", endpoint=fake.endpoint,
                         protocol="http", timeout_s=timeout_s)


def dispatcher(store: Store, gateway: Gateway, *, now: dt.datetime = T0, **kw: Any) -> Dispatcher:
    clock = kw.pop("clock", None) or (lambda: now)
    return make_dispatcher(store, gateway, settings(**kw), clock=clock)


def screen_all(store: Store, name: str, *, second_test_done: bool) -> None:
    """A campaign whose screenings all say the second test is (not) done."""
    camp, _ = rdb.create_campaign(store, name=name, script_path="x.yaml", windows={"daily": ["00:00-23:59"]},
                                  pacing={}, retry_policy={}, now=T0)
    rdb.set_state(store, name, "running", now=T0)
    claims = rdb.claim_due(store, campaign_id=camp.id, slots=[T0] * 10, local_dates=[T0.date()] * 10, due_by=T0,
                           worker="w", history_from=99)
    record = rdb.RecordData(outcome="completed", risk_level="none", reasons=[], uncertain=[],
                            answers={"second_test_done": {"value": second_test_done, "raw": "没做"}},
                            reminder_needed=not second_test_done, callback_at=None)
    rdb.finish_attempts(store, [rdb.Finish(claim=c, outcome="answered", ended_at=T0, dialog_outcome="completed",
                                           record=record, final_outcome="completed") for c in claims], worker="w")
