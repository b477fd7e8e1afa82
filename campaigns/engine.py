"""The campaign engine: the dialer loop of one worker, fit for live calls.

Every call is one supervised pipeline: claim → prepare (the dialog session from the campaign's stored
script, the contact's prompts rendered) → admission (a start instant from the trunk's and the
campaign's shared buckets, a free line) → originate → converse → finish, bounded by `max_call_s` on the
campaign clock (at the deadline the backend hangs the call up; what was answered is kept). A finished
call leaves memory only after the store committed it; until then it is in the local journal
(campaigns/journal.py) and written again on the next tick or the next start.

Nothing blocks the event loop: store work runs through `StoreIO` (one thread, bounded retries), journal
writes through the journal's thread, the NLU is awaited (dialogs/conversation.py).

Errors are classified (dialer/base.py): a resident outcome is an attempt; a transient system fault
(backend down, trunk congestion) undoes the attempt (`NOT_DIALED`: never charged) and trips the trunk's
circuit breaker (campaigns/breaker.py); a permanent fault (a script that does not load, a bad trunk)
is found in `prepare` before any call: the campaign is paused with the reason. Our own crash is a
system fault too: at the next start an attempt the journal never saw dialled is undone, one cut after
the answer keeps its answers, and interrupted attempts do not count toward the caps.

Time advances in slices. With a virtual clock the simulated calls are resolved at once and the clock
jumps from slice to slice (or to the next due contact, window opening or breaker retry); with the wall
clock (the `outreach run` service) calls run as tasks and the service ticks `step()`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import secrets
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from campaigns.breaker import Breaker
from campaigns.clock import Clock, VirtualClock
from campaigns.journal import Journal, JournalState, journal_path, read_journal, retire
from campaigns.policy import (
    AttemptFacts,
    Decision,
    RetryPolicy,
    callback_time,
    decide,
    record_escalations,
)
from campaigns.storeio import StoreIO
from campaigns.windows import CallingWindows
from common.masking import mask_phone
from common.process import pid_alive
from dialer.base import (
    CallOutcome,
    OriginateRequest,
    OriginateResult,
    Telephony,
    TelephonyConfigError,
    TelephonyError,
    TelephonyUnavailable,
)
from dialer.media import MediaSession
from dialogs.conversation import run_text_dialog
from dialogs.types import DialogSession, ScreeningResult
from results import campaigns as db
from results.store import Store, transient_db_error

log = logging.getLogger(__name__)


class CampaignPrepareError(ValueError):
    """A campaign cannot be called (its script does not load): a permanent fault, found before a call."""


class SessionFactory(Protocol):
    """Builds dialog sessions for a campaign's claims (campaigns/service.py: from the stored script)."""

    def prepare(self, info: db.CampaignInfo) -> None:
        """Load what the campaign's calls need; raises CampaignPrepareError (permanent) if it cannot."""
        ...

    def __call__(self, info: db.CampaignInfo, claim: db.Claim) -> DialogSession: ...


class MediaDialogRunner(Protocol):
    """Runs a dialog over an audio media session (the voice runner, for audio backends)."""

    async def __call__(self, session: DialogSession, media: MediaSession) -> tuple[ScreeningResult, float]: ...


class PromptPreparer(Protocol):
    """Renders a contact's templated prompts before the call (voice backends)."""

    async def __call__(self, info: db.CampaignInfo, claim: db.Claim) -> None: ...


def default_worker_name() -> str:
    """host:pid:random: unique per process, so a second process on the same host never takes the first
    one's live calls for a crashed run's leftovers."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


@dataclass(frozen=True, slots=True)
class TrunkSpec:
    """A trunk from config `telephony.trunks`: its limits hold across every campaign and worker."""

    name: str = "default"
    channel: str = ""
    max_channels: int = 30
    calls_per_second: float = 2.0


@dataclass(slots=True)
class EngineSettings:
    worker: str = field(default_factory=default_worker_name)
    caller_id: str = "12320"
    originate_timeout_s: float = 30.0
    slice_s: float = 30.0  # planning horizon per step (virtual); the tick interval (wall)
    lease_s: float = 1800.0  # claims of an unregistered worker older than this are recovered
    max_call_s: float = 900.0  # our own deadline for a whole call (campaign clock)
    # The most calls this worker carries at once over all campaigns (0: no cap). Several workers on one
    # host (one per core, each its own event loop) share the lines only if each is capped: otherwise the
    # first to tick refills every line that frees up.
    max_calls: int = 0
    max_claims_per_step: int = 500
    heartbeat_s: float = 5.0  # wall seconds between heartbeats
    worker_stale_s: float = 30.0  # a worker silent for this long (wall) is dead; its calls are recovered
    journal_dir: Path | None = None  # default: next to a SQLite store, else ./var/journal
    trunks: tuple[TrunkSpec, ...] = (TrunkSpec(),)
    breaker_first_s: float = 5.0
    breaker_max_s: float = 300.0
    progress_s: float = 1.0  # wall seconds between journal records of live calls' answers
    prepare_lead_s: float = 0.0  # calls start this long after their claim, for the prepare step (prompts)


@dataclass(slots=True)
class CallReport:
    """How one call went, on the call's own timeline. `outcome` NOT_DIALED: it never reached anyone."""

    claim: db.Claim
    outcome: str
    ring_s: float
    talk_s: float = 0.0
    cause: str | None = None
    result: ScreeningResult | None = None
    retry_at: dt.datetime | None = None  # NOT_DIALED: when to try again

    @property
    def ended_at(self) -> dt.datetime:
        return self.claim.started_at + dt.timedelta(seconds=self.ring_s + self.talk_s)


@dataclass(slots=True)
class InFlight:
    claim: db.Claim
    task: asyncio.Task[CallReport] | None = None
    report: CallReport | None = None
    session: DialogSession | None = None
    answered: bool = False
    journaled_turns: int = 0


@dataclass(slots=True)
class Runtime:
    """What the engine keeps in memory per running campaign (rebuilt when its settings change)."""

    info: db.CampaignInfo
    windows: CallingWindows
    policy: RetryPolicy
    max_concurrent: int
    cps: float
    key: tuple[Any, ...]


@dataclass(slots=True)
class EngineStats:
    started: int = 0
    finished: int = 0
    answered: int = 0
    completed: int = 0
    recovered: int = 0
    not_dialed: int = 0  # attempts undone: a system fault before the call reached the network
    contacts_done: int = 0  # contacts this engine finished (any final outcome)
    steps: int = 0
    write_failures: int = 0  # store writes that failed after their retries (kept, retried)
    leftovers_hung_up: int = 0  # calls of an earlier run (or a dead worker) found still up and hung up
    by_outcome: dict[str, int] = field(default_factory=dict)


def _settings_key(info: db.CampaignInfo) -> tuple[Any, ...]:
    return (repr(info.windows), repr(info.holidays), info.timezone, repr(info.pacing), repr(info.retry_policy))


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
        prepare_prompts: PromptPreparer | None = None,
    ) -> None:
        self.store = store
        self.telephony = telephony
        self.clock = clock
        self.sessions = sessions
        self.settings = settings or EngineSettings()
        self.names = tuple(campaigns)
        self.media_runner = media_runner
        self.prepare_prompts = prepare_prompts
        self.stats = EngineStats()
        self.io = StoreIO(inline=clock.virtual)
        self._runtimes: dict[int, Runtime] = {}
        self._inflight: dict[int, list[InFlight]] = {}
        self._infos: dict[int, db.CampaignInfo] = {}
        self._completed: list[str] = []
        self._check: set[int] = set()  # campaigns that may have run out of work: check for completion
        self._stopping = False  # set by drain(): no new calls from here on
        self._unwritten: list[db.Finish] = []  # finished, journaled, not yet committed
        self._breakers: dict[str, Breaker] = {}
        self._journal: Journal | None = None
        self._started = False
        self._last_beat = 0.0
        self._host = socket.gethostname()
        self._failed_campaigns: dict[int, str] = {}
        self._preparing: set[asyncio.Task[None]] = set()  # prompt renders still running (off the call's path)
        self._unreconciled: set[str] = set()  # channel ids of a previous run the backend could not list yet
        self.db_healthy = True

    # ------------------------------------------------------------------ lifecycle

    def journal_dir(self) -> Path:
        if self.settings.journal_dir is not None:
            return self.settings.journal_dir
        url = self.store.url
        if url.startswith("sqlite:///") and ":memory:" not in url:
            return Path(url[len("sqlite:///"):]).expanduser().resolve().parent / "journal"
        return Path("var") / "journal"

    async def start(self) -> None:
        """Register this worker, store the trunks' limits, write back what a crash left in the journals
        of this worker and of dead workers on this host, and recover their claims. Idempotent."""
        if self._started:
            return
        wall = dt.datetime.now(dt.UTC)
        s = self.settings
        await self.io.run(db.register_worker, self.store, s.worker, host=self._host, pid=os.getpid(), now=wall,
                          stale_s=s.worker_stale_s, is_alive=pid_alive)
        await self.io.run(db.set_trunks, self.store,
                          [{"name": t.name, "channel": t.channel, "max_channels": t.max_channels,
                            "calls_per_second": t.calls_per_second} for t in s.trunks], now=wall)
        self._started = True
        await self._recover(include_own=True, startup=True)
        self._journal = Journal(journal_path(self.journal_dir(), s.worker), inline=self.clock.virtual)
        self._last_beat = asyncio.get_running_loop().time()

    async def stop(self) -> None:
        """Write what is left, mark the worker stopped, close the journal and the store thread."""
        if self._unwritten:
            await self._flush_unwritten()
        if self._started:
            try:
                await self.io.run(db.stop_worker, self.store, self.settings.worker, now=dt.datetime.now(dt.UTC))
            except Exception as exc:  # the store is down at shutdown: the heartbeat will go stale instead
                log.error("cannot mark worker %s stopped: %s", self.settings.worker, exc)
        for task in list(self._preparing):
            task.cancel()
        await asyncio.gather(*self._preparing, return_exceptions=True)
        if self._journal is not None:
            self._journal.close()
            if not self._unwritten:
                retire(self._journal.path)
            self._journal = None
        self.io.close()

    def breaker(self, trunk: str) -> Breaker:
        b = self._breakers.get(trunk)
        if b is None:
            b = self._breakers[trunk] = Breaker(trunk, first_backoff_s=self.settings.breaker_first_s,
                                                max_backoff_s=self.settings.breaker_max_s)
        return b

    # ------------------------------------------------------------------ runtime state

    def _runtime(self, info: db.CampaignInfo) -> Runtime:
        rt = self._runtimes.get(info.id)
        key = _settings_key(info)
        if rt is None or rt.key != key:
            self._check.add(info.id)
            windows = CallingWindows.parse(info.windows, info.holidays, info.timezone)
            policy = RetryPolicy.from_mapping(info.retry_policy)
            rate = float(info.pacing.get("calls_per_second", 2.0))
            lines = int(info.pacing.get("max_concurrent_calls", 30))
            if rt is not None:
                log.info("campaign %s: settings changed; applied", info.name)
            rt = Runtime(info, windows, policy, lines, rate, key)
            self._runtimes[info.id] = rt
        rt.info = info
        return rt

    async def _refresh(self) -> list[Runtime]:
        running = await self.io.run(db.running_campaigns, self.store, self.names)
        out: list[Runtime] = []
        for info in running:
            self._infos[info.id] = info
            try:
                out.append(self._runtime(info))
            except ValueError as exc:  # windows or retry settings unusable: permanent
                await self._pause(info, f"settings unusable: {exc}")
        live = {rt.info.id for rt in out}
        for cid in list(self._runtimes):
            if cid not in live:
                del self._runtimes[cid]
        return out

    async def _pause(self, info: db.CampaignInfo, reason: str) -> None:
        self._failed_campaigns[info.id] = reason
        await self.io.run(db.pause_campaign, self.store, info.id, reason=reason, now=self._stamp())

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
    def lines_in_use(self) -> int:
        return sum(1 for v in self._inflight.values() for f in v if f.report is None)

    @property
    def completed_campaigns(self) -> list[str]:
        return list(self._completed)

    def _stamp(self) -> dt.datetime:
        """A time for the store: the campaign clock, never ahead of the wall clock on a real store."""
        return self.clock.now()

    # ------------------------------------------------------------------ recovery

    def recover(self, *, include_own: bool = True) -> int:
        """Recovery without the journals (tests and virtual time: the store thread is inline)."""
        return self._recover_now(include_own, JournalState(), ())

    async def _recover(self, *, include_own: bool, startup: bool = False) -> int:
        """Recover this worker's claims (`include_own`) and dead workers' ones, using the journals of
        this worker and of dead workers on this host: uncommitted results are written first."""
        wall = dt.datetime.now(dt.UTC)
        s = self.settings
        dead: list[str] = []
        if self._started:
            dead = await self.io.run(db.dead_workers, self.store, now=wall, stale_s=s.worker_stale_s,
                                     host=self._host, is_alive=pid_alive, me=s.worker)
        if self._started and (include_own or dead):
            await self._hang_up_leftovers(([s.worker] if include_own else []) + dead)
        journal = JournalState()
        own = journal_path(self.journal_dir(), s.worker)
        read: list[Path] = []
        for p in ([own] if include_own else []) + [journal_path(self.journal_dir(), w) for w in dead]:
            if p.exists():
                st = read_journal(p)
                read.append(p)
                journal.dialled |= st.dialled
                journal.answered.update(st.answered)
                journal.progress.update(st.progress)
                journal.results.update(st.results)
        kept = [f for f in journal.results.values() if f.claim.channel_id not in
                {u.claim.channel_id for u in self._unwritten}]
        if kept:  # finished calls a crash kept from the store: written as they were
            written = 0
            for who in [s.worker, *dead]:
                written += await self.io.run(db.finish_attempts, self.store, kept, worker=who)
            log.warning("wrote %d finished calls kept in the journals %s", written, ", ".join(p.name for p in read))
        n = await self.io.run(self._recover_now, include_own, journal, tuple(dead))
        for p in read:
            if p != own or startup:
                retire(p)
        return n

    async def _hang_up_leftovers(self, workers: Sequence[str]) -> None:
        """Before their attempts are recovered: ask the backend which calls of `workers` (this worker's
        earlier run, dead workers) are still up (`reconcile`, e.g. AMI CoreShowChannels) and hang those
        up, so no resident stays on a line nobody serves. If the backend cannot tell now, ask again at
        the next lease sweep (the attempts are recovered meanwhile: never charged, never redialled)."""
        mine = {fl.claim.channel_id for v in self._inflight.values() for fl in v}
        owned = set(await self.io.run(db.dialing_channels, self.store, workers=workers)) - mine
        await self._reconcile(owned | self._unreconciled)

    async def _reconcile(self, owned: set[str]) -> None:
        if not owned:
            return
        try:
            live = await self.telephony.reconcile(owned)
        except TelephonyError as exc:
            if not owned <= self._unreconciled:
                log.warning("cannot ask %s which of %d calls of an earlier run are still up (%s); asking again "
                            "later", self.telephony.name, len(owned), exc)
            self._unreconciled |= owned
            return
        self._unreconciled -= owned
        for ch in live:
            await self._hangup(ch)
        if live:
            self.stats.leftovers_hung_up += len(live)
            log.warning("%d calls of an earlier run were still up on %s: hung up (recorded as interrupted)",
                        len(live), self.telephony.name)

    def _recover_now(self, include_own: bool, journal: JournalState, dead: Sequence[str]) -> int:
        now = self.clock.now()
        stale = now - dt.timedelta(seconds=self.settings.lease_s)
        use_journal = bool(journal.dialled or journal.answered or journal.progress)

        def route(rec: db.Recovered) -> db.Finish:
            claim = rec.claim
            windows, policy = self._windows_policy(claim.campaign_id)
            ch = claim.channel_id
            ended = max(now, rec.attempt_started_at)
            knows = use_journal and (rec.claimed_by == self.settings.worker or rec.claimed_by in dead)
            if knows and ch not in journal.dialled:
                # claimed, never dialled (our crash came first): undone, not an attempt of the resident
                retry = windows.next_open(max(now, claim.started_at))
                return db.Finish(claim=claim, outcome=db.NOT_DIALED, ended_at=ended, state="pending",
                                 next_attempt_at=retry, cause="never dialled (worker stopped)")
            facts = AttemptFacts(
                outcome="interrupted", dialog_outcome=None, started_at=rec.attempt_started_at, ended_at=ended,
                attempts_total=max(claim.attempt_no - 1, 0), attempts_today=max(claim.attempts_today - 1, 0),
                history=claim.history,
            )
            d = decide(facts, policy, windows)
            rep: CallReport | None = None
            if knows and ch in journal.answered:
                ring = journal.answered[ch]
                partial = journal.progress.get(ch)
                rep = CallReport(claim, "answered", ring, max((ended - claim.started_at).total_seconds() - ring, 0.0))
                if partial is not None:
                    rep.result = _result_from_progress(partial)
            fin = self._finish_from(claim, "interrupted", ended, rep, None, "worker restarted", d, [])
            if rep is not None and rep.result is not None:
                fin.dialog_outcome = "hung_up"
            return fin

        n = db.recover_claims(self.store, worker=self.settings.worker, stale_before=stale, now=now, decide=route,
                              include_own=include_own, dead=dead)
        self.stats.recovered += n
        return n

    async def sweep(self) -> int:
        """The periodic lease sweep: claims of dead workers (and expired unregistered leases); calls of an
        earlier run the backend could not list at the start are asked about again."""
        if self._unreconciled and self.telephony.health().ok:
            await self._reconcile(set(self._unreconciled))
        return await self._recover(include_own=False)

    # ------------------------------------------------------------------ heartbeat

    def status_board(self) -> dict[str, Any]:
        """Per campaign: lines in use, calls, answered, the trunk's breaker (for the console and web)."""
        board: dict[str, Any] = {}
        for cid, rt in self._runtimes.items():
            b = self.breaker(rt.info.trunk)
            board[rt.info.name] = {
                "lines_in_use": sum(1 for f in self._inflight.get(cid, []) if f.report is None),
                "trunk": rt.info.trunk, "breaker": b.state, "breaker_reason": b.reason,
            }
        return board

    async def heartbeat(self) -> None:
        if not self._started:
            return
        try:
            await self.io.run(db.heartbeat, self.store, self.settings.worker, now=dt.datetime.now(dt.UTC),
                              clock_now=self.clock.now(), lines_in_use=self.lines_in_use,
                              status=self.status_board())
        except Exception as exc:
            log.error("heartbeat of worker %s failed: %s", self.settings.worker, exc)

    async def journal_progress(self) -> None:
        """Journal the answers given so far on live calls (a crash keeps them)."""
        if self._journal is None:
            return
        for flying in self._inflight.values():
            for fl in flying:
                if fl.session is None or not fl.answered or fl.report is not None:
                    continue
                res = fl.session.result
                if len(res.turns) != fl.journaled_turns:
                    fl.journaled_turns = len(res.turns)
                    await self._journal.progress(fl.claim.channel_id, _progress_of(res))

    # ------------------------------------------------------------------ one step

    async def step(self) -> dt.datetime | None:
        """Run one slice starting now. Returns when the engine wants to run next (None: nothing left)."""
        if not self._started:
            await self.start()
        if self._stopping:
            return None
        self.stats.steps += 1
        now = self.clock.now()
        slice_end = now + dt.timedelta(seconds=self.settings.slice_s)
        await self._write_finished(now)
        if self.clock.virtual:
            loop_t = asyncio.get_running_loop().time()
            if loop_t - self._last_beat >= self.settings.heartbeat_s:
                self._last_beat = loop_t
                await self.heartbeat()
        try:
            runtimes = await self._refresh()
        except Exception as exc:
            if not transient_db_error(exc):
                raise
            self._db_fault(exc)
            return slice_end
        started_any = False
        blocked: list[dt.datetime] = []
        for rt in runtimes:
            try:
                started, wait = await self._start_calls(rt, now, slice_end)
            except Exception as exc:
                if not transient_db_error(exc):
                    raise
                self._db_fault(exc)
                return slice_end
            started_any |= started
            if wait is not None:
                blocked.append(wait)
        self.db_healthy = True
        for rt in runtimes:
            if rt.info.id not in self._check or self._inflight.get(rt.info.id):
                continue
            if any(f.claim.campaign_id == rt.info.id for f in self._unwritten):
                continue
            self._check.discard(rt.info.id)
            if await self.io.run(db.complete_if_done, self.store, rt.info.id, now=now):
                log.info("campaign %s completed", rt.info.name)
                self._completed.append(rt.info.name)
                self._runtimes.pop(rt.info.id, None)
        if started_any or (self.inflight and not self.clock.virtual) or self._unwritten:
            return slice_end
        # Nothing started: sleep until a line frees, a contact is due, a window opens, a breaker retries.
        candidates: list[dt.datetime] = list(blocked)
        ends = [f.report.ended_at for fl in self._inflight.values() for f in fl if f.report is not None]
        if self.inflight:
            if len(ends) < self.inflight:
                return slice_end
            candidates.append(min(ends))
        live = [rt for rt in runtimes if rt.info.id in self._runtimes]
        due = await self.io.run(db.next_due_at, self.store, [rt.info.id for rt in live]) if live else None
        if due is not None:
            candidates.append(min(rt.windows.next_open(max(due, now)) for rt in live))
        elif live:
            candidates.append(slice_end)
        if not candidates:
            return None
        return max(slice_end, min(candidates))

    def _db_fault(self, exc: BaseException) -> None:
        if self.db_healthy:
            log.error("store unavailable (%s); dialing paused, finished calls kept in the journal", exc)
        self.db_healthy = False

    async def _start_calls(self, rt: Runtime, now: dt.datetime, slice_end: dt.datetime) -> tuple[bool, dt.datetime | None]:
        """Admit and start calls of one campaign. Returns (started any, when a breaker lets calls again)."""
        info = rt.info
        flying = self._inflight.setdefault(info.id, [])
        free = rt.max_concurrent - sum(1 for f in flying if f.report is None or f.report.ended_at > now)
        if self.settings.max_calls:
            mine = sum(1 for v in self._inflight.values() for f in v if f.report is None or f.report.ended_at > now)
            free = min(free, self.settings.max_calls - mine)
        if free <= 0:
            return False, None
        try:
            await self.io.run(self.sessions.prepare, info)  # loads and checks the script: off the loop
        except CampaignPrepareError as exc:
            await self._pause(info, str(exc))
            return False, None
        b = self.breaker(info.trunk)
        if not b.allows(now):
            await self._store_breaker(b)
            return False, None if b.permanent else b.retry_at(now)
        if b.state == "half_open":
            health = self.telephony.health()
            if not health.ok:
                until = b.trip(now, f"still unhealthy: {health.detail}")
                await self._store_breaker(b)
                return False, until
            free = 1
            b.probing()
        await self._store_breaker(b)
        lead = dt.timedelta(seconds=self.settings.prepare_lead_s if self.prepare_prompts is not None else 0.0)
        adm = db.Admission(
            campaign_id=info.id, trunk=info.trunk, want=min(free, self.settings.max_claims_per_step), now=now,
            until=slice_end + lead, camp_max_lines=rt.max_concurrent, camp_cps=rt.cps,
            max_per_day=rt.policy.max_attempts_per_day, max_total=rt.policy.max_attempts_total,
            day_start=rt.windows.day_start(now), next_day_open=rt.windows.next_day_open(now),
            next_open=rt.windows.next_open, local_date=rt.windows.local_date,
            history_from=rt.policy.max_attempts_total, first_slot=now + lead if lead else None,
        )
        claims = await self.io.run(db.admit_and_claim, self.store, adm, worker=self.settings.worker)
        if len(claims) < free:
            self._check.add(info.id)
        self.stats.started += len(claims)
        for c in claims:
            session = self._session(info, c)
            fl = InFlight(c, session=session)
            flying.append(fl)
            if self.clock.virtual:
                fl.report = await self._call(info, c, fl)
                await self._journal_report(fl.report)
            else:
                fl.task = asyncio.create_task(self._call(info, c, fl), name=f"call-{c.channel_id}")
        return bool(claims), None

    def _session(self, info: db.CampaignInfo, claim: db.Claim) -> DialogSession | None:
        try:
            return self.sessions(info, claim)
        except CampaignPrepareError as exc:
            log.error("campaign %s: %s", info.name, exc)
            return None

    async def _store_breaker(self, b: Breaker) -> None:
        while b.pending:
            t = b.pending.pop(0)
            try:
                await self.io.run(db.set_breaker, self.store, b.name, state=t.state, reason=t.reason, until=t.until,
                                  now=self._stamp(), tripped=t.tripped)
            except Exception as exc:
                log.error("cannot store the breaker state of trunk %s: %s", b.name, exc)
                b.pending.insert(0, t)
                return

    # ------------------------------------------------------------------ one call

    async def _call(self, info: db.CampaignInfo, claim: db.Claim, fl: InFlight) -> CallReport:
        """The pipeline of one call. Never raises: faults become a report (NOT_DIALED or failed)."""
        b = self.breaker(info.trunk)
        session = fl.session
        try:
            if session is None:
                raise CampaignPrepareError(f"campaign {info.name}: the script cannot be loaded")
            if self.prepare_prompts is not None:
                await self._prepare(info, claim)
            if not self.clock.virtual:
                await self.clock.sleep_until(claim.started_at)
            request = OriginateRequest(
                channel_id=claim.channel_id, phone=claim.phone, caller_id=self.settings.caller_id,
                timeout_s=self.settings.originate_timeout_s, attempt_no=claim.attempt_no,
                deadline=claim.started_at + dt.timedelta(seconds=self.settings.max_call_s), trunk=info.trunk,
            )
            if b.state == "open":  # tripped while this call waited for its start instant
                raise TelephonyUnavailable(f"trunk {info.trunk} breaker open: {b.reason}")
            if self._journal is not None:
                await self._journal.dial(claim.channel_id)
            if self.clock.virtual:
                return await self._place(request, claim, fl, session, b)
            return await self._bounded(request, claim, fl, session, b)
        except asyncio.CancelledError:
            raise
        except TelephonyUnavailable as exc:
            until = b.trip(self.clock.now(), str(exc))
            self.stats.not_dialed += 1
            return CallReport(claim, db.NOT_DIALED, 0.0, cause=str(exc)[:64], retry_at=until)
        except (TelephonyConfigError, CampaignPrepareError) as exc:
            if isinstance(exc, TelephonyConfigError):
                b.fail_permanently(self.clock.now(), str(exc))
            else:
                self._failed_campaigns[info.id] = str(exc)
            self.stats.not_dialed += 1
            return CallReport(claim, db.NOT_DIALED, 0.0, cause=str(exc)[:64],
                              retry_at=self.clock.now() + dt.timedelta(hours=1))
        except Exception as exc:  # a task's top level: one broken call must not stop the campaign
            log.exception("call %s to %s failed inside the engine", claim.channel_id, mask_phone(claim.phone))
            return CallReport(claim, "failed", 0.0, cause=f"internal error: {type(exc).__name__}",
                              result=session.result if fl.answered and session is not None else None)

    async def _prepare(self, info: db.CampaignInfo, claim: db.Claim) -> None:
        """Render the contact's prompts (e.g. {name}) before the call: awaited at most until the call's
        start instant, so a slow render never delays a call (the pacing holds). One not done by then goes
        on during the ringing; a prompt still missing when it is due is spoken by the player's fallback."""
        assert self.prepare_prompts is not None
        task = asyncio.ensure_future(self.prepare_prompts(info, claim))
        self._preparing.add(task)
        task.add_done_callback(self._prepared)
        if self.clock.virtual:
            await task
            return
        slot = asyncio.ensure_future(self.clock.sleep_until(claim.started_at))
        try:
            await asyncio.wait({task, slot}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            slot.cancel()
        if task.done():
            task.result()  # CampaignPrepareError: permanent
        else:
            log.info("campaign %s: prompts of attempt %s still rendering at its start instant; dialling on time",
                     info.name, claim.channel_id)

    def _prepared(self, task: asyncio.Task[None]) -> None:
        self._preparing.discard(task)
        if not task.cancelled() and task.exception() is not None:  # one not awaited: logged, not lost
            log.error("prompt rendering failed: %s", task.exception())

    async def _bounded(
        self, request: OriginateRequest, claim: db.Claim, fl: InFlight, session: DialogSession, b: Breaker
    ) -> CallReport:
        """`_place` under the call's own deadline (max_call_s on the campaign clock); at the deadline
        the backend hangs the call up and what was answered so far is kept."""
        work = asyncio.ensure_future(self._place(request, claim, fl, session, b))
        assert request.deadline is not None
        timer = asyncio.ensure_future(self.clock.sleep_until(request.deadline))
        try:
            done, _ = await asyncio.wait({work, timer}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            work.cancel()
            timer.cancel()
            await asyncio.gather(work, timer, return_exceptions=True)
            await self._hangup(claim.channel_id)
            raise
        if work in done:
            timer.cancel()
            return work.result()
        work.cancel()
        await asyncio.gather(work, return_exceptions=True)
        await self._hangup(claim.channel_id)
        talk = (min(self.clock.now(), request.deadline) - claim.started_at).total_seconds()
        log.warning("call %s to %s reached max_call_s (%.0f s); hung up", claim.channel_id,
                    mask_phone(claim.phone), self.settings.max_call_s)
        if fl.answered:
            return CallReport(claim, "answered", 0.0, max(talk, 0.0), "max_call_s", session.result)
        return CallReport(claim, CallOutcome.no_answer.value, max(talk, 0.0), cause="max_call_s")

    async def _hangup(self, channel_id: str) -> None:
        try:
            await self.telephony.hangup(channel_id)
        except TelephonyError as exc:
            log.error("hang-up of %s failed: %s", channel_id, exc)

    async def _place(
        self, request: OriginateRequest, claim: db.Claim, fl: InFlight, session: DialogSession, b: Breaker
    ) -> CallReport:
        res: OriginateResult = await self.telephony.originate(request)
        b.success()
        if res.outcome != CallOutcome.answered:
            return CallReport(claim, res.outcome.value, res.ring_s, cause=res.cause)
        fl.answered = True
        if self._journal is not None and not self.clock.virtual:
            await self._journal.answered(claim.channel_id, res.ring_s)
        if res.text is not None:
            result = await run_text_dialog(session, res.text)
            talk = res.text.elapsed_s
        elif res.media is not None and self.media_runner is not None:
            result, talk = await self.media_runner(session, res.media)
        else:
            await self._hangup(claim.channel_id)
            raise TelephonyConfigError(f"backend {self.telephony.name} answered without a usable channel "
                                       "(no media runner configured for audio calls)")
        return CallReport(claim, "answered", res.ring_s, talk, res.cause, result)

    # ------------------------------------------------------------------ writing results

    async def _journal_report(self, rep: CallReport) -> None:
        """Virtual time: the whole call is known at once; journal it before it is due to be written."""
        if self._journal is not None:
            await self._journal.results([self._finish(rep, count=False)])

    async def _write_finished(self, now: dt.datetime) -> int:
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
            if self._journal is not None and not self.clock.virtual:
                await self._journal.results(finishes)
            self._unwritten.extend(finishes)
        if self._unwritten:
            await self._flush_unwritten()
        return len(finishes)

    async def _flush_unwritten(self) -> None:
        batch = list(self._unwritten)
        try:
            await self.io.run(db.finish_attempts, self.store, batch, worker=self.settings.worker)
        except Exception as exc:
            self.stats.write_failures += 1
            if not transient_db_error(exc):
                log.exception("writing %d finished calls failed; kept for the next try", len(batch))
            else:
                self._db_fault(exc)
            return
        self._unwritten = self._unwritten[len(batch):]
        self.stats.finished += len(batch)
        if self._journal is not None:
            await self._journal.committed([f.claim.channel_id for f in batch])

    def _finish(self, rep: CallReport, *, count: bool = True) -> db.Finish:
        claim = rep.claim
        windows, policy = self._windows_policy(claim.campaign_id)
        ended = rep.ended_at
        if rep.outcome == db.NOT_DIALED:
            if count:
                self.stats.by_outcome[db.NOT_DIALED] = self.stats.by_outcome.get(db.NOT_DIALED, 0) + 1
            retry = windows.next_open(max(rep.retry_at or ended, ended))
            return db.Finish(claim=claim, outcome=db.NOT_DIALED, ended_at=ended, cause=rep.cause, state="pending",
                             next_attempt_at=retry)
        answered = rep.outcome == "answered"
        result = rep.result
        outcome = rep.outcome
        dialog_outcome = (result.outcome or "hung_up") if (answered and result is not None) else None
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
        if count:
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
            dialog_outcome=(result.outcome or "hung_up") if result is not None else None, cause=cause,
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
        await self.start()
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
        await self._write_finished(self.clock.now())
        await self.heartbeat()

    async def drain(self, interrupt: asyncio.Event | None = None) -> int:
        """Shutdown: start no new calls, wait for the calls in flight (wall clock) and write them.

        When `interrupt` is set meanwhile, the calls still in progress are cancelled (hung up) and
        recorded as `interrupted`, with what was answered (retried per policy, not charged).
        Returns how many were interrupted.
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
                    await self.journal_progress()
                    for t in pending:
                        t.cancel()
                    await asyncio.gather(*pending, return_exceptions=True)
                    break
        finally:
            if waiter is not None and not waiter.done():
                waiter.cancel()
        cancelled = sum(1 for v in self._inflight.values() for f in v if f.task is not None and f.task.cancelled())
        far = self.clock.now() + dt.timedelta(days=1)
        await self._write_finished(far)  # drops the cancelled calls from memory; their rows are still `dialing`
        if cancelled:
            await self._recover(include_own=True)  # reads this run's journal: the answers are kept
        return cancelled


def _progress_of(res: ScreeningResult) -> dict[str, Any]:
    return {
        "outcome": res.outcome, "risk": res.risk, "reasons": list(res.reasons),
        "answers": {k: v.as_dict() | {"field": v.field} for k, v in res.answers.items()},
        "reminder_needed": res.reminder_needed, "turns": list(res.turns),
    }


def _result_from_progress(p: dict[str, Any]) -> ScreeningResult:
    from dialogs.types import Answer

    res = ScreeningResult(outcome="hung_up", risk=p.get("risk", "none"), reasons=list(p.get("reasons", [])),
                          reminder_needed=bool(p.get("reminder_needed")), turns=list(p.get("turns", [])))
    for name, a in dict(p.get("answers", {})).items():
        res.answers[name] = Answer(field=name, value=a.get("value"), raw=a.get("raw", ""),
                                   confidence=float(a.get("confidence", 0.0)), nlu=a.get("nlu", ""),
                                   intent=a.get("intent", ""), uncertain=bool(a.get("uncertain")),
                                   audio_ref=a.get("audio"), detail=dict(a.get("detail", {})))
    return res
