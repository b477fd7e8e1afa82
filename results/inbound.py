"""Residents calling back: find the open screening a caller's number still owes, and make it due now."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select, update

from results.models import Campaign, CampaignContact, Resident
from results.store import Store


@dataclass(frozen=True, slots=True)
class OpenScreening:
    campaign: str
    contact_id: int
    resident_name: str


def call_back_due(store: Store, phone: str, *, now: dt.datetime) -> OpenScreening | None:
    """The caller's open screening in the most recently started running campaign that still owes them a
    call (contact `pending`, not being dialled now), made due at `now` so the dialer takes it next.
    None when there is none (unknown number, finished, or a call to them is in progress)."""
    with store.session() as s:
        row = s.execute(
            select(CampaignContact.id, Campaign.name, Resident.name)
            .join(Campaign, Campaign.id == CampaignContact.campaign_id)
            .join(Resident, Resident.id == CampaignContact.resident_id)
            .where(Resident.phone == phone, Campaign.state == "running", CampaignContact.state == "pending")
            .order_by(Campaign.started_at.desc().nulls_last(), Campaign.id.desc())
            .limit(1)
        ).first()
        if row is None:
            return None
        res = s.execute(
            update(CampaignContact)
            .where(CampaignContact.id == row[0], CampaignContact.state == "pending")
            .values(next_attempt_at=now)
        )
        changed = int(getattr(res, "rowcount", 0) or 0)
        if not changed:
            return None
    return OpenScreening(campaign=row[1], contact_id=row[0], resident_name=row[2])
