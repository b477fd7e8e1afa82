"""The dashboard's aggregates on SQLite and PostgreSQL: a finished simulated campaign counted at once and
incrementally (finished hours kept between refreshes) gives the same numbers, which agree with the store."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select

from campaigns.demo import run_demo
from outreach.commands.campaign import demo_settings
from results.dashboard import Timeline, campaign_dashboard
from results.models import CallAttempt, ScreeningRecord
from results.store import Store
from tests.web_support import make_config


def test_incremental_dashboard_equals_full_count(db_url: str, tmp_path: Path) -> None:
    cfg = make_config(tmp_path, db_url)
    run_demo(demo_settings(cfg), tmp_path, residents=60, write_exports=False, store_url=db_url)
    store = Store(db_url)
    try:
        full = campaign_dashboard(store, 1)
        kept = Timeline()
        first = campaign_dashboard(store, 1, kept)
        assert kept.until is not None and kept.attempts  # the finished hours are kept
        second = campaign_dashboard(store, 1, kept)
        assert first == full and second == full
        with store.session() as s:
            n = s.scalar(select(func.count()).select_from(CallAttempt))
            answered = s.scalar(select(func.count()).select_from(CallAttempt).where(CallAttempt.outcome == "answered"))
            done = s.scalar(select(func.count()).select_from(ScreeningRecord).where(ScreeningRecord.outcome == "completed"))
        assert sum(full["attempts"].values()) == n and full["attempts"]["answered"] == answered
        assert sum(p["calls"] for p in full["timeline"]) == n
        assert sum(p["completed"] for p in full["timeline"]) == done
        assert all(p["hour"].endswith(":00") and "T" in p["hour"] for p in full["timeline"])
        assert full["lines_in_use"] == 0 and sum(r["total"] for r in full["per_community"].values()) == 60
    finally:
        store.close()
