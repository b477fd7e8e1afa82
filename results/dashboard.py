"""All SQL of the staff dashboard and the /metrics endpoint: a campaign's counts by outcome, answer rate and
completions per hour, flagged records by reason, progress per community, lines in use; store-wide counts
for Prometheus."""

from __future__ import annotations

from collections import Counter
from typing import Any

from sqlalchemy import func, select, text

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
    if dialect == "postgresql":
        return f"to_char(date_trunc('hour', {column}), 'YYYY-MM-DD\"T\"HH24:00')"
    return f"strftime('%Y-%m-%dT%H:00', {column})"


def campaign_dashboard(store: Store, campaign_id: int) -> dict[str, Any]:
    """Everything the dashboard of one campaign shows (times in UTC, hour buckets as ISO strings)."""
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
        attempts = {str(k): int(v) for k, v in s.execute(
            select(CallAttempt.outcome, func.count()).where(CallAttempt.campaign_id == campaign_id)
            .group_by(CallAttempt.outcome))}
        bucket = _hour_bucket(store.dialect, "started_at")
        timeline = [
            {"hour": h, "calls": int(n), "answered": int(a or 0)}
            for h, n, a in s.execute(text(
                f"SELECT {bucket} AS h, count(*), sum(CASE WHEN outcome = 'answered' THEN 1 ELSE 0 END) "
                "FROM call_attempts WHERE campaign_id = :c GROUP BY h ORDER BY h"), {"c": campaign_id})
        ]
        rbucket = _hour_bucket(store.dialect, "created_at")
        completions = {
            h: int(n) for h, n in s.execute(text(
                f"SELECT {rbucket} AS h, count(*) FROM screening_records WHERE campaign_id = :c "
                "AND outcome = 'completed' GROUP BY h"), {"c": campaign_id})
        }
        for point in timeline:
            point["completed"] = completions.pop(point["hour"], 0)
        for h, n in completions.items():  # records written in an hour without a call start (rare)
            timeline.append({"hour": h, "calls": 0, "answered": 0, "completed": n})
        timeline.sort(key=lambda p: p["hour"])
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
        lines = int(s.scalar(select(func.count()).select_from(CallAttempt).where(
            CallAttempt.campaign_id == campaign_id, CallAttempt.outcome == "dialing")) or 0)
        last = s.scalar(select(func.max(CallAttempt.started_at)).where(CallAttempt.campaign_id == campaign_id))
        workers = sorted(w for (w,) in s.execute(
            select(CallAttempt.worker).where(CallAttempt.campaign_id == campaign_id,
                                             CallAttempt.outcome == "dialing").distinct()) if w)
    total_attempts = sum(attempts.values())
    answered = attempts.get("answered", 0)
    return {
        "campaign": {"id": camp.id, "name": camp.name, "state": camp.state, "timezone": camp.timezone,
                     "max_lines": int((camp.pacing or {}).get("max_concurrent_calls", 0) or 0)},
        "contacts": contacts,
        "final_outcomes": finals,
        "attempts": attempts,
        "answer_rate": round(answered / total_attempts, 4) if total_attempts else None,
        "timeline": timeline,
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
