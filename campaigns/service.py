"""Wiring pieces of the engine (dialog sessions from stored scripts, the simulated network, the voice
runner), and the long-running service.

`campaigns` does not read the application's configuration: `outreach` turns its config into these
arguments (see outreach/commands/campaign.py).

The service (`serve`) is one asyncio supervisor, no scheduler threads: periodic coroutine jobs on the
loop tick the dialer, send heartbeats (which extend the leases of this worker's calls), journal the
answers of live calls, sweep dead workers' claims, watch calling windows (each opening and closing is
logged once) and report status. Extra jobs (e.g. SMS dispatch) are passed in as `PeriodicJob`s. In
virtual time (`--virtual-time`) there is no service: the engine's own loop jumps the clock.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import hashlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from campaigns.clock import Clock
from campaigns.engine import CampaignEngine, CampaignPrepareError, PromptPreparer
from dialer.simulated import SimulatedNetwork
from dialogs.nlu.types import Nlu
from dialogs.script import Script, ScriptError, load_script, load_script_text
from dialogs.types import DialogSession
from results import campaigns as db

log = logging.getLogger(__name__)


class ScriptLoadError(ValueError):
    """The campaign's script cannot be loaded; the message names the file."""


def file_sha256(path: str | Path) -> str:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError as exc:
        raise ScriptLoadError(f"cannot read script {path}: {exc.strerror}") from exc


def read_script(path: str | Path) -> str:
    """A script file's text, as a campaign snapshots it (ScriptLoadError names the file)."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScriptLoadError(f"cannot read script {path}: {exc}") from exc


def resolve_script(path: str) -> str:
    """A script path as given, or relative to the installed project (for the embedded default)."""
    p = Path(path)
    if p.is_file() or p.is_absolute():
        return str(p)
    candidate = Path(__file__).resolve().parent.parent / p
    return str(candidate) if candidate.is_file() else str(p)


def campaign_script(info: db.CampaignInfo) -> Script:
    """The campaign's script: its stored snapshot (workers never depend on a file on their own disk);
    campaigns from before snapshots fall back to the file. Raises CampaignPrepareError."""
    try:
        if info.script_text:
            return load_script_text(info.script_text, f"campaign {info.name} script ({Path(info.script_path).name})")
        return load_script(info.script_path)
    except ScriptError as exc:
        raise CampaignPrepareError(f"campaign {info.name}: its script does not load: {exc}") from exc
    except OSError as exc:
        raise CampaignPrepareError(f"campaign {info.name}: cannot read script {info.script_path}: {exc}") from exc


class ScriptSessions:
    """Dialog sessions of the real engine with `nlu`, from each campaign's stored script (loaded once
    per snapshot). Sessions defer the NLU to the driver (`defer_nlu`): live calls await it."""

    def __init__(
        self, nlu: Nlu, *, low_confidence: float = 0.6, script_vars: Mapping[str, str] | None = None
    ) -> None:
        """`script_vars`: set on every script (the center's name and phone, the SMS note:
        `outreach.config.script_vars`)."""
        self.nlu = nlu
        self.low_confidence = low_confidence
        self.script_vars = dict(script_vars or {})
        self._scripts: dict[tuple[int, str], Script] = {}

    def script(self, info: db.CampaignInfo) -> Script:
        key = (info.id, info.script_sha256 or info.script_text[:64] or info.script_path)
        script = self._scripts.get(key)
        if script is None:
            script = campaign_script(info)
            if self.script_vars:
                script = script.with_vars(self.script_vars)
            self._scripts[key] = script
        return script

    def prepare(self, info: db.CampaignInfo) -> None:
        self.script(info)

    def __call__(self, info: db.CampaignInfo, claim: db.Claim) -> DialogSession:
        return self.script(info).new_session(
            claim.contact_mapping(), self.nlu, low_confidence=self.low_confidence, defer_nlu=True
        )


def make_session_factory(
    nlu: Nlu, *, low_confidence: float = 0.6, script_vars: Mapping[str, str] | None = None
) -> ScriptSessions:
    return ScriptSessions(nlu, low_confidence=low_confidence, script_vars=script_vars)


PromptRender = Callable[[Script, list[Mapping[str, Any]]], Awaitable[Any]]


def make_prompt_preparer(sessions: ScriptSessions, render: PromptRender, *, timeout_s: float = 10.0) -> PromptPreparer:
    """The pipeline's `prepare` step on voice backends: render the contact's templated prompts ({name})
    into the TTS cache before the call is placed, so no live call waits for TTS. Bounded by `timeout_s`;
    a failure is logged and the call goes on (the prompt player falls back to the offline voice)."""

    async def prepare(info: db.CampaignInfo, claim: db.Claim) -> None:
        try:
            async with asyncio.timeout(timeout_s):
                await render(sessions.script(info), [claim.contact_mapping()])
        except CampaignPrepareError:
            raise
        except Exception as exc:  # TTS down or slow: the call still happens, with the offline voice
            log.warning("campaign %s: prompts of attempt %s not rendered in advance (%s)", info.name,
                        claim.channel_id, exc or type(exc).__name__)

    return prepare


def make_simulated_network(
    rates: Mapping[str, float], *, seed: int, dial_log: Path | None = None, realtime_clock: Clock | None = None
) -> SimulatedNetwork:
    """The simulated network; `rates`: answer_rate, no_answer_rate, busy_rate, congestion_rate,
    invalid_rate. With `realtime_clock` it waits out call durations on that clock."""
    sleep = None
    if realtime_clock is not None:
        clock = realtime_clock

        async def sleep(seconds: float) -> None:
            await clock.sleep_until(clock.now() + dt.timedelta(seconds=seconds))

    unknown = set(rates) - {"answer_rate", "no_answer_rate", "busy_rate", "congestion_rate", "invalid_rate"}
    if unknown:
        raise ValueError(f"simulation: unknown rate(s) {', '.join(sorted(unknown))}")
    return SimulatedNetwork(
        seed=seed, dial_log=dial_log, sleep=sleep, answer_rate=float(rates.get("answer_rate", 0.55)),
        no_answer_rate=float(rates.get("no_answer_rate", 0.30)), busy_rate=float(rates.get("busy_rate", 0.06)),
        congestion_rate=float(rates.get("congestion_rate", 0.05)), invalid_rate=float(rates.get("invalid_rate", 0.03)),
    )


@dataclass(frozen=True, slots=True)
class PeriodicJob:
    """A coroutine the service runs every `every_s` wall seconds (first run at once unless `delay_first`)."""

    name: str
    every_s: float
    run: Callable[[dt.datetime], Awaitable[Any]]  # gets the campaign clock's now
    delay_first: bool = False


StatusCallback = Callable[[CampaignEngine], None]


async def _periodic(job: PeriodicJob, clock: Clock, stop: asyncio.Event) -> None:
    if job.delay_first:
        try:
            await asyncio.wait_for(stop.wait(), job.every_s)
            return
        except TimeoutError:
            pass
    while not stop.is_set():
        try:
            await job.run(clock.now())
        except Exception:
            log.exception("job %s failed; it runs again in %.0f s", job.name, job.every_s)
        try:
            await asyncio.wait_for(stop.wait(), job.every_s)
        except TimeoutError:
            continue


def freeze_startup_objects() -> None:
    """Take what is alive once the service has started (modules, SQLAlchemy's metadata, scripts, the
    engine) out of the garbage collector's full passes (`gc.freeze`).

    A full collection walks every tracked object, and it runs on the thread that allocates: the event
    loop carrying call audio. With ~130k objects alive it took ~100 ms on the 2-core machine, and every
    one of the longest loop stalls in `bench/loop_bench.py` was one. The objects of calls come and go
    and are collected as before; `serve` unfreezes when it ends."""
    gc.collect()
    gc.freeze()
    log.debug("gc: %d objects frozen at startup", gc.get_freeze_count())


async def serve(
    engine: CampaignEngine,
    *,
    stop: asyncio.Event,
    tick_s: float = 1.0,
    exit_when_complete: bool = False,
    jobs: Sequence[PeriodicJob] = (),
    on_status: StatusCallback | None = None,
    status_every_s: float = 1.0,
    interrupt: asyncio.Event | None = None,
    lease_sweep_s: float = 10.0,
) -> None:
    """Run the dialer on the wall (or scaled) clock until `stop` is set.

    Then no new call starts and the calls in progress end normally, unless `interrupt` is set
    meanwhile: those calls are cut and recorded as `interrupted` (retried per policy, not charged)."""
    await engine.start()
    freeze_startup_objects()
    window_state: dict[int, bool] = {}

    async def tick(now: dt.datetime) -> None:
        nxt = await engine.step()
        if exit_when_complete and nxt is None and engine.inflight == 0:
            stop.set()

    async def heartbeat(now: dt.datetime) -> None:
        await engine.heartbeat()

    async def progress(now: dt.datetime) -> None:
        await engine.journal_progress()

    async def sweep(now: dt.datetime) -> None:
        # A worker that died leaves its claims `dialing`: take them over once its heartbeat stopped.
        await engine.sweep()

    async def windows(now: dt.datetime) -> None:
        for cid, rt in list(engine._runtimes.items()):
            is_open = rt.windows.is_open(now)
            if window_state.get(cid) != is_open:
                if cid in window_state or is_open:
                    log.info("campaign %s: calling window %s", rt.info.name, "opened" if is_open else "closed")
                window_state[cid] = is_open

    async def status(now: dt.datetime) -> None:
        if on_status is not None:
            on_status(engine)

    s = engine.settings
    builtin = [
        PeriodicJob("dialer", tick_s, tick),
        PeriodicJob("heartbeat", s.heartbeat_s, heartbeat, delay_first=True),
        PeriodicJob("progress", s.progress_s, progress, delay_first=True),
        PeriodicJob("leases", lease_sweep_s, sweep, delay_first=True),
        PeriodicJob("windows", 5.0, windows),
        PeriodicJob("status", status_every_s, status),
    ]
    tasks = [asyncio.create_task(_periodic(j, engine.clock, stop), name=f"job-{j.name}") for j in [*builtin, *jobs]]
    try:
        await stop.wait()
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)  # each job ends after its current run
        try:
            await engine.drain(interrupt)
        finally:
            await engine.stop()
            gc.unfreeze()  # collectable again once the service is over (tests run many in one process)
