"""SMS reminder rules and their wiring: which residents get which text when, the outbox the dispatcher
sends from, what replies mean, and the periodic sweep the `outreach run` service calls.

Rules:
- second-test reminder: a resident whose latest screening says the second nucleic-acid test is not
  done (the script's `reminder: true` rule) — or, with `from_arrival`, anyone with an arrival date and
  no record of it done — gets one reminder on the due day (arrival + `second_test_after_days`, never
  before the screening), at the opening of the SMS window (default 08:00-20:00 local);
- ring-back: after the last failed attempt (the contact finished `unreachable`), one text asks the
  resident to ring the hotline back.
Do-not-call numbers (voice "stop calling", SMS 退订, `outreach dnc`) get nothing; a reply understood as
"done" (已做, 做了) stops further reminders.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from campaigns.pacing import TokenBucket
from campaigns.windows import CallingWindows
from dialogs.nlu.types import Expectation, Nlu
from results import sms as db
from results.store import Store
from sms import text as smstext
from sms.dispatcher import Dispatcher, DispatchSettings, DispatchStats, OutRow
from sms.types import Gateway, Reply, StatusUpdate

log = logging.getLogger(__name__)

SECOND_TEST = "second_test_reminder"
RING_BACK = "ring_back"
# Tokens the SMS pacer may save up: 2 lets a send that woke late be made up by the next one (with 1 the
# rate falls ~2 % short of the limit, a few ms of timer lag per message), and allows at most one message
# beyond rate × seconds over any window (a provider's per-second limit counts requests, not spacing).
RATE_BURST = 2
OPT_OUT_WORDS = frozenset({"退订", "T", "TD", "R", "N", "退", "STOP", "UNSUBSCRIBE", "取消订阅", "拒收"})
# "stop texting me" in words (the dialogs NLU knows "stop calling"): 别再发了, 不要给我发短信, 拒收短信
_SMS_STOP = re.compile(r"(别|不要|勿|不用)再?(给我)?发|拒收|退订")


@dataclass(frozen=True, slots=True)
class TemplateSpec:
    body: str  # without the signature: {name}, {due_date}, {sites}, {hotline}
    code: str = ""  # the provider's approved template code (Aliyun TemplateCode)
    notification: bool = True  # False: the opt-out line 回T退订 is added


DEFAULT_TEMPLATES = {
    SECOND_TEST: TemplateSpec("{name}您好，请于{due_date}前往{sites}完成第二次核酸检测。已做请回复“已做”。"),
    RING_BACK: TemplateSpec("{name}您好，{hotline}健康热线多次来电未能联系到您，请回电{hotline}。", notification=False),
}


@dataclass(frozen=True, slots=True)
class ReminderSettings:
    timezone: str = "Asia/Shanghai"
    window: str = "08:00-20:00"
    sign_name: str = "健康热线"
    hotline: str = "12320"
    test_sites: str = "就近核酸采样点"
    second_test_after_days: int = 3
    from_arrival: bool = False
    ring_back: bool = True
    daily_cap: int = 3
    rate_per_s: float = 0.0  # 0: no limit
    templates: Mapping[str, TemplateSpec] = field(default_factory=lambda: dict(DEFAULT_TEMPLATES))
    dispatch: DispatchSettings = DispatchSettings()

    def windows(self) -> CallingWindows:
        return CallingWindows.parse({"daily": [self.window]}, timezone=self.timezone)


# ----------------------------------------------------------------------------- rendering


@dataclass(frozen=True, slots=True)
class Rendered:
    body: str
    params: dict[str, str]
    length: smstext.Length


def render(settings: ReminderSettings, kind: str, *, name: str, due_date: dt.date | None = None) -> Rendered:
    """The text of `kind` for a resident, with its variables and its length (signature included)."""
    spec = settings.templates.get(kind)
    if spec is None:
        raise smstext.TemplateError(f"no SMS template named {kind!r} (sms.templates: {', '.join(settings.templates)})")
    params = {
        "name": name or "居民",
        "due_date": f"{due_date.month}月{due_date.day}日" if due_date else "今日",
        "sites": settings.test_sites,
        "hotline": settings.hotline,
    }
    used = {k: v for k, v in params.items() if k in smstext.variables(spec.body)}
    body = smstext.render(spec.body, params, sign_name=settings.sign_name, notification=spec.notification)
    return Rendered(body, used, smstext.count(body))


# ----------------------------------------------------------------------------- planning


@dataclass(slots=True)
class PlanStats:
    second_test: int = 0
    ring_back: int = 0
    over_one_part: int = 0


def plan(store: Store, settings: ReminderSettings, now: dt.datetime) -> PlanStats:
    """Queue the reminders and ring-back texts that are needed and not planned yet (idempotent)."""
    windows = settings.windows()
    stats = PlanStats()
    new: list[db.NewSms] = []
    for c in db.second_test_candidates(store, from_arrival=settings.from_arrival):
        screened = windows.local_date(c.screened_at) if c.screened_at else None
        due = c.arrival_date + dt.timedelta(days=settings.second_test_after_days) if c.arrival_date else screened
        if due is None:
            continue
        if screened and due < screened:
            due = screened
        r = render(settings, SECOND_TEST, name=c.name, due_date=due)
        start = dt.datetime(due.year, due.month, due.day, tzinfo=windows.tz).astimezone(dt.UTC)
        new.append(db.NewSms(resident_id=c.resident_id, campaign_id=c.campaign_id, kind=SECOND_TEST,
                             dedupe_key=f"{SECOND_TEST}:{c.resident_id}:{due.isoformat()}", to_phone=c.phone,
                             body=r.body, template=SECOND_TEST, params=r.params, segments=r.length.parts,
                             scheduled_for=windows.next_open(start)))
    if settings.ring_back:
        for c in db.ring_back_candidates(store):
            r = render(settings, RING_BACK, name=c.name)
            new.append(db.NewSms(resident_id=c.resident_id, campaign_id=c.campaign_id, kind=RING_BACK,
                                 dedupe_key=f"{RING_BACK}:{c.campaign_id}:{c.resident_id}", to_phone=c.phone,
                                 body=r.body, template=RING_BACK, params=r.params, segments=r.length.parts,
                                 scheduled_for=windows.next_open(c.screened_at or now)))
    known = db.existing_keys(store, [m.dedupe_key for m in new])
    fresh = [m for m in new if m.dedupe_key not in known]
    written = db.enqueue(store, fresh, now=now)
    for m in fresh:
        if m.kind == SECOND_TEST:
            stats.second_test += 1
        else:
            stats.ring_back += 1
        if m.segments > 1:
            stats.over_one_part += 1
    if written:
        log.info("planned %d SMS (%d second-test reminders, %d ring-back)", written, stats.second_test, stats.ring_back)
    return stats


# ----------------------------------------------------------------------------- the outbox


class SqlOutbox:
    """sms.dispatcher.Outbox on the results store, with the per-number daily cap of the local day."""

    def __init__(self, store: Store, *, windows: CallingWindows, daily_cap: int, gateway: str) -> None:
        self.store = store
        self.windows = windows
        self.daily_cap = daily_cap
        self.gateway = gateway

    def claim(self, now: dt.datetime, limit: int) -> Sequence[OutRow]:
        local = self.windows.local(now)
        day_start = local.replace(hour=0, minute=0, second=0, microsecond=0).astimezone(dt.UTC)
        return db.claim_due(self.store, now=now, limit=limit, daily_cap=self.daily_cap, day_start=day_start,
                            next_day=self.windows.next_day_open(now))

    def stale(self, before: dt.datetime) -> Sequence[OutRow]:
        return db.stale_sending(self.store, before=before)

    def sent(self, results: Sequence[tuple[int, str, str, str]], now: dt.datetime) -> None:
        db.record_sent(self.store, results, gateway=self.gateway, now=now)

    def failed(self, failures: Sequence[tuple[int, str, str]], now: dt.datetime) -> None:
        db.record_failed(self.store, failures, gateway=self.gateway, now=now)

    def requeue(self, items: Sequence[tuple[int, dt.datetime, str, str]], now: dt.datetime) -> None:
        if items:
            db.requeue(self.store, items, now=now)

    def unresolved(self, mid: int, code: str, explanation: str, now: dt.datetime) -> None:
        db.note_pending(self.store, mid, code, explanation, now=now)


def make_dispatcher(store: Store, gateway: Gateway, settings: ReminderSettings, *,
                    clock: Callable[[], dt.datetime] | None = None) -> Dispatcher:
    windows = settings.windows()
    pacer = TokenBucket(settings.rate_per_s, burst=RATE_BURST) if settings.rate_per_s > 0 else None
    dispatch = settings.dispatch
    if settings.rate_per_s > 0:
        # A claimed row waits `sending` for its turn at the pacer: claim no more than a quarter of
        # reconcile_after_s can send, so no reconcile (another worker's) takes a row still waiting its turn.
        fits = max(1, int(settings.rate_per_s * dispatch.reconcile_after_s / 4))
        if fits < dispatch.batch:
            dispatch = dataclasses.replace(dispatch, batch=fits)
    kwargs: dict[str, Any] = {"clock": clock} if clock is not None else {}
    return Dispatcher(
        SqlOutbox(store, windows=windows, daily_cap=settings.daily_cap, gateway=gateway.name), gateway,
        window=windows, settings=dispatch, sign_name=settings.sign_name, pacer=pacer,
        templates={name: spec.code for name, spec in settings.templates.items() if spec.code}, **kwargs,
    )


# ----------------------------------------------------------------------------- replies and receipts


def _plain(text: str) -> str:
    t = unicodedata.normalize("NFKC", text).strip().upper()
    return re.sub(r"[\s\.,!?;:'\"，。！？；：、“”‘’()（）【】]+", "", t)


def second_test_reply(nlu: Nlu, text: str) -> str | None:
    """What a reply to a second-test reminder says about the test: "done", "not_done" or None.
    (A separate helper so the dialogs' NLU stays the one place that understands short replies.)"""
    r = nlu.parse(text, Expectation("yes_no"))
    if r.intent == "affirm" and not r.uncertain:
        return "done"
    if r.intent == "deny":
        return "not_done"
    return None


def classify_reply(nlu: Nlu, text: str, last_kind: str | None) -> str:
    """opt_out (退订/T/TD/R, or the NLU's "stop"), second_test_done / second_test_not_done (a reply to a
    second-test reminder), else other."""
    plain = _plain(text)
    if plain in OPT_OUT_WORDS or _SMS_STOP.search(plain):
        return "opt_out"
    r = nlu.parse(text, Expectation("yes_no"))
    if r.intent == "opt_out":
        return "opt_out"
    if last_kind == SECOND_TEST:
        said = second_test_reply(nlu, text)
        if said == "done":
            return "second_test_done"
        if said == "not_done":
            return "second_test_not_done"
    return "other"


class StoreEvents:
    """What the webhooks (sms.webhooks) do with receipts and replies: results.sms, the NLU."""

    def __init__(self, store: Store, nlu: Nlu, *, explain: Callable[[str], str] | None = None,
                 clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)) -> None:
        from sms.codes import explain as explain_code

        self.store = store
        self.nlu = nlu
        self.explain = explain or explain_code
        self.clock = clock

    def on_status(self, updates: Sequence[StatusUpdate]) -> db.ReceiptStats:
        receipts = [
            db.Receipt(dedupe=u.dedupe, provider=u.dedupe.split(":", 1)[0], state=u.state,
                       provider_status=u.provider_status, provider_id=u.provider_id, out_id=u.out_id,
                       error_code=u.error_code, error_message=u.error_message)
            for u in updates
        ]
        return db.apply_receipts(self.store, receipts, now=self.clock(), explain=self.explain)

    def on_replies(self, replies: Sequence[Reply]) -> list[db.ReplyOutcome]:
        out = []
        for r in replies:
            out.append(db.record_reply(
                self.store, db.IncomingReply(r.dedupe, r.provider, r.phone, r.text, r.received_at),
                classify=lambda text, kind: classify_reply(self.nlu, text, kind), now=self.clock(),
            ))
        return out


# ----------------------------------------------------------------------------- the service's sweep


async def sweep(store: Store, settings: ReminderSettings, dispatcher: Dispatcher, now: dt.datetime) -> DispatchStats:
    """Plan what is needed, then send what is due (inside the window). Off the event loop for SQL."""
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, plan, store, settings, now)
    return await dispatcher.run_once()


def run_virtual(store: Store, settings: ReminderSettings, start: dt.datetime, *, max_days: int = 60) -> dt.datetime:
    """The demo's SMS: plan, then send everything on the dry-run gateway in virtual time, jumping from one
    due time (inside the window) to the next. Returns the virtual time at the end."""
    from results.sms import next_scheduled
    from sms.gateways import DryRunGateway

    windows = settings.windows()
    now = [start]
    plan(store, settings, start)
    unpaced = ReminderSettings(**{**{f: getattr(settings, f) for f in settings.__dataclass_fields__}, "rate_per_s": 0.0})
    d = make_dispatcher(store, DryRunGateway(), unpaced, clock=lambda: now[0])
    try:
        for _ in range(max_days * 4):
            asyncio.run(d.run_once())
            nxt = next_scheduled(store)
            if nxt is None or nxt > start + dt.timedelta(days=max_days):
                break
            now[0] = windows.next_open(max(nxt, now[0] + dt.timedelta(seconds=1)))
    finally:
        d.close()
    return now[0]
