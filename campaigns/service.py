"""Wiring pieces of the engine (dialog sessions, the simulated network), and the long-running service.

`campaigns` does not read the application's configuration: `outreach` turns its config into these
arguments (see outreach/commands/campaign.py).

The service runs on APScheduler 3 (AsyncIOScheduler): one job ticks the dialer loop, one sweeps SMS
reminders, one watches calling windows open and close. In virtual time (`--virtual-time`) there is no
scheduler: the engine's own loop jumps the clock from event to event.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from campaigns.clock import Clock
from campaigns.engine import CampaignEngine, SessionFactory
from dialer.simulated import SimulatedNetwork
from dialogs.nlu.types import Nlu
from dialogs.types import DialogSession
from results import campaigns as db
from results.store import Store

log = logging.getLogger(__name__)

ReminderSweep = Callable[[dt.datetime], Awaitable[int] | int]


class ScriptLoadError(ValueError):
    """The campaign's script cannot be loaded; the message names the file."""


def file_sha256(path: str | Path) -> str:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError as exc:
        raise ScriptLoadError(f"cannot read script {path}: {exc.strerror}") from exc


def resolve_script(path: str) -> str:
    """A script path as given, or relative to the installed project (for the embedded default)."""
    p = Path(path)
    if p.is_file() or p.is_absolute():
        return str(p)
    candidate = Path(__file__).resolve().parent.parent / p
    return str(candidate) if candidate.is_file() else str(p)


def make_session_factory(nlu: Nlu, *, low_confidence: float = 0.6) -> SessionFactory:
    """Sessions of the real dialog engine with `nlu`; each campaign's script is loaded once."""
    from dialogs.script import ScriptError, load_script

    scripts: dict[str, Any] = {}

    def factory(info: db.CampaignInfo, claim: db.Claim) -> DialogSession:
        script = scripts.get(info.script_path)
        if script is None:
            try:
                script = load_script(info.script_path)
            except (ScriptError, OSError) as exc:
                raise ScriptLoadError(f"campaign {info.name}: script {info.script_path}: {exc}") from exc
            if info.script_sha256 and script.sha256 != info.script_sha256:
                log.warning("campaign %s: script %s changed since the campaign was created", info.name, info.script_path)
            scripts[info.script_path] = script
        session: DialogSession = script.new_session(
            claim.contact_mapping(), nlu, low_confidence=low_confidence, defer_nlu=True
        )
        return session

    return factory


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


def default_reminder_sweep(store: Store) -> ReminderSweep:
    """The SMS reminder sweep if the sms package provides one, else a logger of what is due."""
    sweep: Any = None
    try:
        import importlib

        sweep = getattr(importlib.import_module("sms.reminders"), "sweep", None)
    except ImportError:
        sweep = None

    def fallback(now: dt.datetime) -> int:
        log.debug("reminder sweep at %s: no SMS reminder module in this build", now.isoformat())
        return 0

    if sweep is None:
        return fallback

    def run(now: dt.datetime) -> Awaitable[int] | int:
        out: Awaitable[int] | int = sweep(store, now)
        return out

    return run


async def serve(
    engine: CampaignEngine,
    *,
    stop: asyncio.Event,
    tick_s: float = 1.0,
    exit_when_complete: bool = False,
    reminder_sweep: ReminderSweep | None = None,
    reminder_every_s: float = 300.0,
    on_tick: Callable[[CampaignEngine], None] | None = None,
    interrupt: asyncio.Event | None = None,
    lease_sweep_s: float = 60.0,
) -> None:
    """Run the dialer loop on the wall (or scaled) clock under APScheduler until `stop` is set.

    Then no new call starts and the calls in progress end normally, unless `interrupt` is set
    meanwhile: those calls are cut and recorded as `interrupted` (retried per policy)."""
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    engine.recover()
    scheduler = AsyncIOScheduler(timezone=dt.UTC)
    window_state: dict[int, bool] = {}

    async def tick() -> None:
        try:
            nxt = await engine.step()
        except Exception:
            log.exception("dialer tick failed; retrying on the next tick")
            return
        if on_tick is not None:
            on_tick(engine)
        if exit_when_complete and nxt is None and engine.inflight == 0:
            stop.set()

    async def sweep() -> None:
        if reminder_sweep is None:
            return
        try:
            res = reminder_sweep(engine.clock.now())
            if asyncio.iscoroutine(res) or isinstance(res, Awaitable):
                await res
        except Exception:
            log.exception("reminder sweep failed")

    def sweep_leases() -> None:
        # A worker that died and was not restarted leaves its claims `dialing`; take them over once
        # their lease has run out, so its contacts are retried and the campaign can complete.
        try:
            engine.recover(include_own=False)
        except Exception:
            log.exception("lease sweep failed; retrying later")

    def watch_windows() -> None:
        now = engine.clock.now()
        for cid, rt in list(engine._runtimes.items()):
            is_open = rt.windows.is_open(now)
            if window_state.get(cid) != is_open:
                log.info("campaign %s: calling window %s", rt.info.name, "opened" if is_open else "closed")
                window_state[cid] = is_open

    scheduler.add_job(tick, "interval", seconds=tick_s, max_instances=1, coalesce=True, id="dialer",
                      next_run_time=dt.datetime.now(dt.UTC))
    scheduler.add_job(sweep, "interval", seconds=reminder_every_s, max_instances=1, coalesce=True, id="reminders")
    scheduler.add_job(sweep_leases, "interval", seconds=lease_sweep_s, max_instances=1, coalesce=True, id="leases")
    scheduler.add_job(watch_windows, "interval", seconds=30, max_instances=1, coalesce=True, id="windows",
                      next_run_time=dt.datetime.now(dt.UTC))
    scheduler.start()
    try:
        await stop.wait()
    finally:
        scheduler.shutdown(wait=False)
        await engine.drain(interrupt)
