"""All SQL of the staff dashboard and the /metrics endpoint: a campaign's counts by outcome, answer rate and
completions per hour, flagged records by reason, progress per community, lines in use; store-wide counts
for Prometheus."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from results.models import (
    CallAttempt,
    Campaign,
    CampaignContact,
    Escalation,
    Resident,
    ScreeningRecord,
    SmsMessage,
)
from results.store import Store


def _hour_bucket(dialect: str, column: str) -> str:
    """SQL for the UTC hour of a stored time as 'YYYY-MM-DD HH' (SQLite stores times as ISO text)."""
    if dialect == "postgresql":
        return f"to_char(date_trunc('hour', {column}), 'YYYY-MM-DD HH24')"
    return f"substr({column}, 1, 13)"


def _hour_start(value: dt.datetime) -> dt.datetime:
    return value.replace(minute=0, second=0, microsecond=0)


def _bucket_key(value: dt.datetime) -> str:
    return value.strftime("%Y-%m-%d %H")


@dataclass(slots=True)
class Timeline:
    """The hourly counts of a campaign that can no longer change (hours before `until`), kept between
    dashboard refreshes so a refresh only counts the recent hours."""

    until: dt.datetime | None = None
    attempts: Counter[tuple[str, str]] = field(default_factory=Counter)  # (hour, outcome) -> n
    completed: Counter[str] = field(default_factory=Counter)  # hour -> completed screenings


def _dialing(s: Session, campaign_id: int) -> list[tuple[dt.datetime, str]]:
    """(start, worker) of the campaign's calls in progress. Selected by outcome alone: the few dialing rows
    of all campaigns, found through the outcome index, never a scan of a campaign's attempts."""
    return [(t, w) for c, t, w in s.execute(
        select(CallAttempt.campaign_id, CallAttempt.started_at, CallAttempt.worker)
        .where(CallAttempt.outcome == "dialing")) if c == campaign_id]


def _freeze_point(s: Session, campaign_id: int, dialing: list[tuple[dt.datetime, str]]) -> dt.datetime | None:
    """The start of the oldest hour that may still change: attempts before it are finished (none is
    dialing) and more than two hours older than the newest attempt."""
    newest = s.scalar(select(func.max(CallAttempt.started_at)).where(CallAttempt.campaign_id == campaign_id))
    if newest is None:
        return None
    point = min([newest - dt.timedelta(hours=2), *(t for t, _ in dialing)])
    return _hour_start(point)


def _timeline(s: Session, dialect: str, campaign_id: int, kept: Timeline,
              dialing: list[tuple[dt.datetime, str]]) -> tuple[Counter[tuple[str, str]], Counter[str]]:
    freeze = _freeze_point(s, campaign_id, dialing)
    since = kept.until
    where = "campaign_id = :c" + (" AND started_at >= :since" if since is not None else "")
    params: dict[str, Any] = {"c": campaign_id}
    if since is not None:
        naive = since.astimezone(dt.UTC).replace(tzinfo=None)
        params["since"] = naive.strftime("%Y-%m-%d %H:%M:%S.%f") if dialect == "sqlite" else naive
    fresh: Counter[tuple[str, str]] = Counter()
    for h, outcome, n in s.execute(text(
        f"SELECT {_hour_bucket(dialect, 'started_at')} AS h, outcome, count(*) FROM call_attempts "
        f"WHERE {where} GROUP BY h, outcome"), params):
        fresh[(str(h), str(outcome))] += int(n)
    rwhere = "campaign_id = :c AND outcome = 'completed'" + (" AND created_at >= :since" if since is not None else "")
    done: Counter[str] = Counter()
    for h, n in s.execute(text(
        f"SELECT {_hour_bucket(dialect, 'created_at')} AS h, count(*) FROM screening_records "
        f"WHERE {rwhere} GROUP BY h"), params):
        done[str(h)] += int(n)
    if freeze is not None and (since is None or freeze > since):
        cut = _bucket_key(freeze)
        for key in [k for k in fresh if k[0] < cut]:
            kept.attempts[key] += fresh.pop(key)
        for hour in [h for h in done if h < cut]:
            kept.completed[hour] += done.pop(hour)
        kept.until = freeze
    return kept.attempts + fresh, kept.completed + done


def campaign_dashboard(store: Store, campaign_id: int, timeline: Timeline | None = None) -> dict[str, Any]:
    """Everything the dashboard of one campaign shows (times in UTC, hour buckets as ISO strings).

    `timeline`: the hours counted by an earlier call for this campaign (updated here); None counts all."""
    kept = timeline if timeline is not None else Timeline()
    with store.session() as s:
        camp = s.get(Campaign, campaign_id)
        if camp is None:
            raise LookupError(f"campaign {campaign_id}")
        contacts = {str(k): int(v) for k, v in s.execute(
            select(CampaignContact.state, func.count()).where(CampaignContact.campaign_id == campaign_id)
            .group_by(CampaignContact.state))}
        finals = {str(k): int(v) for k, v in s.execute(
            select(CampaignContact.final_outcome, func.count())
            .where(CampaignContact.campaign_id == campaign_id, CampaignContact.final_outcome.is_not(None))
            .group_by(CampaignContact.final_outcome))}
        dialing = _dialing(s, campaign_id)
        buckets, completions = _timeline(s, store.dialect, campaign_id, kept, dialing)
        attempts: Counter[str] = Counter()
        hours: dict[str, dict[str, Any]] = {}
        for (h, outcome), n in buckets.items():
            attempts[outcome] += n
            point = hours.setdefault(h, {"hour": h.replace(" ", "T") + ":00", "calls": 0, "answered": 0,
                                         "completed": 0})
            point["calls"] += n
            if outcome == "answered":
                point["answered"] += n
        for h, n in completions.items():
            hours.setdefault(h, {"hour": h.replace(" ", "T") + ":00", "calls": 0, "answered": 0,
                                 "completed": 0})["completed"] += n
        timeline_points = [hours[h] for h in sorted(hours)]
        risks = {str(k): int(v) for k, v in s.execute(
            select(ScreeningRecord.risk_level, func.count()).where(ScreeningRecord.campaign_id == campaign_id)
            .group_by(ScreeningRecord.risk_level))}
        reasons: Counter[str] = Counter()
        for (rs,) in s.execute(
            select(ScreeningRecord.reasons).where(
                ScreeningRecord.campaign_id == campaign_id, ScreeningRecord.risk_level != "none")
        ):
            reasons.update(str(r) for r in rs or [])
        escalations = {str(k): int(v) for k, v in s.execute(
            select(Escalation.kind, func.count()).where(Escalation.campaign_id == campaign_id,
                                                        Escalation.status != "closed")
            .group_by(Escalation.kind))}
        per_community: dict[str, dict[str, int]] = {}
        for community, state, final, n in s.execute(
            select(Resident.community, CampaignContact.state, CampaignContact.final_outcome, func.count())
            .join(Resident, Resident.id == CampaignContact.resident_id)
            .where(CampaignContact.campaign_id == campaign_id)
            .group_by(Resident.community, CampaignContact.state, CampaignContact.final_outcome)
        ):
            row = per_community.setdefault(community or "", {"total": 0, "done": 0, "completed": 0, "unreachable": 0})
            row["total"] += int(n)
            if state in ("done", "skipped"):
                row["done"] += int(n)
            if final == "completed":
                row["completed"] += int(n)
            if final in ("unreachable", "invalid_number", "wrong_number"):
                row["unreachable"] += int(n)
        lines = len(dialing)
        last = s.scalar(select(func.max(CallAttempt.started_at)).where(CallAttempt.campaign_id == campaign_id))
        workers = sorted({w for _, w in dialing if w})
    total_attempts = sum(attempts.values())
    answered = attempts.get("answered", 0)
    return {
        "campaign": {"id": camp.id, "name": camp.name, "state": camp.state, "timezone": camp.timezone,
                     "max_lines": int((camp.pacing or {}).get("max_concurrent_calls", 0) or 0),
                     "trunk": camp.trunk},
        "contacts": contacts,
        "final_outcomes": finals,
        "attempts": dict(attempts),
        "answer_rate": round(answered / total_attempts, 4) if total_attempts else None,
        "timeline": timeline_points,
        "risks": risks,
        "reasons": dict(reasons.most_common(12)),
        "open_escalations": escalations,
        "per_community": dict(sorted(per_community.items())),
        "lines_in_use": lines,
        "dialing_workers": workers,
        "last_call_at": last.isoformat() if last else None,
    }


def metrics_snapshot(store: Store) -> dict[str, dict[str, int]]:
    """Store-wide counts for Prometheus: attempts by outcome, lines in use per campaign, SMS by state,
    open escalations by kind, campaigns by state."""
    with store.session() as s:
        attempts = {str(k): int(v) for k, v in s.execute(
            select(CallAttempt.outcome, func.count()).group_by(CallAttempt.outcome))}
        lines = {str(k): int(v) for k, v in s.execute(
            select(Campaign.name, func.count()).join(CallAttempt, CallAttempt.campaign_id == Campaign.id)
            .where(CallAttempt.outcome == "dialing").group_by(Campaign.name))}
        sms = {str(k): int(v) for k, v in s.execute(select(SmsMessage.state, func.count()).group_by(SmsMessage.state))}
        esc = {str(k): int(v) for k, v in s.execute(
            select(Escalation.kind, func.count()).where(Escalation.status != "closed").group_by(Escalation.kind))}
        camps = {str(k): int(v) for k, v in s.execute(select(Campaign.state, func.count()).group_by(Campaign.state))}
    return {"attempts": attempts, "lines": lines, "sms": sms, "escalations": esc, "campaigns": camps}


def latency_samples(store: Store, *, limit_attempts: int = 500) -> dict[str, list[float]]:
    """Turn, ASR and NLU latencies (seconds) found in the turns of the latest answered attempts, where the
    dialog runner recorded them (`latency_ms`, `asr_ms`, `nlu_ms` keys of a turn)."""
    out: dict[str, list[float]] = {"turn": [], "asr": [], "nlu": []}
    with store.session() as s:
        for (turns,) in s.execute(
            select(CallAttempt.turns).where(CallAttempt.answered_at.is_not(None))
            .order_by(CallAttempt.id.desc()).limit(limit_attempts)
        ):
            for t in turns or []:
                if not isinstance(t, dict):
                    continue
                for key, name in (("latency_ms", "turn"), ("asr_ms", "asr"), ("nlu_ms", "nlu")):
                    v = t.get(key)
                    if isinstance(v, int | float):
                        out[name].append(float(v) / 1000.0)
    return out
