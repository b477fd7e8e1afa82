"""The demo: a whole campaign of synthetic residents on the simulated network, in virtual time.

Used by `outreach demo` and `bench/campaign_bench.py`.
"""

from __future__ import annotations

import datetime as dt
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from campaigns.clock import VirtualClock
from campaigns.engine import CampaignEngine, EngineSettings
from campaigns.reminders import ReminderSettings, run_virtual
from campaigns.service import (
    file_sha256,
    make_session_factory,
    make_simulated_network,
    read_script,
    resolve_script,
)
from campaigns.synthetic import synthetic_residents
from dialogs.nlu.types import Nlu
from results import campaigns as db
from results import exports
from results.sms import sms_summary
from results.store import Store

DEMO_CAMPAIGN = "demo"
# A Monday morning before the first window opens, in the default time zone: reproducible runs.
DEMO_START_LOCAL = dt.datetime(2026, 11, 23, 8, 30)


@dataclass(slots=True)
class DemoSettings:
    """What the demo needs from the configuration (outreach builds it from config.yaml)."""

    script: str
    timezone: str
    windows: dict[str, Any]
    holidays: list[Any]
    pacing: dict[str, Any]
    retry_policy: dict[str, Any]
    seed: int
    simulation_rates: dict[str, float]
    nlu: Nlu
    low_confidence: float = 0.6
    caller_id: str = "12320"
    originate_timeout_s: float = 30.0
    reminders: ReminderSettings | None = None  # SMS reminders and ring-back texts on the dry-run gateway


@dataclass(slots=True)
class DemoResult:
    summary: dict[str, Any]
    files: dict[str, Path]
    store_url: str
    virtual_start: dt.datetime
    virtual_end: dt.datetime


class DemoDirError(db.CampaignError):
    """The demo folder holds a store with real work in it; the demo will not replace it."""


def fresh_store(directory: Path) -> str:
    """Remove a previous demo store and outputs in `directory`; return the new store's URL.

    Raises:
        DemoDirError: `directory/outreach.db` holds more than a previous demo (it is left untouched).
    """
    why = db.non_demo_data(directory / "outreach.db")
    if why is not None:
        raise DemoDirError(
            f"{directory / 'outreach.db'} is not a previous demo store ({why}); the demo replaces its store, "
            "so give it another --dir"
        )
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("outreach.db", "outreach.db-wal", "outreach.db-shm"):
        (directory / name).unlink(missing_ok=True)
    shutil.rmtree(directory / "out", ignore_errors=True)
    return f"sqlite:///{directory / 'outreach.db'}"


def run_demo(
    settings: DemoSettings,
    directory: Path,
    *,
    residents: int = 500,
    pacing: dict[str, Any] | None = None,
    write_exports: bool = True,
    on_progress: Callable[[CampaignEngine, int], None] | None = None,
    store_url: str | None = None,
) -> DemoResult:
    """Run the demo campaign to completion and return its summary (and the export files)."""
    import asyncio

    t0 = time.perf_counter()
    seed = settings.seed
    url = store_url or fresh_store(directory)
    store = Store(url)
    try:
        tz = ZoneInfo(settings.timezone)
        start = DEMO_START_LOCAL.replace(tzinfo=tz).astimezone(dt.UTC)
        clock = VirtualClock(start)
        db.set_meta(store, "kind", "simulation")  # the demo store holds made-up people and calls only
        db.add_residents(store, synthetic_residents(residents, seed=seed, today=DEMO_START_LOCAL.date()), now=start)
        script = resolve_script(settings.script)
        info, _ = db.create_campaign(
            store, name=DEMO_CAMPAIGN, script_path=script, script_sha256=file_sha256(script),
            timezone=settings.timezone, windows=settings.windows, holidays=settings.holidays,
            pacing={**settings.pacing, **(pacing or {})}, retry_policy=settings.retry_policy,
            source_files=["synthetic"], now=start, actor="demo", script_text=read_script(script),
        )
        db.set_state(store, DEMO_CAMPAIGN, "running", now=start, actor="demo")
        telephony = make_simulated_network(settings.simulation_rates, seed=seed)
        engine = CampaignEngine(
            store, telephony, clock, make_session_factory(settings.nlu, low_confidence=settings.low_confidence),
            settings=EngineSettings(worker="demo", caller_id=settings.caller_id,
                                    originate_timeout_s=settings.originate_timeout_s),
            campaigns=[DEMO_CAMPAIGN],
        )
        progress = (lambda e: on_progress(e, residents)) if on_progress is not None else None

        async def go() -> None:
            async with telephony:
                try:
                    await engine.run_virtual(on_step=progress)
                finally:
                    await engine.stop()

        asyncio.run(go())
        sms_end = clock.now()
        if settings.reminders is not None:
            sms_end = run_virtual(store, settings.reminders, clock.now())
        files: dict[str, Path] = {}
        if write_exports:
            out = directory / "out"
            out.mkdir(parents=True, exist_ok=True)  # the demo's own folder; exports never create folders
            files["screenings"] = out / "screenings.xlsx"
            files["attempts"] = out / "attempts.csv"
            files["escalations"] = out / "escalations.xlsx"
            exports.export(store, campaign=DEMO_CAMPAIGN, what="screenings", fmt="xlsx", out=files["screenings"])
            exports.export(store, campaign=DEMO_CAMPAIGN, what="attempts", fmt="csv", out=files["attempts"])
            exports.export(store, campaign=DEMO_CAMPAIGN, what="escalations", fmt="xlsx", out=files["escalations"])
        summary: dict[str, Any] = dict(db.campaign_summary(store, info.id))
        if settings.reminders is not None:
            summary.update(sms_summary(store, info.id))
        summary["campaign_state"] = db.get_campaign(store, DEMO_CAMPAIGN).state
        summary["virtual_days"] = round((clock.now() - start).total_seconds() / 86400, 2)
        summary["wall_s"] = round(time.perf_counter() - t0, 2)
        return DemoResult(summary, files, url, start, max(clock.now(), sms_end))
    finally:
        store.close()
