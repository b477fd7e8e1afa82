"""SQL for campaign rehearsals: the residents of a campaign (a sample of them) to copy into a throw-away
store, and the peak number of simultaneous calls found in a store's attempts."""

from __future__ import annotations

import random
from typing import Any

from sqlalchemy import select

from results.models import CallAttempt, CampaignContact, Resident
from results.store import Store

RESIDENT_COLUMNS = ("name", "phone", "community", "address", "national_id", "arrival_date", "tags", "note",
                    "source_file")


def campaign_residents(store: Store, campaign_id: int, *, limit: int, seed: int) -> tuple[list[dict[str, Any]], int]:
    """Up to `limit` residents of the campaign (a seeded random sample when it has more), and how many it has."""
    with store.session() as s:
        ids = list(s.scalars(select(CampaignContact.resident_id).where(CampaignContact.campaign_id == campaign_id)
                             .order_by(CampaignContact.id)))
        total = len(ids)
        if total > limit:
            ids = sorted(random.Random(seed).sample(ids, limit))
        rows: list[dict[str, Any]] = []
        cols = [getattr(Resident, c) for c in RESIDENT_COLUMNS]
        for i in range(0, len(ids), 900):
            for r in s.execute(select(*cols).where(Resident.id.in_(ids[i : i + 900]))):
                rows.append(dict(zip(RESIDENT_COLUMNS, r, strict=True)))
    return rows, total


def peak_concurrency(store: Store, campaign_id: int) -> int:
    """The most calls that were in progress at the same moment (from attempt start and end times)."""
    events: list[tuple[Any, int]] = []
    with store.session() as s:
        for start, end in s.execute(select(CallAttempt.started_at, CallAttempt.ended_at)
                                    .where(CallAttempt.campaign_id == campaign_id)):
            events.append((start, 1))
            events.append((end or start, -1))
    events.sort(key=lambda e: (e[0], e[1]))
    peak = cur = 0
    for _, d in events:
        cur += d
        peak = max(peak, cur)
    return peak
