"""Retry and escalation policy: what happens to a contact after each attempt. Pure: no clock, no I/O.

Attempt outcomes (the telephony result, `CallAttempt.outcome`): answered, no_answer, busy, congestion,
failed, invalid_number, hung_up_early, interrupted. For answered calls the dialog outcome
(`dialogs.types.OUTCOMES`) decides: completed, callback_requested, human_requested, wrong_number,
opted_out, no_response, not_understood, hung_up, transferred (to the human queue).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from campaigns.windows import CallingWindows

ATTEMPT_OUTCOMES = (
    "answered",
    "no_answer",
    "busy",
    "congestion",
    "failed",
    "invalid_number",
    "hung_up_early",
    "interrupted",
)
# Final outcomes of a contact (CampaignContact.final_outcome).
FINAL_OUTCOMES = (
    "completed",
    "opted_out",
    "human_requested",
    "wrong_number",
    "invalid_number",
    "not_understood",
    "unreachable",
    "do_not_call",
    "cancelled",
    "transferred",
)

# Chinese labels for exports and escalation reasons (user-facing).
OUTCOME_LABELS = {
    "dialing": "呼叫中",
    "answered": "已接听",
    "no_answer": "无人接听",
    "busy": "占线",
    "congestion": "关机/网络忙",
    "failed": "呼叫失败",
    "invalid_number": "空号",
    "hung_up_early": "接听后挂断",
    "interrupted": "中断",
    "completed": "完成",
    "callback_requested": "要求回电",
    "human_requested": "要求人工",
    "wrong_number": "打错电话",
    "opted_out": "拒绝再呼",
    "no_response": "接听无应答",
    "not_understood": "无法识别",
    "hung_up": "中途挂断",
    "unreachable": "无法联系",
    "do_not_call": "免打扰",
    "cancelled": "已取消",
    "transferred": "已转人工",
}

# Every opt-out, on every channel, is one escalation kind, `opted_out` (an SMS 退订 reply too, see
# results.sms.record_reply); the reason names the channel (电话 / 短信) and what the resident did.
OPT_OUT_REASONS = {
    "opt_out": "【电话】居民在通话中要求不再接到机器人电话，已停止电话和短信，请社区决定如何联系",
    "scam_hang_up": "【电话】居民怀疑是诈骗电话并挂断，已停止电话和短信，请社区核实身份后联系",
}

ESCALATION_PRIORITY = {
    "high_risk": 1,
    "flagged": 2,
    "human_requested": 2,
    "unreachable": 3,
    "callback_requested": 3,
    "uncertain": 3,
    "opted_out": 3,  # opted out (a call, an SMS reply) or hung up suspecting a scam: the community decides how to reach them
}


class PolicyError(ValueError):
    """A retry policy is unusable; the message names the key."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Delays in seconds per outcome and attempt limits (defaults: DESIGN.md, VICIdial-like)."""

    no_answer_s: int = 7200
    busy_s: int = 1800
    congestion_s: int = 3600
    failed_s: int = 3600
    hung_up_early_s: int = 7200
    interrupted_s: int = 600
    callback_default_s: int = 7200
    max_attempts_per_day: int = 3
    max_attempts_total: int = 5

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> RetryPolicy:
        known = set(cls.__dataclass_fields__)
        for key, value in data.items():
            if key not in known:
                raise PolicyError(f"retry.{key}: unknown key; valid keys: {', '.join(sorted(known))}")
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise PolicyError(f"retry.{key}: {value!r} must be a positive whole number")
        policy = cls(**dict(data))
        if policy.max_attempts_per_day > policy.max_attempts_total:
            raise PolicyError("retry.max_attempts_per_day must not exceed retry.max_attempts_total")
        return policy

    def delay_for(self, outcome: str) -> int:
        delays = {
            "no_answer": self.no_answer_s,
            "no_response": self.no_answer_s,
            "busy": self.busy_s,
            "congestion": self.congestion_s,
            "failed": self.failed_s,
            "hung_up_early": self.hung_up_early_s,
            "hung_up": self.hung_up_early_s,
            "interrupted": self.interrupted_s,
            "callback_requested": self.callback_default_s,
        }
        try:
            return delays[outcome]
        except KeyError:
            raise PolicyError(f"no retry delay for outcome {outcome!r}") from None


@dataclass(frozen=True, slots=True)
class EscalationSpec:
    kind: str
    reasons: tuple[str, ...]
    priority: int
    due_at: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """Where a contact goes after an attempt."""

    state: str  # "pending" (retry at next_attempt_at) or "done"
    next_attempt_at: dt.datetime | None = None
    final_outcome: str | None = None
    escalations: tuple[EscalationSpec, ...] = ()
    do_not_call: bool = False
    do_not_call_source: str = "opt_out"  # results.donotcall.SOURCES


@dataclass(frozen=True, slots=True)
class AttemptFacts:
    """What one finished attempt tells the policy."""

    outcome: str  # attempt outcome
    dialog_outcome: str | None  # for answered calls
    started_at: dt.datetime
    ended_at: dt.datetime
    attempts_total: int  # including this attempt
    attempts_today: int  # including this attempt, in the campaign's local day of started_at
    callback_at: dt.datetime | None = None  # the time the resident asked to be called back
    history: Sequence[str] = field(default_factory=tuple)  # earlier attempt outcomes, oldest first
    scam_suspected: bool = False  # the resident suspected a scam during the call (你们是骗子吧)


def retry_outcome(facts: AttemptFacts) -> str | None:
    """The retry category of an attempt, or None when the contact is finished by it."""
    if facts.outcome == "answered":
        if facts.dialog_outcome in ("callback_requested", "no_response", "hung_up"):
            return facts.dialog_outcome
        return None
    if facts.outcome == "invalid_number":
        return None
    return facts.outcome


def decide(facts: AttemptFacts, policy: RetryPolicy, windows: CallingWindows) -> Decision:
    """Route a contact after an attempt: retry (when, within windows and limits) or finish (how)."""
    if facts.outcome not in ATTEMPT_OUTCOMES:
        raise PolicyError(f"unknown attempt outcome {facts.outcome!r}")
    if facts.scam_suspected and facts.outcome in ("answered", "hung_up_early") and facts.dialog_outcome in (
        "hung_up", "opted_out", None
    ):
        # Hung up (or refused) after suspecting a scam: never call again with the robot; a person from
        # the community decides how to reach the resident.
        spec = EscalationSpec("opted_out", (OPT_OUT_REASONS["scam_hang_up"],), ESCALATION_PRIORITY["opted_out"])
        return Decision(state="done", final_outcome="opted_out", escalations=(spec,), do_not_call=True,
                        do_not_call_source="scam_hang_up")
    category = retry_outcome(facts)
    if category is None:
        return _finish(facts)
    if facts.attempts_total >= policy.max_attempts_total:
        return _unreachable(facts, category)
    if category == "callback_requested" and facts.callback_at is not None and facts.callback_at > facts.ended_at:
        nxt = facts.callback_at
    else:
        nxt = facts.ended_at + dt.timedelta(seconds=policy.delay_for(category))
    if facts.attempts_today >= policy.max_attempts_per_day:
        nxt = max(nxt, windows.next_day_open(facts.started_at))
    nxt = windows.next_open(nxt)
    return Decision(state="pending", next_attempt_at=nxt)


def _finish(facts: AttemptFacts) -> Decision:
    if facts.outcome == "invalid_number":
        spec = EscalationSpec("unreachable", ("号码无效（空号）",), ESCALATION_PRIORITY["unreachable"])
        return Decision(state="done", final_outcome="invalid_number", escalations=(spec,))
    outcome = facts.dialog_outcome or "completed"
    if outcome == "opted_out":
        spec = EscalationSpec("opted_out", (OPT_OUT_REASONS["opt_out"],), ESCALATION_PRIORITY["opted_out"])
        return Decision(state="done", final_outcome="opted_out", escalations=(spec,), do_not_call=True)
    if outcome == "wrong_number":
        spec = EscalationSpec("unreachable", ("接听人称打错电话，号码可能有误",), ESCALATION_PRIORITY["unreachable"])
        return Decision(state="done", final_outcome="wrong_number", escalations=(spec,))
    if outcome == "human_requested":
        spec = EscalationSpec("human_requested", ("居民要求人工服务",), ESCALATION_PRIORITY["human_requested"])
        return Decision(state="done", final_outcome="human_requested", escalations=(spec,))
    if outcome == "transferred":  # a person took the call in the human queue
        return Decision(state="done", final_outcome="transferred")
    if outcome == "not_understood":
        spec = EscalationSpec("uncertain", ("机器人无法识别回答，需人工核实",), ESCALATION_PRIORITY["uncertain"])
        return Decision(state="done", final_outcome="not_understood", escalations=(spec,))
    return Decision(state="done", final_outcome="completed")


def _unreachable(facts: AttemptFacts, category: str) -> Decision:
    counts: dict[str, int] = {}
    for o in (*facts.history, category if facts.outcome == "answered" else facts.outcome):
        counts[o] = counts.get(o, 0) + 1
    detail = "，".join(f"{OUTCOME_LABELS.get(k, k)}×{v}" for k, v in counts.items())
    reason = f"呼叫{facts.attempts_total}次未完成筛查（{detail}）"
    spec = EscalationSpec("unreachable", (reason,), ESCALATION_PRIORITY["unreachable"])
    return Decision(state="done", final_outcome="unreachable", escalations=(spec,))


def record_escalations(
    *,
    risk: str,
    reasons: Sequence[str],
    escalate_human: bool,
    uncertain: Sequence[str],
    dialog_outcome: str | None,
    callback_at: dt.datetime | None,
) -> list[EscalationSpec]:
    """Escalations that a screening record itself asks for (risky answers, rules routing to a human,
    callbacks). Routing escalations (unreachable, human request) come from `decide`."""
    out: list[EscalationSpec] = []
    if risk == "high":
        out.append(EscalationSpec("high_risk", tuple(reasons) or ("高风险",), ESCALATION_PRIORITY["high_risk"]))
    elif risk == "flagged":
        out.append(EscalationSpec("flagged", tuple(reasons) or ("需关注",), ESCALATION_PRIORITY["flagged"]))
    elif escalate_human and dialog_outcome != "human_requested":
        kind = "uncertain" if uncertain else "flagged"
        out.append(EscalationSpec(kind, tuple(reasons) or ("规则要求人工回访",), ESCALATION_PRIORITY[kind]))
    elif uncertain and dialog_outcome == "completed":
        from results.exports import FIELD_LABELS  # the Chinese names of the record fields

        why = tuple(f"回答不确定：{FIELD_LABELS.get(f, f)}" for f in uncertain)
        out.append(EscalationSpec("uncertain", why, ESCALATION_PRIORITY["uncertain"]))
    if dialog_outcome == "callback_requested":
        when = ("约定回电时间已记录",) if callback_at else ("居民要求稍后回电",)
        out.append(EscalationSpec("callback_requested", when, ESCALATION_PRIORITY["callback_requested"], callback_at))
    return out


def callback_time(
    hint: Mapping[str, Any] | None, ended_at: dt.datetime, windows: CallingWindows, default_s: int
) -> dt.datetime:
    """Turn the NLU's callback hint into an instant (in the campaign's time zone), never in the past."""
    fallback = ended_at + dt.timedelta(seconds=default_s)
    if not hint:
        return fallback
    delay = hint.get("delay_minutes")
    if isinstance(delay, int | float) and delay > 0:
        return ended_at + dt.timedelta(minutes=float(delay))
    hhmm = hint.get("time")
    if isinstance(hhmm, str) and ":" in hhmm:
        try:
            hour, minute = (int(x) for x in hhmm.split(":", 1))
            offset = int(hint.get("day_offset") or 0)
            local = windows.local(ended_at)
            day = local.date() + dt.timedelta(days=offset)
            when = dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=windows.tz).astimezone(dt.UTC)
        except (TypeError, ValueError):
            return fallback
        if when <= ended_at:
            when += dt.timedelta(days=1)
        return when
    return fallback
