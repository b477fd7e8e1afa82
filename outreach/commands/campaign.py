"""`outreach campaign create|start|pause|resume|cancel|set|status`, and the top-level `run` and `demo`."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import signal
import sys
from pathlib import Path
from typing import Any

import typer

from campaigns.clock import Clock, ScaledClock, VirtualClock, WallClock
from campaigns.demo import DemoSettings
from campaigns.engine import CampaignEngine, EngineSettings, MediaDialogRunner, PromptPreparer, TrunkSpec
from campaigns.service import (
    PeriodicJob,
    ScriptLoadError,
    ScriptSessions,
    make_prompt_preparer,
    make_session_factory,
    make_simulated_network,
    serve,
)
from dialer.base import Telephony, TelephonyError
from dialer.media import MediaSession
from dialogs.types import DialogSession, ScreeningResult
from outreach.config import Config, script_vars
from outreach.context import fail, get_ctx
from outreach.services import ServiceError
from outreach.services import campaigns as services
from outreach.sms_wiring import build_reminder_sweep, reminder_settings
from results import campaigns as db

log = logging.getLogger(__name__)

app = typer.Typer(help="Campaigns: create, start, pause, resume, cancel, set, status.", no_args_is_help=True)

SIMULATION_RATES = services.SIMULATION_RATES
INBOUND_UNKNOWN_SCRIPT = "dialogs/scripts/inbound_unknown.yaml"
PREPARE_LEAD_S = 1.0  # voice backends: a call starts this long after its claim, for its prompts to render


# ----------------------------------------------------------------------------- config -> engine wiring

campaign_defaults = services.campaign_defaults
build_nlu = services.build_nlu


def build_sessions(config: Config) -> ScriptSessions:
    return make_session_factory(build_nlu(config), low_confidence=config.nlu.low_confidence,
                                script_vars=script_vars(config))


def build_telephony(config: Config, *, dial_log: Path | None = None, realtime_clock: Clock | None = None) -> Telephony:
    """The configured backend, not started yet. Raises TelephonyError for one this build does not have."""
    if config.telephony.backend == "asterisk":
        from outreach.commands.asterisk import make_asterisk

        return make_asterisk(config)
    if config.telephony.backend != "simulated":
        raise TelephonyError(
            f"telephony.backend {config.telephony.backend!r} is not available in this build; use 'simulated'"
        )
    sim = config.simulation
    rates = {k: float(getattr(sim, k)) for k in SIMULATION_RATES}
    return make_simulated_network(rates, seed=sim.seed, dial_log=dial_log, realtime_clock=realtime_clock)


def build_media_runner(config: Config, telephony: Telephony | None = None) -> MediaDialogRunner | None:
    """The voice runner for backends that carry audio (Asterisk): the configured recognizer, prompts from
    the TTS cache, turn-taking from config `turn`, and, when `telephony` can transfer and
    telephony.asterisk.human_queue is enabled, the transfer to a person (campaigns.transfer). None for
    the simulated network (it talks in text)."""
    if config.telephony.backend == "simulated":
        return None
    from asr.base import AsrError
    from asr.factory import make_recognizer
    from dialogs.runner import RunnerSettings, run_dialog
    from tts.cache import PromptPlayer

    a = config.asr
    try:
        recognizer = make_recognizer(a.engine, model_path=a.model_path, server_url=a.server_url, threads=a.threads,
                                     frames_per_chunk=a.frames_per_chunk, decode_nice=a.decode_nice)
    except AsrError as exc:
        raise TelephonyError(f"telephony.backend {config.telephony.backend!r} needs speech recognition: {exc}") from exc
    player = PromptPlayer(config.tts)
    settings = RunnerSettings.from_config(config.turn)

    queue = config.telephony.asterisk.human_queue
    transfer_to = telephony if telephony is not None and telephony.supports_transfer and queue.enabled else None

    async def runner(session: DialogSession, media: MediaSession) -> tuple[ScreeningResult, float]:
        t0 = asyncio.get_running_loop().time()
        if transfer_to is not None:
            from campaigns.transfer import TransferOnEnd
            from outreach.commands.asterisk import human_queue_open

            media = TransferOnEnd(media, lambda: session.result, transfer_to, f"{queue.context},{queue.exten}",
                                  lambda: human_queue_open(config))
        report = await run_dialog(session, media, recognizer, player.audio, settings)
        return report.result, asyncio.get_running_loop().time() - t0

    return runner


def wire_inbound(config: Config, telephony: Telephony, store: Any, media_runner: MediaDialogRunner) -> None:
    """Residents calling back (telephony.asterisk.inbound): the backend's inbound calls go to the desk."""
    from dialer.asterisk.backend import AsteriskTelephony

    if not isinstance(telephony, AsteriskTelephony) or not config.telephony.asterisk.inbound:
        return
    from campaigns.inbound import InboundDesk
    from campaigns.service import resolve_script
    from dialogs.script import load_script

    script = load_script(resolve_script(INBOUND_UNKNOWN_SCRIPT))
    nlu = build_nlu(config)
    telephony.on_inbound = InboundDesk(store, telephony, lambda: script.new_session({}, nlu), media_runner)


def build_prompt_preparer(config: Config, sessions: ScriptSessions) -> PromptPreparer | None:
    """Voice backends: the pipeline's prepare step renders each contact's templated prompts ({name}) into
    the TTS cache (tts.cache.prerender_for_contacts) before the call, with the cache and engine the voice
    runner's PromptPlayer reads. None for the simulated network (it talks in text)."""
    if config.telephony.backend == "simulated":
        return None
    from tts.cache import PromptCache, make_engine, prerender_for_contacts

    tts_engine = make_engine(config.tts)
    cache = PromptCache(config.tts.cache_dir)

    async def render(script: Any, contacts: list[Any]) -> None:
        report = await prerender_for_contacts(script, contacts, tts_engine, cache)
        if not report.ok:
            raise RuntimeError(f"{len(report.failures)} of {report.total} failed: {report.failures[0].error}")

    return make_prompt_preparer(sessions, render)


def build_engine_settings(config: Config, *, worker: str | None = None, slice_s: float | None = None) -> EngineSettings:
    t = config.telephony
    s = EngineSettings(
        caller_id=t.caller_id, originate_timeout_s=t.originate_timeout_s, max_call_s=t.max_call_s,
        max_calls=t.max_calls_per_worker,
        trunks=tuple(TrunkSpec(k.name, k.channel, k.max_channels, k.calls_per_second) for k in t.trunks),
    )
    if t.backend != "simulated":
        s.prepare_lead_s = PREPARE_LEAD_S
    if worker:
        s.worker = worker
    if slice_s:
        s.slice_s = slice_s
    return s


def demo_settings(config: Config, *, seed: int | None = None) -> DemoSettings:
    d = campaign_defaults(config)
    sim = config.simulation
    return DemoSettings(
        script=config.campaign.script, timezone=d["timezone"], windows=d["windows"], holidays=d["holidays"],
        pacing=d["pacing"], retry_policy=d["retry_policy"], seed=sim.seed if seed is None else seed,
        simulation_rates={k: float(getattr(sim, k)) for k in SIMULATION_RATES}, nlu=build_nlu(config),
        low_confidence=config.nlu.low_confidence, caller_id=config.telephony.caller_id,
        originate_timeout_s=config.telephony.originate_timeout_s, reminders=reminder_settings(config),
    )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _service_fail(exc: ServiceError) -> None:
    fail(str(exc), code=exc.code)


@app.command("create")
def create(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Campaign name (unique)."),
    script: str | None = typer.Option(None, "--script", help="Screening script YAML (default: campaign.script)."),
    source_file: list[str] = typer.Option([], "--file", help="Only residents imported from this file name (repeatable)."),
    community: list[str] = typer.Option([], "--community", help="Only residents of this community (repeatable)."),
    tag: list[str] = typer.Option([], "--tag", help="Only residents with this tag (repeatable)."),
    timezone: str | None = typer.Option(None, "--timezone", help="IANA time zone (default: campaign.timezone)."),
    window: list[str] = typer.Option([], "--window", help="Calling window, e.g. daily=09:00-12:00,14:00-20:00 or sun= (repeatable)."),
    holiday: list[str] = typer.Option([], "--holiday", help="A local date without calls, YYYY-MM-DD (repeatable)."),
    max_concurrent: int | None = typer.Option(None, "--max-concurrent", min=1, help="Max concurrent calls."),
    cps: float | None = typer.Option(None, "--cps", min=0.01, help="Max new calls per second."),
    max_attempts: int | None = typer.Option(None, "--max-attempts", min=1, max=10, help="Max attempts per resident."),
    max_per_day: int | None = typer.Option(None, "--max-attempts-per-day", min=1, max=10, help="Max attempts a day."),
) -> None:
    """Create a draft campaign from imported residents (all of them, or filtered)."""
    app_ctx = get_ctx(ctx)
    cfg = app_ctx.config()
    try:
        spec = services.CampaignSpec(
            name=name, script=script, source_files=source_file, communities=community, tags=tag, timezone=timezone,
            windows=services.parse_windows(window) if window else None, holidays=holiday,
            max_concurrent=max_concurrent, cps=cps, max_attempts=max_attempts, max_per_day=max_per_day,
        )
        prepared = services.prepare_campaign(cfg, spec)
        info, n = services.store_campaign(app_ctx.store(), prepared, actor="cli")
    except ServiceError as exc:
        _service_fail(exc)
        return
    print(f"created campaign {info.name!r} (draft) with {n} contacts; start it with: outreach campaign start {info.name}")


def _lifecycle(ctx: typer.Context, name: str, action: str) -> None:
    app_ctx = get_ctx(ctx)
    try:
        if action == "start":
            services.start_campaign(app_ctx.config(), app_ctx.store(), name, actor="cli")
        elif action == "resume":
            services.resume_campaign(app_ctx.config(), app_ctx.store(), name, actor="cli")
        elif action == "pause":
            services.pause_campaign(app_ctx.store(), name, actor="cli")
        else:
            services.cancel_campaign(app_ctx.store(), name, actor="cli")
    except ServiceError as exc:
        msg = str(exc)
        if action == "resume" and " is draft;" in msg:
            msg += f"; start it with: outreach campaign start {name}"
        elif action == "start" and " is paused;" in msg:
            msg += f"; continue it with: outreach campaign resume {name}"
        fail(msg, code=exc.code)


@app.command("start")
def start(ctx: typer.Context, name: str = typer.Argument(...)) -> None:
    """Start a draft campaign (calls begin when `outreach run` is running and a window is open)."""
    _lifecycle(ctx, name, "start")
    print(f"campaign {name!r} is running")


@app.command("pause")
def pause(ctx: typer.Context, name: str = typer.Argument(...)) -> None:
    """Pause: no new calls; calls in progress finish normally."""
    _lifecycle(ctx, name, "pause")
    print(f"campaign {name!r} is paused")


@app.command("resume")
def resume(ctx: typer.Context, name: str = typer.Argument(...)) -> None:
    """Resume a paused campaign."""
    _lifecycle(ctx, name, "resume")
    print(f"campaign {name!r} is running")


@app.command("cancel")
def cancel(ctx: typer.Context, name: str = typer.Argument(...)) -> None:
    """Cancel: every contact not yet finished is skipped; calls in progress finish normally."""
    _lifecycle(ctx, name, "cancel")
    print(f"campaign {name!r} is cancelled")


@app.command("set")
def set_settings(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Campaign name."),
    window: list[str] = typer.Option([], "--window", help="Calling window, e.g. daily=09:00-12:00,14:00-20:00 or sun= (repeatable; replaces the windows)."),
    holiday: list[str] = typer.Option([], "--holiday", help="A local date without calls, YYYY-MM-DD (repeatable; replaces the holidays)."),
    no_holidays: bool = typer.Option(False, "--no-holidays", help="Remove every holiday."),
    max_concurrent: int | None = typer.Option(None, "--max-concurrent", min=1, help="Max concurrent calls."),
    cps: float | None = typer.Option(None, "--cps", min=0.01, help="Max new calls per second."),
    max_attempts: int | None = typer.Option(None, "--max-attempts", min=1, max=10, help="Max attempts per resident."),
    max_per_day: int | None = typer.Option(None, "--max-attempts-per-day", min=1, max=10, help="Max attempts a day."),
) -> None:
    """Change a campaign's windows, holidays, pacing or attempt limits; a running `outreach run` applies
    them at its next tick, without a restart."""
    app_ctx = get_ctx(ctx)
    if no_holidays and holiday:
        fail("--holiday and --no-holidays exclude each other")
    try:
        edit = services.SettingsEdit(
            windows=services.parse_windows(window) if window else None,
            holidays=[] if no_holidays else (holiday or None), max_concurrent=max_concurrent, cps=cps,
            max_attempts=max_attempts, max_per_day=max_per_day,
        )
        info = services.update_campaign_settings(app_ctx.store(), name, edit, actor="cli")
    except ServiceError as exc:
        _service_fail(exc)
        return
    windows = "; ".join(f"{k} {','.join(v) or '-'}" for k, v in info.windows.items())
    print(f"campaign {info.name!r} ({info.state}): windows {windows}; holidays {', '.join(map(str, info.holidays)) or '-'}; "
          f"pacing {info.pacing.get('max_concurrent_calls')} lines, {info.pacing.get('calls_per_second')} calls/s; "
          f"attempts {info.retry_policy.get('max_attempts_per_day')} a day, {info.retry_policy.get('max_attempts_total')} in all")


@app.command("status")
def status(
    ctx: typer.Context,
    name: str | None = typer.Argument(None, help="Campaign name; without it, list all campaigns."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show a campaign's progress (contacts, attempts, records, escalations), or list campaigns."""
    store = get_ctx(ctx).store()
    if name is None:
        rows = [{"campaign": c.name, "state": c.state, "created_at": c.created_at.isoformat()} for c in db.list_campaigns(store)]
        if as_json:
            print(json.dumps(rows, ensure_ascii=False))
        else:
            for r in rows:
                print(f"{r['campaign']}\t{r['state']}\t{r['created_at']}")
        return
    try:
        st = db.campaign_status(store, name)
    except db.CampaignError as exc:
        fail(str(exc))
        return
    if as_json:
        print(json.dumps(st, ensure_ascii=False))
        return
    print(f"campaign {st['campaign']}: {st['state']} (time zone {st['timezone']})")
    if st.get("paused_reason"):
        print(f"  paused by the dialer: {st['paused_reason']}")
    trunk = st.get("trunk") or {}
    breaker = trunk.get("breaker", "closed")
    detail = f" ({trunk['breaker_reason']})" if trunk.get("breaker_reason") else ""
    until = f" until {trunk['breaker_until']}" if trunk.get("breaker_until") else ""
    print(f"  trunk {trunk.get('name', 'default')}: breaker {breaker}{detail}{until}; lines in use {st.get('lines_in_use', 0)}")

    for key in ("contacts", "final_outcomes", "attempts", "records_by_risk", "escalations"):
        parts = ", ".join(f"{k} {v}" for k, v in sorted(st[key].items())) or "-"
        print(f"  {key.replace('_', ' ')}: {parts}")
    if st["next_attempt_at"]:
        print(f"  next attempt due: {st['next_attempt_at']}")


# ----------------------------------------------------------------------------- run, demo


def _parse_start(value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    try:
        t = dt.datetime.fromisoformat(value)
    except ValueError:
        fail(f"--start {value!r}: use an ISO time like 2026-11-23T08:30+08:00")
        raise
    if t.tzinfo is None:
        fail(f"--start {value!r}: give a UTC offset, e.g. 2026-11-23T08:30+08:00")
    return t.astimezone(dt.UTC)


def register(main: typer.Typer) -> None:
    main.command("run")(run)
    main.command("demo")(demo)


def service_jobs(config: Config, store: Any) -> list[PeriodicJob]:
    """Extra periodic jobs of `outreach run` besides the dialer: SMS reminders (plan what is needed,
    send what is due). Wired here, explicitly, by the packages that provide them."""
    sweep = build_reminder_sweep(config, store)

    async def reminders(now: dt.datetime) -> None:
        res = sweep(now)
        if not isinstance(res, int):
            await res

    return [PeriodicJob("reminders", 300.0, reminders)]


def check_store_for(store: Any, *, simulated: bool, simulated_time: bool) -> None:
    """Simulation never pollutes real data: the simulated network (fake answers, do-not-call entries from
    simulated residents, escalations) and virtual/scaled time (timestamps in the future) only run on a
    simulation store; a real backend never runs on one."""
    kind = db.get_meta(store, "kind")
    if simulated or simulated_time:
        if kind != "simulation":
            real = db.real_residents(store)
            if real:
                what = "the simulated network" if simulated else "simulated time"
                fail(f"this store holds {real} imported residents: {what} would write made-up calls, answers and "
                     "do-not-call entries (and future timestamps) into it. Run simulations on their own store, "
                     "e.g. `outreach --db sqlite:///var/sim.db ...` or `outreach demo`")
            db.set_meta(store, "kind", "simulation")
    elif kind == "simulation":
        fail("this store was written by the simulated network; a real telephony backend needs a real store "
             "(database.url)")


def run(
    ctx: typer.Context,
    campaign: list[str] = typer.Option([], "--campaign", help="Only these campaigns (repeatable; default: all running)."),
    worker: str | None = typer.Option(None, "--worker", help="Worker name (default: host:pid:random); a live worker's name is refused."),
    virtual_time: bool = typer.Option(False, "--virtual-time", help="Simulated time: run as fast as possible until no work is left."),
    speed: float | None = typer.Option(None, "--speed", min=0.001, help="Scaled time: this many simulated seconds per wall second."),
    start: str | None = typer.Option(None, "--start", help="Start of simulated time (ISO, with offset); default: the store's latest activity or now."),
    epoch: float | None = typer.Option(None, "--epoch", help="Scaled time: the wall instant (Unix seconds) at which simulated time is --start; workers given the same --start, --speed and --epoch share one timeline."),
    exit_when_complete: bool = typer.Option(False, "--exit-when-complete", help="Exit once no running campaign has work left."),
    tick: float = typer.Option(1.0, "--tick", min=0.01, help="Dialer tick in wall seconds (service mode)."),
    dial_log: Path | None = typer.Option(None, "--dial-log", help="Simulated network: append the carrier's log of every dial here."),
    live_status: bool | None = typer.Option(None, "--status/--no-status", help="Live status table on the terminal (default: when stderr is a terminal)."),
) -> None:
    """The dialer service: ticks campaigns, places calls, writes results (Ctrl-C or SIGTERM stops it)."""
    app_ctx = get_ctx(ctx)
    cfg = app_ctx.config()
    store = app_ctx.store()
    if virtual_time and speed is not None:
        fail("--virtual-time and --speed exclude each other")
    if epoch is not None and speed is None:
        fail("--epoch anchors scaled time: it needs --speed")
    if cfg.telephony.backend == "asterisk" and (virtual_time or speed is not None):
        fail("telephony.backend asterisk places real calls on the wall clock: drop --virtual-time / --speed")
    for name in campaign:  # a typo must not run nothing, silently (checked before anything is written)
        try:
            db.get_campaign(store, name)
        except db.CampaignError as exc:
            fail(f"--campaign {name!r}: {exc}")
    check_store_for(store, simulated=cfg.telephony.backend == "simulated", simulated_time=virtual_time or speed is not None)
    origin = _parse_start(start)
    clock: Clock
    if virtual_time or speed is not None:
        origin = origin or db.latest_activity_at(store) or _now()
        clock = VirtualClock(origin) if virtual_time else ScaledClock(origin, speed or 1.0, epoch=epoch)
    else:
        clock = WallClock()
    try:
        telephony = build_telephony(cfg, dial_log=dial_log, realtime_clock=None if virtual_time else clock)
    except TelephonyError as exc:
        fail(str(exc))
        return
    settings = build_engine_settings(cfg, worker=worker, slice_s=None if virtual_time else max(tick * (speed or 1.0), 0.5))
    try:
        media_runner = build_media_runner(cfg, telephony)
    except TelephonyError as exc:
        fail(str(exc))
        return
    sessions = build_sessions(cfg)
    engine = CampaignEngine(store, telephony, clock, sessions, settings=settings, campaigns=campaign,
                            media_runner=media_runner, prepare_prompts=build_prompt_preparer(cfg, sessions))
    if media_runner is not None:
        wire_inbound(cfg, telephony, store, media_runner)
    typer.echo(f"worker {settings.worker}: running ({'virtual time' if virtual_time else 'scaled time' if speed else 'wall clock'})", err=True)
    show_live = sys.stderr.isatty() if live_status is None else live_status

    async def serve_engine() -> None:
        if virtual_time:
            try:
                await engine.run_virtual()
            finally:
                await engine.stop()
            return
        stop = asyncio.Event()
        interrupt = asyncio.Event()

        def on_signal() -> None:
            if not stop.is_set():
                stop.set()
                typer.echo(
                    f"worker {settings.worker}: stopping: no new calls; waiting for {engine.inflight} calls in "
                    "progress to end (Ctrl-C or SIGTERM again cuts them; they are retried later)", err=True,
                )
            elif not interrupt.is_set():
                interrupt.set()
                typer.echo(f"worker {settings.worker}: cutting the calls in progress", err=True)

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal)
        board = StatusBoard(live=show_live)
        try:
            await serve(engine, stop=stop, tick_s=tick, exit_when_complete=exit_when_complete,
                        jobs=service_jobs(cfg, store), interrupt=interrupt, on_status=board.update)
        finally:
            board.close()

    async def main() -> None:
        try:
            await telephony.start()
        except TelephonyError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from exc
        try:
            await serve_engine()
        finally:
            await telephony.stop()

    try:
        asyncio.run(main())
    except db.WorkerConflict as exc:
        fail(str(exc))
    s = engine.stats
    typer.echo(
        f"worker {settings.worker}: {s.started} calls started, {s.finished} finished, {s.answered} answered, "
        f"{s.recovered} interrupted attempts recovered, {s.not_dialed} not dialled (system faults, not charged); "
        f"completed campaigns: {', '.join(engine.completed_campaigns) or '-'}",
        err=True,
    )


class StatusBoard:
    """`outreach run`'s status per campaign: a live table on a terminal, else a log line every 30 s
    (transitions — windows, breakers — are logged by the engine once each)."""

    def __init__(self, *, live: bool) -> None:
        self._live: Any = None
        self._last_log = 0.0
        self._calls: dict[str, list[tuple[float, int]]] = {}
        if live:
            from rich.live import Live

            self._live = Live(console=_stderr_console(), refresh_per_second=2, transient=False)
            self._live.start()

    def rows(self, engine: CampaignEngine) -> list[dict[str, Any]]:
        import time

        now = engine.clock.now()
        out = []
        mono = time.monotonic()
        for cid, rt in sorted(engine._runtimes.items()):
            name = rt.info.name
            flying = engine._inflight.get(cid, [])
            b = engine.breaker(rt.info.trunk)
            started = engine.stats.started
            hist = self._calls.setdefault(name, [])
            hist.append((mono, started))
            while hist and mono - hist[0][0] > 60:
                hist.pop(0)
            per_min = (hist[-1][1] - hist[0][1]) * 60 / max(mono - hist[0][0], 1.0) if len(hist) > 1 else 0.0
            nxt = rt.windows.next_open(now)
            out.append({
                "campaign": name, "lines": sum(1 for f in flying if f.report is None),
                "max_lines": rt.max_concurrent, "calls_per_min": round(per_min, 1),
                "answered": engine.stats.answered, "completed": engine.stats.completed,
                "window": "open" if rt.windows.is_open(now) else "opens " + rt.windows.local(nxt).strftime("%m-%d %H:%M"),
                "breaker": b.state + (f" ({b.reason})" if b.reason else ""),
            })
        return out

    def update(self, engine: CampaignEngine) -> None:
        import time

        rows = self.rows(engine)
        if self._live is not None:
            from rich.table import Table

            table = Table(title=f"worker {engine.settings.worker}  {engine.clock.now().isoformat(timespec='seconds')}")
            for col in ("campaign", "lines", "calls/min", "answered", "completed", "window", "breaker"):
                table.add_column(col)
            for r in rows:
                table.add_row(r["campaign"], f"{r['lines']}/{r['max_lines']}", str(r["calls_per_min"]),
                              str(r["answered"]), str(r["completed"]), r["window"], r["breaker"])
            self._live.update(table)
        elif time.monotonic() - self._last_log >= 30:
            self._last_log = time.monotonic()
            for r in rows:
                log.info("status %s: lines %d/%d, %.1f calls/min, answered %d, completed %d, window %s, breaker %s",
                         r["campaign"], r["lines"], r["max_lines"], r["calls_per_min"], r["answered"], r["completed"],
                         r["window"], r["breaker"])

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()


SUMMARY_LABELS = (
    ("residents", "residents"),
    ("calls", "calls placed"),
    ("answered", "calls answered"),
    ("completed", "screenings completed"),
    ("flagged", "flagged (risk)"),
    ("unreachable", "unreachable (escalated)"),
    ("opted_out", "opted out"),
    ("human_requested", "asked for a human"),
    ("not_understood", "not understood"),
    ("reminders_needed", "second-test reminders needed"),
    ("reminders_sent", "second-test reminders sent (SMS)"),
    ("reminders_delivered", "second-test reminders delivered"),
    ("ring_back_sent", "ring-back texts sent"),
    ("sms_undeliverable", "texts undeliverable"),
    ("escalated_residents", "residents on escalation lists"),
    ("max_attempts_per_resident", "max attempts per resident"),
    ("virtual_days", "simulated days"),
    ("wall_s", "wall seconds"),
)


def demo(
    ctx: typer.Context,
    residents: int = typer.Option(500, "--residents", min=1, max=1_000_000, help="Number of synthetic residents."),
    seed: int | None = typer.Option(None, "--seed", help="Simulation seed (default: simulation.seed)."),
    directory: Path = typer.Option(Path("demo"), "--dir", help="Folder for the fresh store and out/ exports."),
    as_json: bool = typer.Option(False, "--json", help="Print exactly one JSON object with the summary."),
) -> None:
    """Run a whole simulated campaign on the embedded defaults, in virtual time, and export the results."""
    from campaigns.demo import run_demo

    cfg = get_ctx(ctx).config()
    live = sys.stderr.isatty() and not as_json
    progress_cb: Any = None
    progress: Any = None
    if live:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        progress = Progress(
            TextColumn("[bold]demo campaign"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(), console=_stderr_console(),
        )
        task = progress.add_task("demo", total=residents, info="")

        def progress_cb(engine: CampaignEngine, total: int) -> None:
            s = engine.stats
            when = engine.clock.now().astimezone(dt.timezone(dt.timedelta(hours=8))).strftime("%m-%d %H:%M")
            progress.update(task, completed=s.contacts_done,
                            info=f"calls {s.started}  answered {s.answered}  sim {when}")

        progress.start()
    try:
        result = run_demo(demo_settings(cfg, seed=seed), directory, residents=residents, on_progress=progress_cb)
    except (ScriptLoadError, TelephonyError, db.CampaignError) as exc:
        fail(str(exc))
        return
    finally:
        if progress is not None:
            progress.stop()
    summary = result.summary
    web = _demo_web(cfg, result.store_url)
    if as_json:  # stdout stays the one summary object (the same for the same seed); the logins go to stderr
        print(json.dumps(summary, ensure_ascii=False))
        typer.echo(json.dumps({"web": web}, ensure_ascii=False), err=True)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"demo campaign: {summary['residents']} residents, state {summary['campaign_state']}")
    table.add_column("")
    table.add_column("count", justify="right")
    for key, label in SUMMARY_LABELS:
        table.add_row(label, str(summary.get(key, "")))
    Console().print(table)
    for kind, path in result.files.items():
        print(f"{kind}: {path}")
    print(f"web console: run `{web['serve']}` and open {web['url']}")
    for acc in web["accounts"]:
        where = f" ({', '.join(acc['communities'])})" if acc["communities"] else ""
        print(f"  {acc['role']} login{where}: {acc['name']} / password {acc['password']}")


def _demo_web(cfg: Config, store_url: str) -> dict[str, Any]:
    """Accounts for the web console in the demo store, and how to open it."""
    from outreach.services.accounts import demo_accounts
    from results.store import Store

    store = Store(store_url)
    try:
        accounts = demo_accounts(store)
    finally:
        store.close()
    host = cfg.web.host
    return {
        "serve": f"outreach --db {store_url} serve",
        "url": f"http://{host}:{cfg.web.port}/",
        "accounts": [{"name": a.name, "role": a.role, "communities": list(a.communities), "password": a.password}
                     for a in accounts],
    }


def _stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True)
