"""Retry and escalation policy per outcome, limits per day and in total, callbacks, pacing."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from campaigns.pacing import TokenBucket
from campaigns.policy import (
    AttemptFacts,
    PolicyError,
    RetryPolicy,
    callback_time,
    decide,
    record_escalations,
)
from campaigns.windows import CallingWindows

SH = ZoneInfo("Asia/Shanghai")
W = CallingWindows.parse({"daily": ["09:00-12:00", "14:00-20:00"]})
P = RetryPolicy()


def at(hh: int, mm: int = 0, day: int = 23) -> dt.datetime:
    return dt.datetime(2026, 11, day, hh, mm, tzinfo=SH).astimezone(dt.UTC)


def facts(outcome: str, dialog: str | None = None, *, start: dt.datetime | None = None, total: int = 1,
          today: int = 1, callback_at: dt.datetime | None = None, history: tuple[str, ...] = ()) -> AttemptFacts:
    start = start or at(9, 30)
    return AttemptFacts(outcome=outcome, dialog_outcome=dialog, started_at=start,
                        ended_at=start + dt.timedelta(seconds=40), attempts_total=total, attempts_today=today,
                        callback_at=callback_at, history=history)


@pytest.mark.parametrize(
    ("outcome", "dialog", "delay"),
    [
        ("no_answer", None, 7200),
        ("busy", None, 1800),
        ("congestion", None, 3600),
        ("failed", None, 3600),
        ("hung_up_early", "hung_up", 7200),
        ("interrupted", None, 600),
        ("answered", "no_response", 7200),
        ("answered", "callback_requested", 7200),
    ],
)
def test_retry_delay_per_outcome(outcome: str, dialog: str | None, delay: int) -> None:
    f = facts(outcome, dialog)
    d = decide(f, P, W)
    assert d.state == "pending" and d.final_outcome is None
    assert d.next_attempt_at == W.next_open(f.ended_at + dt.timedelta(seconds=delay))


def test_a_retry_that_falls_into_the_midday_rest_waits_for_the_afternoon() -> None:
    d = decide(facts("no_answer", start=at(11, 0)), P, W)  # 11:00:40 + 2 h = 13:00:40
    assert d.next_attempt_at == at(14, 0)


def test_a_retry_after_the_evening_window_goes_to_the_next_morning() -> None:
    d = decide(facts("busy", start=at(19, 50)), P, W)
    assert d.next_attempt_at == at(9, 0, day=24)


def test_the_per_day_limit_moves_the_next_attempt_to_the_next_day() -> None:
    d = decide(facts("busy", start=at(10, 0), total=3, today=3), P, W)
    assert d.state == "pending"
    assert d.next_attempt_at == at(9, 0, day=24)


def test_exhaustion_gives_an_unreachable_escalation_with_the_history() -> None:
    d = decide(facts("no_answer", total=5, today=2, history=("no_answer", "busy", "no_answer", "congestion")), P, W)
    assert d.state == "done" and d.final_outcome == "unreachable"
    assert [e.kind for e in d.escalations] == ["unreachable"]
    assert d.escalations[0].reasons == ("呼叫5次未完成筛查（无人接听×3，占线×1，关机/网络忙×1）",)


def test_callbacks_are_exhausted_like_other_retries() -> None:
    d = decide(facts("answered", "callback_requested", total=5, history=("no_answer",) * 4), P, W)
    assert d.final_outcome == "unreachable"
    assert "要求回电×1" in d.escalations[0].reasons[0]


def test_invalid_numbers_and_final_dialog_outcomes_are_never_retried() -> None:
    inv = decide(facts("invalid_number"), P, W)
    assert inv.state == "done" and inv.final_outcome == "invalid_number"
    assert inv.escalations[0].kind == "unreachable"
    assert decide(facts("answered", "completed"), P, W).final_outcome == "completed"
    opt = decide(facts("answered", "opted_out"), P, W)
    assert opt.final_outcome == "opted_out" and opt.do_not_call
    # one kind for opt-outs on every channel (an SMS 退订 is `opted_out` too); the reason names the channel
    assert [e.kind for e in opt.escalations] == ["opted_out"] and opt.escalations[0].reasons[0].startswith("【电话】")
    human = decide(facts("answered", "human_requested"), P, W)
    assert human.final_outcome == "human_requested" and human.escalations[0].kind == "human_requested"
    wrong = decide(facts("answered", "wrong_number"), P, W)
    assert wrong.final_outcome == "wrong_number" and wrong.escalations[0].kind == "unreachable"
    nu = decide(facts("answered", "not_understood"), P, W)
    assert nu.final_outcome == "not_understood" and nu.escalations[0].kind == "uncertain"


def test_callback_at_the_time_asked_for() -> None:
    wanted = at(15, 0)
    d = decide(facts("answered", "callback_requested", callback_at=wanted), P, W)
    assert d.next_attempt_at == wanted
    # asked for the midday rest: the call waits for the window
    d2 = decide(facts("answered", "callback_requested", callback_at=at(12, 30)), P, W)
    assert d2.next_attempt_at == at(14, 0)


def test_callback_time_from_the_nlu_hint() -> None:
    ended = at(10, 0)
    assert callback_time({"text": "下午三点", "time": "15:00", "day_offset": 0}, ended, W, 7200) == at(15, 0)
    assert callback_time({"text": "明天上午十点", "time": "10:00", "day_offset": 1}, ended, W, 7200) == at(10, 0, day=24)
    assert callback_time({"text": "半小时后", "delay_minutes": 30}, ended, W, 7200) == at(10, 30)
    assert callback_time({"text": "早上八点", "time": "08:00", "day_offset": 0}, ended, W, 7200) == at(8, 0, day=24)
    assert callback_time({"text": "晚点"}, ended, W, 7200) == at(12, 0)
    assert callback_time(None, ended, W, 7200) == at(12, 0)


def test_record_escalations_carry_the_script_reasons() -> None:
    esc = record_escalations(risk="flagged", reasons=["体温偏高（≥37.3℃）"], escalate_human=False, uncertain=[],
                             dialog_outcome="completed", callback_at=None)
    assert [(e.kind, e.reasons, e.priority) for e in esc] == [("flagged", ("体温偏高（≥37.3℃）",), 2)]
    high = record_escalations(risk="high", reasons=["接触过确诊或疑似病例"], escalate_human=True, uncertain=[],
                              dialog_outcome="completed", callback_at=None)
    assert [(e.kind, e.priority) for e in high] == [("high_risk", 1)]
    unsure = record_escalations(risk="none", reasons=["风险问题回答不确定，需人工回访"], escalate_human=True,
                                uncertain=["has_symptoms"], dialog_outcome="completed", callback_at=None)
    assert [e.kind for e in unsure] == ["uncertain"]
    cb = record_escalations(risk="none", reasons=[], escalate_human=False, uncertain=[],
                            dialog_outcome="callback_requested", callback_at=at(15, 0))
    assert [(e.kind, e.due_at) for e in cb] == [("callback_requested", at(15, 0))]
    assert record_escalations(risk="none", reasons=[], escalate_human=False, uncertain=[],
                              dialog_outcome="completed", callback_at=None) == []


def test_policy_from_mapping_rejects_bad_keys_and_values() -> None:
    assert RetryPolicy.from_mapping({"busy_s": 600}).busy_s == 600
    with pytest.raises(PolicyError, match="retry.bussy_s: unknown key"):
        RetryPolicy.from_mapping({"bussy_s": 600})
    with pytest.raises(PolicyError, match="retry.busy_s"):
        RetryPolicy.from_mapping({"busy_s": -1})
    with pytest.raises(PolicyError, match="must not exceed"):
        RetryPolicy.from_mapping({"max_attempts_per_day": 4, "max_attempts_total": 2})


def test_token_bucket_spaces_calls_evenly_without_bursts() -> None:
    b = TokenBucket(rate=2.0)
    t0 = at(9, 0)
    assert b.try_take(t0)
    assert not b.try_take(t0 + dt.timedelta(seconds=0.4))
    assert b.next_available(t0 + dt.timedelta(seconds=0.4)) == t0 + dt.timedelta(seconds=0.5)
    assert b.try_take(t0 + dt.timedelta(seconds=0.5))
    # a long idle period saves up only one token (burst 1): no burst after a pause
    later = t0 + dt.timedelta(minutes=10)
    assert b.try_take(later)
    assert not b.try_take(later)
    with pytest.raises(ValueError, match="positive"):
        TokenBucket(0)


def test_a_hang_up_after_suspecting_a_scam_is_a_refusal_never_retried() -> None:
    base = facts("hung_up_early", "hung_up")
    scam = decide(AttemptFacts(**{**{f: getattr(base, f) for f in base.__dataclass_fields__}, "scam_suspected": True}), P, W)
    assert (scam.state, scam.final_outcome, scam.do_not_call, scam.do_not_call_source) == (
        "done", "opted_out", True, "scam_hang_up")
    assert [e.kind for e in scam.escalations] == ["opted_out"] and "诈骗" in scam.escalations[0].reasons[0]
    plain = decide(base, P, W)  # an ordinary hang-up is retried
    assert plain.state == "pending" and not plain.do_not_call
    # a scam suspicion the robot cleared up, then a completed screening: nothing special
    done = decide(AttemptFacts(**{**{f: getattr(base, f) for f in base.__dataclass_fields__},
                                  "outcome": "answered", "dialog_outcome": "completed", "scam_suspected": True}), P, W)
    assert done.final_outcome == "completed" and not done.do_not_call
