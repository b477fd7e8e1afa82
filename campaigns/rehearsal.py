"""Rehearsal of a campaign before launch: its real script and resident list, on the simulated phone
network, in virtual time, in a separate throw-away store. The stored campaign is never touched.

Big lists are rehearsed on a seeded sample (`sample_max` residents) with the lines and call rate scaled
down in the same ratio, so the time to finish stays comparable; counts are scaled back up.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from campaigns.clock import VirtualClock
from campaigns.engine import CampaignEngine, EngineSettings
from campaigns.service import make_session_factory, make_simulated_network
from dialogs.nlu.types import Nlu
from results import campaigns as db
from results.rehearsal import campaign_residents, peak_concurrency
from results.store import Store


@dataclass(slots=True)
class RehearsalSettings:
    simulation_rates: dict[str, float]
    seed: int
    nlu: Nlu
    low_confidence: float = 0.6
    caller_id: str = "12320"
    originate_timeout_s: float = 30.0
    sample_max: int = 2000


@dataclass(slots=True)
class Forecast:
    campaign: str
    residents: int  # in the campaign
    rehearsed: int  # residents actually simulated
    scale: float  # residents / rehearsed
    days: float  # from the first calling window to the last call
    calls: int
    answered: int
    completed: int
    unreachable: int
    flagged: int
    opted_out: int
    human_requested: int
    peak_lines: int
    max_lines: int
    calls_per_second: float
    start: dt.datetime
    end: dt.datetime
    wall_s: float
    missing_prompts: list[str] = field(default_factory=list)
    prompts_fallback: bool = False

    def as_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        out["start"], out["end"] = self.start.isoformat(), self.end.isoformat()
        return out


def _next_local_morning(now: dt.datetime, tz: str) -> dt.datetime:
    """The next 08:00 local time: the rehearsal starts before the first window of a working day."""
    zone = ZoneInfo(tz)
    local = now.astimezone(zone)
    start = local.replace(hour=8, minute=0, second=0, microsecond=0)
    if start <= local:
        start += dt.timedelta(days=1)
    return start.astimezone(dt.UTC)


def rehearse(store: Store, campaign: str, settings: RehearsalSettings, *, now: dt.datetime | None = None) -> Forecast:
    """Run the campaign's rehearsal to completion and return the forecast.

    Raises:
        CampaignError: no such campaign; ScriptLoadError: its script cannot be loaded.
    """
    t0 = time.perf_counter()
    info = db.get_campaign(store, campaign)
    rows, total = campaign_residents(store, info.id, limit=settings.sample_max, seed=settings.seed)
    rehearsed = len(rows)
    scale = total / rehearsed if rehearsed else 1.0
    pacing = dict(info.pacing)
    max_lines = int(pacing.get("max_concurrent_calls", 30))
    cps = float(pacing.get("calls_per_second", 2.0))
    if scale > 1:
        pacing["max_concurrent_calls"] = max(1, round(max_lines / scale))
        pacing["calls_per_second"] = cps / scale
    start = _next_local_morning(now or dt.datetime.now(dt.UTC), info.timezone)
    tmp = Path(tempfile.mkdtemp(prefix="outreach-rehearsal-"))
    try:
        sim = Store(f"sqlite:///{tmp / 'rehearsal.db'}")
        try:
            db.add_residents(sim, rows, now=start)
            sim_info, _ = db.create_campaign(
                sim, name=info.name, script_path=info.script_path, script_sha256=info.script_sha256,
                timezone=info.timezone, windows=info.windows, holidays=info.holidays, pacing=pacing,
                retry_policy=info.retry_policy, now=start, actor="rehearsal",
            )
            db.set_state(sim, info.name, "running", now=start, actor="rehearsal")
            clock = VirtualClock(start)
            telephony = make_simulated_network(settings.simulation_rates, seed=settings.seed)
            engine = CampaignEngine(
                sim, telephony, clock, make_session_factory(settings.nlu, low_confidence=settings.low_confidence),
                settings=EngineSettings(worker="rehearsal", caller_id=settings.caller_id,
                                        originate_timeout_s=settings.originate_timeout_s),
                campaigns=[info.name],
            )

            async def run() -> None:
                await engine.run_virtual()
                await telephony.close()

            asyncio.run(run())
            summary = db.campaign_summary(sim, sim_info.id)
            peak = peak_concurrency(sim, sim_info.id)
            last = db.latest_activity_at(sim) or start
        finally:
            sim.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    def up(n: int) -> int:
        return round(n * scale)

    first_window = start
    return Forecast(
        campaign=info.name, residents=total, rehearsed=rehearsed, scale=round(scale, 3),
        days=round(max(0.0, (last - first_window).total_seconds()) / 86400, 2),
        calls=up(summary["calls"]), answered=up(summary["answered"]), completed=up(summary["completed"]),
        unreachable=up(summary["unreachable"]), flagged=up(summary["flagged"]), opted_out=up(summary["opted_out"]),
        human_requested=up(summary["human_requested"]), peak_lines=min(max_lines, up(peak)), max_lines=max_lines,
        calls_per_second=cps, start=start, end=last, wall_s=round(time.perf_counter() - t0, 2),
    )
