"""The SMS dispatcher: sends due messages exactly once, at a steady rate, inside the SMS window.

Exactly once, in four rules:
1. A message is switched to `sending` and committed (the outbox does it) *before* the provider is called.
2. A definite answer is stored: the provider id and first status, or a permanent error (final, with its
   code and a Chinese explanation).
3. A transient error that means "not taken" (429/20429, throttling) is retried with exponential backoff
   and jitter (tenacity), a bounded number of times, then the message is queued again for later.
4. A timeout, a 5xx or a dropped connection may mean "taken": before any resend the provider is asked
   (`Gateway.find`, Twilio: messages to that number since the send; Aliyun: QuerySendDetails matched on
   OutId). Found → stored as sent; not found → sent again; the provider cannot be asked → the row stays
   `sending`, and so does a row whose process died: `reconcile` asks again after `reconcile_after_s`.

The outbox (results.sms behind an adapter) does the SQL; the gateway runs in worker threads; the event
loop only schedules, paces (a token bucket: evenly spaced sends) and writes results in batches.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

from tenacity import RetryCallState, Retrying

from common.masking import mask_phone
from common.retry import backoff, retrying
from sms.types import (
    Gateway,
    OutgoingSms,
    PermanentSmsError,
    SendResult,
    SmsError,
    SystemSmsError,
    TransientSmsError,
)

log = logging.getLogger(__name__)


class OutRow(Protocol):
    @property
    def id(self) -> int: ...
    @property
    def out_id(self) -> str: ...
    @property
    def to_phone(self) -> str: ...
    @property
    def body(self) -> str: ...
    @property
    def template(self) -> str: ...
    @property
    def params(self) -> Mapping[str, str]: ...
    @property
    def tries(self) -> int: ...
    @property
    def sending_since(self) -> dt.datetime | None: ...


class Outbox(Protocol):
    """Where messages live (results.sms behind campaigns.reminders.SqlOutbox)."""

    def claim(self, now: dt.datetime, limit: int) -> Sequence[OutRow]:
        """Due queued messages, switched to `sending` and committed."""
        ...

    def stale(self, before: dt.datetime) -> Sequence[OutRow]: ...

    def sent(self, results: Sequence[tuple[int, str, str, str]], now: dt.datetime) -> None: ...

    def failed(self, failures: Sequence[tuple[int, str, str]], now: dt.datetime) -> None: ...

    def requeue(self, items: Sequence[tuple[int, dt.datetime, str, str]], now: dt.datetime) -> None: ...

    def unresolved(self, mid: int, code: str, explanation: str, now: dt.datetime) -> None: ...


class Window(Protocol):
    def is_open(self, when: dt.datetime) -> bool: ...

    def next_open(self, when: dt.datetime) -> dt.datetime: ...


class Pacer(Protocol):
    """A token bucket (campaigns.pacing.TokenBucket)."""

    def try_take(self, now: dt.datetime) -> bool: ...

    def next_available(self, now: dt.datetime) -> dt.datetime: ...


@dataclass(frozen=True, slots=True)
class DispatchSettings:
    concurrency: int = 8  # provider calls in flight at once
    batch: int = 200  # messages claimed per transaction
    attempts: int = 4  # provider calls per claim of one message (first try + bounded retries)
    backoff_s: float = 0.5  # first retry delay; doubled each retry, with jitter
    max_backoff_s: float = 8.0
    max_claims: int = 5  # claims of one message before a transient failure becomes final
    retry_later_s: float = 600.0  # a message whose retries ran out is queued again this much later
    reconcile_after_s: float = 120.0  # a row `sending` for longer is asked about (must exceed one claim's time)


@dataclass(slots=True)
class DispatchStats:
    claimed: int = 0
    sent: int = 0
    failed: int = 0
    requeued: int = 0
    unresolved: int = 0
    reconciled_found: int = 0
    reconciled_resend: int = 0
    window_closed: bool = False
    system_error: str = ""
    errors: dict[str, int] = field(default_factory=dict)

    def add(self, other: DispatchStats) -> None:
        for name in ("claimed", "sent", "failed", "requeued", "unresolved", "reconciled_found", "reconciled_resend"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for k, v in other.errors.items():
            self.errors[k] = self.errors.get(k, 0) + v
        self.window_closed = self.window_closed or other.window_closed
        self.system_error = self.system_error or other.system_error


@dataclass(frozen=True, slots=True)
class _Outcome:
    kind: str  # sent, failed, requeue, unresolved, system
    result: SendResult | None = None
    code: str = ""
    explanation: str = ""
    retry_after_s: float | None = None


class DispatchPaused(RuntimeError):
    """The provider account or configuration is unusable; sending stops until it is fixed."""


def _wait(base: Callable[[RetryCallState], float]) -> Callable[[RetryCallState], float]:
    """Exponential backoff with jitter, but never shorter than a Retry-After the provider gave."""

    def wait(state: RetryCallState) -> float:
        delay = base(state)
        exc = state.outcome.exception() if state.outcome is not None else None
        after = getattr(exc, "retry_after_s", None)
        return max(delay, float(after)) if after else delay

    return wait


class Dispatcher:
    def __init__(
        self,
        outbox: Outbox,
        gateway: Gateway,
        *,
        window: Window,
        settings: DispatchSettings = DispatchSettings(),
        templates: Mapping[str, str] | None = None,
        sign_name: str = "",
        pacer: Pacer | None = None,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        wall: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        """`templates` maps our template names to the provider's template codes (Aliyun); `clock` is
        the time messages are due by (the campaign clock); `wall` paces sends (real seconds)."""
        self.outbox = outbox
        self.gateway = gateway
        self.window = window
        self.settings = settings
        self.templates = dict(templates or {})
        self.sign_name = sign_name
        self.pacer = pacer
        self.clock = clock
        self.wall = wall
        self._pool = ThreadPoolExecutor(max_workers=settings.concurrency, thread_name_prefix=f"sms-{gateway.name}")
        # the outbox's SQL, one statement at a time, off the event loop (SQLite has one writer anyway)
        self._db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sms-db")
        # The project's one retry policy (common.retry), never waiting less than a provider's Retry-After.
        self._wait = _wait(backoff(settings.backoff_s, settings.max_backoff_s))

    def _retrying(self) -> Retrying:
        s = self.settings
        return retrying(lambda exc: isinstance(exc, TransientSmsError), attempts=s.attempts, first_s=s.backoff_s,
                        max_s=s.max_backoff_s, wait=self._wait)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._db.shutdown(wait=True)

    def outgoing(self, row: OutRow) -> OutgoingSms:
        return OutgoingSms(key=row.out_id, to=row.to_phone, body=row.body,
                           template_code=self.templates.get(row.template, ""), params=dict(row.params),
                           sign_name=self.sign_name)

    # ------------------------------------------------------------------ one message (worker thread)

    def _deliver(self, row: OutRow, now: dt.datetime) -> _Outcome:
        msg = self.outgoing(row)
        since = row.sending_since or now
        maybe_sent = False
        try:
            for attempt in self._retrying():
                with attempt:
                    if maybe_sent:
                        found = self.gateway.find(msg, since)
                        if found is not None:
                            log.info("SMS %d to %s: found at the provider after an unclear answer", row.id,
                                     mask_phone(row.to_phone))
                            return _Outcome("sent", found)
                    try:
                        return _Outcome("sent", self.gateway.send(msg))
                    except TransientSmsError as exc:
                        maybe_sent = maybe_sent or exc.maybe_sent
                        log.info("SMS %d to %s: transient %s (maybe sent: %s); retrying", row.id,
                                 mask_phone(row.to_phone), exc.code, exc.maybe_sent)
                        raise
        except PermanentSmsError as exc:
            return _Outcome("failed", code=exc.code, explanation=exc.explanation)
        except SystemSmsError as exc:
            return _Outcome("system", code=exc.code, explanation=exc.explanation)
        except TransientSmsError as exc:
            if maybe_sent:  # the provider may have it and could not tell us: leave it `sending`
                return _Outcome("unresolved", code=exc.code, explanation=f"{exc.explanation}（待与服务商核对）")
            if row.tries >= self.settings.max_claims:
                return _Outcome("failed", code=exc.code, explanation=f"多次重试仍失败：{exc.explanation}")
            return _Outcome("requeue", code=exc.code, explanation=exc.explanation, retry_after_s=exc.retry_after_s)
        raise AssertionError("unreachable: tenacity either returns or raises")  # pragma: no cover

    def _reconcile_one(self, row: OutRow, now: dt.datetime) -> _Outcome:
        msg = self.outgoing(row)
        try:
            found = self.gateway.find(msg, row.sending_since or now - dt.timedelta(days=1))
        except SmsError as exc:
            return _Outcome("unresolved", code=exc.code, explanation=f"{exc.explanation}（待与服务商核对）")
        if found is None:
            return _Outcome("requeue", code="reconciled", explanation="服务商无此短信记录，重新发送")
        return _Outcome("sent", found)

    # ------------------------------------------------------------------ batches (event loop)

    def _store(self, pairs: Sequence[tuple[OutRow, _Outcome]], now: dt.datetime, stats: DispatchStats,
               *, reconciling: bool = False) -> None:
        sent: list[tuple[int, str, str, str]] = []
        failed: list[tuple[int, str, str]] = []
        again: list[tuple[int, dt.datetime, str, str]] = []
        for row, out in pairs:
            if out.code:
                stats.errors[out.code] = stats.errors.get(out.code, 0) + 1
            if out.kind == "sent":
                assert out.result is not None
                sent.append((row.id, out.result.provider_id, out.result.state, out.result.provider_status))
                if reconciling:
                    stats.reconciled_found += 1
                else:
                    stats.sent += 1
            elif out.kind == "failed":
                failed.append((row.id, out.code, out.explanation))
                stats.failed += 1
            elif out.kind == "requeue":
                delay = 0.0 if reconciling else max(self.settings.retry_later_s, out.retry_after_s or 0.0)
                again.append((row.id, now + dt.timedelta(seconds=delay), out.code, out.explanation))
                if reconciling:
                    stats.reconciled_resend += 1
                else:
                    stats.requeued += 1
            elif out.kind == "system":
                again.append((row.id, now, out.code, out.explanation))
                stats.requeued += 1
                stats.system_error = stats.system_error or f"{out.code}: {out.explanation}"
            else:
                self.outbox.unresolved(row.id, out.code, out.explanation, now)
                stats.unresolved += 1
        self.outbox.sent(sent, now)
        self.outbox.failed(failed, now)
        self.outbox.requeue(again, now)

    async def reconcile(self, *, before: dt.datetime | None = None) -> DispatchStats:
        """Ask the provider about every message left `sending` since before `before` (default: older
        than reconcile_after_s) and store what it says."""
        now = self.clock()
        cutoff = before or now - dt.timedelta(seconds=self.settings.reconcile_after_s)
        stats = DispatchStats()
        loop = asyncio.get_running_loop()
        rows = await loop.run_in_executor(self._db, self.outbox.stale, cutoff)
        if not rows:
            return stats
        log.warning("reconciling %d SMS left in 'sending' with %s", len(rows), self.gateway.name)
        outs = await asyncio.gather(*(loop.run_in_executor(self._pool, self._reconcile_one, r, now) for r in rows))
        pairs = list(zip(rows, outs, strict=True))
        await loop.run_in_executor(self._db, lambda: self._store(pairs, now, stats, reconciling=True))
        return stats

    async def _paced(self) -> None:
        if self.pacer is None:
            return
        while True:
            now = self.wall()
            if self.pacer.try_take(now):
                return
            await asyncio.sleep(max(0.0, (self.pacer.next_available(now) - now).total_seconds()))

    async def run_once(self, *, limit: int | None = None) -> DispatchStats:
        """Reconcile stale rows, then send what is due now until nothing is due, the window closes or
        `limit` messages were claimed. Raises DispatchPaused on an account/configuration error.

        A pipeline: the next batch is claimed (committed `sending`) as soon as the last row of the
        previous one has been handed to a worker, and results are stored in batches while later sends
        are in flight. Database work runs on one thread of its own, never on the event loop; at most
        `batch` + `concurrency` rows are `sending` without their provider call having started."""
        stats = await self.reconcile()
        loop = asyncio.get_running_loop()
        sem = asyncio.Semaphore(self.settings.concurrency)  # a paced send starts at once: no queue behind pacing
        done: list[tuple[OutRow, _Outcome]] = []
        inflight: set[asyncio.Future[None]] = set()
        storing: asyncio.Future[None] | None = None
        stop = False

        async def one(row: OutRow, when: dt.datetime) -> None:
            nonlocal stop
            try:
                out = await loop.run_in_executor(self._pool, self._deliver, row, when)
                done.append((row, out))
                stop = stop or out.kind == "system"
            finally:
                sem.release()

        async def flush(*, wait: bool) -> None:
            nonlocal storing
            if storing is not None and (wait or done):
                await storing  # one store at a time: results in order, stats updated by one thread
                storing = None
            if done:
                pairs = done[:]
                done.clear()
                storing = loop.run_in_executor(self._db, self._store, pairs, self.clock(), stats)
            if wait and storing is not None:
                await storing
                storing = None

        try:
            while not stop and (limit is None or stats.claimed < limit):
                now = self.clock()
                if not self.window.is_open(now):
                    stats.window_closed = True
                    break
                want = self.settings.batch if limit is None else min(self.settings.batch, limit - stats.claimed)
                rows = await loop.run_in_executor(self._db, self.outbox.claim, now, want)
                if not rows:
                    break
                stats.claimed += len(rows)
                left: Sequence[OutRow] = ()
                for i, row in enumerate(rows):
                    if stop or not self.window.is_open(self.clock()):
                        left = rows[i:]
                        break
                    await sem.acquire()
                    if stop:
                        sem.release()
                        left = rows[i:]
                        break
                    await self._paced()
                    task = asyncio.ensure_future(one(row, now))
                    inflight.add(task)
                    task.add_done_callback(inflight.discard)
                    if len(done) >= self.settings.batch:
                        await flush(wait=False)
                if left:  # claimed but not sent: back to the queue (the next window, or after the pause)
                    closed = not self.window.is_open(self.clock())
                    when = self.window.next_open(self.clock()) if closed else now
                    await loop.run_in_executor(self._db, self.outbox.requeue,
                                               [(r.id, when, "", "") for r in left], now)
                    stats.window_closed = stats.window_closed or closed
                    break
        finally:
            if inflight:
                await asyncio.gather(*list(inflight))
            await flush(wait=True)
        if stats.system_error:
            raise DispatchPaused(f"SMS sending paused ({self.gateway.name}): {stats.system_error}")
        if stats.claimed or stats.reconciled_found or stats.reconciled_resend:
            log.info("SMS dispatch: %s", stats)
        return stats
