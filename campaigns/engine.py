"""The campaign engine: the dialer loop of one worker.

Time advances in slices. At the start of each slice the engine
1. writes every call that ended by now (attempt, record, escalations, the contact's next state) in one
   transaction,
2. plans new call starts inside the slice for each running campaign: evenly paced by a token bucket,
   only while a calling window is open, only on free lines (max concurrent calls),
3. claims that many due contacts (row locking, see results/campaigns.py) and starts their attempts.

With a virtual clock the simulated calls are resolved at once (their durations are on the call's own
timeline) and the clock jumps from slice to slice, or straight to the next due contact or window
opening when nothing is in flight. With the wall clock (the `outreach run` service) calls run as
asyncio tasks and APScheduler ticks `step()`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from campaigns.clock import Clock, VirtualClock
from campaigns.pacing import TokenBucket
from campaigns.policy import (
    AttemptFacts,
    Decision,
    RetryPolicy,
    callback_time,
    decide,
    record_escalations,
)
from campaigns.windows import CallingWindows
from dialer.base import CallOutcome, OriginateRequest, Telephony
from dialer.media import MediaSession
from dialogs.conversation import run_text_dialog
from dialogs.types import DialogSession, ScreeningResult
from results import campaigns as db
from results.masking import mask_phone
from results.store import Store

log = logging.getLogger(__name__)

SessionFactory = Callable[[db.CampaignInfo, db.Claim], DialogSession]


class MediaDialogRunner(Protocol):
    """Runs a dialog over an audio media session (the voice runner, for audio backends)."""

    async def __call__(self, session: DialogSession, media: MediaSession) -> tuple[ScreeningResult, float]: ...


def default_worker_name() -> str:
    return socket.gethostname()


@dataclass(slots=True)
class EngineSettings:
    worker: str = field(default_factory=default_worker_name)
    caller_id: str = "12320"
    originate_timeout_s: float = 30.0
    slice_s: float = 30.0  # planning horizon per step (virtual); the tick interval (wall)
    lease_s: float = 1800.0  # a claim older than this is abandoned (its worker died): recovered by anyone
    max_call_s: float = 900.0  # our own deadline for a whole call
    max_claims_per_step: int = 500


@dataclass(slots=True)
class CallReport:
    """How one call went, on the call's own timeline."""

    claim: db.Claim
    outcome: str
    ring_s: float
    talk_s: float = 0.0
    cause: str | None = None
    result: ScreeningResult | None = None

    @property
    def ended_at(self) -> dt.datetime:
        return self.claim.started_at + dt.timedelta(seconds=self.ring_s + self.talk_s)


@dataclass(slots=True)
class InFlight:
    claim: db.Claim
    task: asyncio.Task[CallReport] | None = None
    report: CallReport | None = None


@dataclass(slots=True)
class Runtime:
    """What the engine keeps in memory per running campaign."""

    info: db.CampaignInfo
    windows: CallingWindows
    policy: RetryPolicy
    bucket: TokenBucket
    max_concurrent: int


@dataclass(slots=True)
class EngineStats:
    started: int = 0
    finished: int = 0
    answered: int = 0
    completed: int = 0
    recovered: int = 0
    contacts_done: int = 0  # contacts this engine finished (any final outcome)
    steps: int = 0
    by_outcome: dict[str, int] = field(default_factory=dict)


class CampaignEngine:
    """One worker's dialer loop over every running campaign (or the named ones)."""

    def __init__(
        self,
        store: Store,
        telephony: Telephony,
        clock: Clock,
        sessions: SessionFactory,
        *,
        settings: EngineSettings | None = None,
        campaigns: Sequence[str] = (),
        media_runner: MediaDialogRunner | None = None,
    ) -> None:
        self.store = store
        self.telephony = telephony
        self.clock = clock
        self.sessions = sessions
        self.settings = settings or EngineSettings()
        self.names = tuple(campaigns)
        self.media_runner = media_runner
        self.stats = EngineStats()
        self._runtimes: dict[int, Runtime] = {}
        self._inflight: dict[int, list[InFlight]] = {}
        self._infos: dict[int, db.CampaignInfo] = {}
        self._completed: list[str] = []
        self._check: set[int] = set()  # campaigns that may have run out of work: check for completion
        self._stopping = False  # set by drain(): no new calls from here on

    # ------------------------------------------------------------------ runtime state

    def _runtime(self, info: db.CampaignInfo) -> Runtime:
        rt = self._runtimes.get(info.id)
        if rt is None or rt.info.pacing != info.pacing:
            self._check.add(info.id)
            windows = CallingWindows.parse(info.windows, info.holidays, info.timezone)
            policy = RetryPolicy.from_mapping(info.retry_policy)
            rate = float(info.pacing.get("calls_per_second", 2.0))
            rt = Runtime(info, windows, policy, TokenBucket(rate), int(info.pacing.get("max_concurrent_calls", 30)))
            self._runtimes[info.id] = rt
        rt.info = info
        return rt

    def _refresh(self) -> list[Runtime]:
        running = db.running_campaigns(self.store, self.names)
        for info in running:
            self._infos[info.id] = info
        live = {info.id for info in running}
        for cid in list(self._runtimes):
            if cid not in live:
                del self._runtimes[cid]
        return [self._runtime(info) for info in running]

    def _windows_policy(self, campaign_id: int) -> tuple[CallingWindows, RetryPolicy]:
        rt = self._runtimes.get(campaign_id)
        if rt is not None:
            return rt.windows, rt.policy
        info = self._infos.get(campaign_id) or next(
            (c for c in db.list_campaigns(self.store) if c.id == campaign_id), None
        )
        if info is None:
            raise db.CampaignError(f"campaign id {campaign_id} vanished")
        self._infos[campaign_id] = info
        return (CallingWindows.parse(info.windows, info.holidays, info.timezone),
                RetryPolicy.from_mapping(info.retry_policy))

    @property
    def inflight(self) -> int:
        return sum(len(v) for v in self._inflight.values())

    @property
    def completed_campaigns(self) -> list[str]:
        return list(self._completed)

    # ------------------------------------------------------------------ recovery

    def recover(self, *, include_own: bool = True) -> int:
        """Interrupt what a previous run of this worker (or a dead worker) left in flight.

        `include_own=False`: only other workers' claims older than the lease (a worker that died and
        was not restarted); used periodically while this worker runs, its own claims being live."""
        now = self.clock.now()
        stale = now - dt.timedelta(seconds=self.settings.lease_s)

        def route(rec: db.Recovered) -> db.Finish:
            windows, policy = self._windows_policy(rec.claim.campaign_id)
            facts = AttemptFacts(
                outcome="interrupted", dialog_outcome=None, started_at=rec.attempt_started_at,
                ended_at=max(now, rec.attempt_started_at), attempts_total=rec.claim.attempt_no,
                attempts_today=rec.claim.attempts_today, history=rec.claim.history,
            )
            d = decide(facts, policy, windows)
            return self._finish_from(rec.claim, "interrupted", facts.ended_at, None, None, "worker restarted", d, [])

        n = db.recover_claims(self.store, worker=self.settings.worker, stale_before=stale, now=now, decide=route,
                              include_own=include_own)
        self.stats.recovered += n
        return n

    # ------------------------------------------------------------------ one step

    async def step(self) -> dt.datetime | None:
        """Run one slice starting now. Returns when the engine wants to run next (None: nothing left)."""
        if self._stopping:
            return None
        self.stats.steps += 1
        now = self.clock.now()
        slice_end = now + dt.timedelta(seconds=self.settings.slice_s)
        self._write_finished(now)
        runtimes = self._refresh()
        started_any = False
        for rt in runtimes:
            started_any |= await self._start_calls(rt, now, slice_end)
        for rt in runtimes:
            if rt.info.id not in self._check or self._inflight.get(rt.info.id):
                continue
            self._check.discard(rt.info.id)
            if db.complete_if_done(self.store, rt.info.id, now=now):
                log.info("campaign %s completed", rt.info.name)
                self._completed.append(rt.info.name)
                self._runtimes.pop(rt.info.id, None)
        if started_any or (self.inflight and not self.clock.virtual):
            return slice_end
        # Nothing started: sleep until a line frees, a contact is due, or a window opens.
        candidates: list[dt.datetime] = []
        ends = [f.report.ended_at for fl in self._inflight.values() for f in fl if f.report is not None]
        if self.inflight:
            if len(ends) < self.inflight:
                return slice_end
            candidates.append(min(ends))
        live = [rt for rt in runtimes if rt.info.id in self._runtimes]
        due = db.next_due_at(self.store, [rt.info.id for rt in live]) if live else None
        if due is not None:
            candidates.append(min(rt.windows.next_open(max(due, now)) for rt in live))
        elif live:
            candidates.append(slice_end)
        if not candidates:
            return None
        return max(slice_end, min(candidates))

    def _plan(self, rt: Runtime, now: dt.datetime, slice_end: dt.datetime, free: int) -> list[dt.datetime]:
        slots: list[dt.datetime] = []
        t = rt.bucket.next_available(now)
        gap = dt.timedelta(seconds=1.0 / rt.bucket.rate)
        limit = min(free, self.settings.max_claims_per_step)
        while len(slots) < limit:
            t = rt.windows.next_open(t)
            if t >= slice_end:
                break
            slots.append(t)
            t = t + gap
        return slots

    async def _start_calls(self, rt: Runtime, now: dt.datetime, slice_end: dt.datetime) -> bool:
        flying = self._inflight.setdefault(rt.info.id, [])
        free = rt.max_concurrent - len(flying)
        if free <= 0:
            return False
        slots = self._plan(rt, now, slice_end, free)
        if not slots:
            return False
        claims = db.claim_due(
            self.store, campaign_id=rt.info.id, slots=slots, local_dates=[rt.windows.local_date(t) for t in slots],
            due_by=now, worker=self.settings.worker, history_from=rt.policy.max_attempts_total,
        )
        if len(claims) < len(slots):
            self._check.add(rt.info.id)
        for c in claims:
            if not rt.bucket.try_take(c.started_at):  # consumes exactly the slots used
                log.debug("pacing token at %s already taken", c.started_at)
        self.stats.started += len(claims)
        for c in claims:
            if self.clock.virtual:
                report = await self._call(rt.info, c)
                flying.append(InFlight(c, report=report))
            else:
                flying.append(InFlight(c, task=asyncio.create_task(self._call(rt.info, c), name=f"call-{c.channel_id}")))
        return bool(claims)

    # ------------------------------------------------------------------ one call

    async def _call(self, info: db.CampaignInfo, claim: db.Claim) -> CallReport:
        """Place one call and run its dialog. Never raises: failures become a `failed` attempt."""
        try:
            if not self.clock.virtual:
                await self.clock.sleep_until(claim.started_at)
            request = OriginateRequest(
                channel_id=claim.channel_id, phone=claim.phone, caller_id=self.settings.caller_id,
                timeout_s=self.settings.originate_timeout_s, attempt_no=claim.attempt_no,
                deadline=claim.started_at + dt.timedelta(seconds=self.settings.max_call_s),
            )
            res = await self.telephony.originate(request)
            if res.outcome != CallOutcome.answered:
                return CallReport(claim, res.outcome.value, res.ring_s, cause=res.cause)
            session = self.sessions(info, claim)
            if res.text is not None:
                result = await run_text_dialog(session, res.text)
                talk = res.text.elapsed_s
            elif res.media is not None and self.media_runner is not None:
                result, talk = await self.media_runner(session, res.media)
            else:
                raise RuntimeError(f"backend {self.telephony.name} answered without a usable channel")
            return CallReport(claim, "answered", res.ring_s, talk, res.cause, result)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a task's top level: one broken call must not stop the campaign
            log.exception("call %s to %s failed inside the engine", claim.channel_id, mask_phone(claim.phone))
            return CallReport(claim, "failed", 0.0, cause=f"internal error: {type(exc).__name__}")

    # ------------------------------------------------------------------ writing results

    def _write_finished(self, now: dt.datetime) -> int:
        finishes: list[db.Finish] = []
        for cid, flying in self._inflight.items():
            keep: list[InFlight] = []
            for fl in flying:
                if fl.report is None and fl.task is not None and fl.task.cancelled():
                    continue  # interrupted at shutdown: still `dialing` in the store, see drain()
                if fl.report is None and fl.task is not None and fl.task.done():
                    fl.report = fl.task.result()
                if fl.report is not None and fl.report.ended_at <= now:
                    finishes.append(self._finish(fl.report))
                else:
                    keep.append(fl)
            self._inflight[cid] = keep
        if finishes:
            self._check.update(f.claim.campaign_id for f in finishes)
            db.finish_attempts(self.store, finishes, worker=self.settings.worker)
            self.stats.finished += len(finishes)
        return len(finishes)

    def _finish(self, rep: CallReport) -> db.Finish:
        claim = rep.claim
        windows, policy = self._windows_policy(claim.campaign_id)
        ended = rep.ended_at
        answered = rep.outcome == "answered"
        result = rep.result
        outcome = rep.outcome
        dialog_outcome = result.outcome if (answered and result is not None) else None
        if answered and dialog_outcome == "hung_up":
            outcome = "hung_up_early"
        cb_at = None
        if dialog_outcome == "callback_requested":
            cb_at = callback_time(result.callback_hint if result else None, ended, windows, policy.callback_default_s)
        facts = AttemptFacts(
            outcome=outcome, dialog_outcome=dialog_outcome, started_at=claim.started_at, ended_at=ended,
            attempts_total=claim.attempt_no, attempts_today=claim.attempts_today, callback_at=cb_at,
            history=claim.history, scam_suspected=bool(result is not None and result.scam_suspected),
        )
        d = decide(facts, policy, windows)
        extra: list[db.EscalationData] = []
        if result is not None and answered:
            for e in record_escalations(
                risk=result.risk, reasons=result.reasons, escalate_human=result.escalate_human,
                uncertain=result.uncertain, dialog_outcome=dialog_outcome, callback_at=cb_at,
            ):
                extra.append(db.EscalationData(e.kind, e.priority, e.reasons, e.due_at))
        self.stats.by_outcome[outcome] = self.stats.by_outcome.get(outcome, 0) + 1
        if answered:
            self.stats.answered += 1
        if d.final_outcome == "completed":
            self.stats.completed += 1
        if d.state == "done":
            self.stats.contacts_done += 1
        return self._finish_from(claim, outcome, ended, rep, cb_at, rep.cause, d, extra)

    def _finish_from(
        self,
        claim: db.Claim,
        outcome: str,
        ended: dt.datetime,
        rep: CallReport | None,
        cb_at: dt.datetime | None,
        cause: str | None,
        d: Decision,
        extra: list[db.EscalationData],
    ) -> db.Finish:
        result = rep.result if rep is not None else None
        answered_at = claim.started_at + dt.timedelta(seconds=rep.ring_s) if rep and rep.outcome == "answered" else None
        record = None
        turns: list[Any] = []
        if result is not None:
            turns = list(result.turns)
            record = db.RecordData(
                outcome=result.outcome or "hung_up", risk_level=result.risk, reasons=list(result.reasons),
                answers={k: v.as_dict() for k, v in result.answers.items()}, uncertain=result.uncertain,
                reminder_needed=result.reminder_needed, callback_at=cb_at,
            )
        escalations = [db.EscalationData(e.kind, e.priority, e.reasons, e.due_at) for e in d.escalations] + extra
        return db.Finish(
            claim=claim, outcome=outcome, ended_at=ended, answered_at=answered_at,
            dialog_outcome=result.outcome if result is not None else None, cause=cause,
            duration_s=round((ended - claim.started_at).total_seconds(), 2), turns=turns, record=record,
            state=d.state, next_attempt_at=d.next_attempt_at, final_outcome=d.final_outcome,
            escalations=escalations, do_not_call=d.do_not_call or bool(result and result.opt_out),
            do_not_call_source=d.do_not_call_source,
        )

    # ------------------------------------------------------------------ drivers

    async def run_virtual(
        self,
        *,
        until: dt.datetime | None = None,
        on_step: Callable[[CampaignEngine], None] | None = None,
        max_steps: int | None = None,
    ) -> None:
        """Run in virtual time until no running campaign has work left (or `until`)."""
        if not isinstance(self.clock, VirtualClock):
            raise TypeError("run_virtual needs a VirtualClock")
        self.recover()
        steps = 0
        while True:
            nxt = await self.step()
            steps += 1
            if on_step is not None:
                on_step(self)
            if nxt is None and not self.inflight:
                break
            if max_steps is not None and steps >= max_steps:
                break
            target = nxt or (self.clock.now() + dt.timedelta(seconds=self.settings.slice_s))
            if until is not None and target > until:
                break
            self.clock.advance_to(target)
        self._write_finished(self.clock.now())

    async def drain(self, interrupt: asyncio.Event | None = None) -> int:
        """Shutdown: start no new calls, wait for the calls in flight (wall clock) and write them.

        When `interrupt` is set meanwhile, the calls still in progress are cancelled and recorded as
        `interrupted` (retried per policy, like after a crash). Returns how many were interrupted.
        """
        self._stopping = True
        pending = {fl.task for fl in (f for v in self._inflight.values() for f in v)
                   if fl.task is not None and not fl.task.done()}
        waiter: asyncio.Task[bool] | None = asyncio.ensure_future(interrupt.wait()) if interrupt is not None else None
        try:
            while pending:
                if waiter is None:
                    await asyncio.gather(*pending, return_exceptions=True)
                    break
                done, _ = await asyncio.wait({*pending, waiter}, return_when=asyncio.FIRST_COMPLETED)
                pending -= done
                if waiter in done:
                    for t in pending:
                        t.cancel()
                    await asyncio.gather(*pending, return_exceptions=True)
                    break
        finally:
            if waiter is not None and not waiter.done():
                waiter.cancel()
        cancelled = sum(1 for v in self._inflight.values() for f in v if f.task is not None and f.task.cancelled())
        far = self.clock.now() + dt.timedelta(days=1)
        self._write_finished(far)  # drops the cancelled calls from memory; their rows are still `dialing`
        if cancelled:
            self.recover()  # this worker's attempts still `dialing` become interrupted
        return cancelled
