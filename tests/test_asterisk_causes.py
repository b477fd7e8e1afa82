"""Outcome mapping of Asterisk originates: OriginateResponse Reason + Hangup Q.850 cause -> our outcome."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from dialer.asterisk.causes import CallEnd, cause_words, classify, parse_int
from dialer.base import CallOutcome


def test_the_common_endings_in_supervisor_words() -> None:
    cases = {
        (4, None): (CallOutcome.answered, "已接通", None),
        (5, 17): (CallOutcome.busy, "用户忙", None),
        (3, None): (CallOutcome.no_answer, "无人接听", None),
        (3, 19): (CallOutcome.no_answer, "无人接听", None),
        (0, 1): (CallOutcome.invalid_number, "空号", None),  # SIP 404
        (0, 28): (CallOutcome.invalid_number, "号码格式错误", None),  # SIP 484
        (0, 20): (CallOutcome.congestion, "关机或不在服务区", None),
        (8, 27): (CallOutcome.congestion, "关机或不在服务区（终端故障）", None),
        (8, 34): (CallOutcome.congestion, "中继线路忙（网络拥塞）", "transient"),  # SIP 503
        (8, 42): (CallOutcome.congestion, "交换机拥塞", "transient"),
        (0, 52): (CallOutcome.failed, "中继禁止呼出", "permanent"),
        (0, None): (CallOutcome.failed, "呼叫失败（原因不明）", "transient"),
        (8, None): (CallOutcome.congestion, "网络忙", "transient"),
    }
    for (reason, cause), (outcome, words, fault) in cases.items():
        end = classify(reason, cause)
        assert (end.outcome, end.words, end.fault) == (outcome, words, fault), (reason, cause, end)


def test_reason_wins_where_asterisk_derived_it_and_the_text_keeps_the_codes() -> None:
    assert classify(4, 16).outcome is CallOutcome.answered
    assert classify(5, 0).outcome is CallOutcome.busy  # busy without a cause is still busy
    assert classify(3, 34).outcome is CallOutcome.no_answer  # it rang: the resident did not answer
    end = classify(5, 17)
    assert end.text == "用户忙（Q.850 17，Reason 5）"
    assert classify(None, 1).text == "空号（Q.850 1）"
    assert not classify(0, 1).system_fault and classify(8, 34).system_fault


def test_header_values_parse_defensively() -> None:
    assert parse_int("17") == 17
    assert parse_int(" 4 ") == 4
    for bad in ("", "<unknown>", "abc", ["1", "2"], None, "1" * 40, "４"):
        assert parse_int(bad) is None
    assert cause_words(16) == "正常挂机"
    assert cause_words(17) == "用户忙"
    assert cause_words(999) == "其他原因（Q.850 999）"
    assert cause_words(None) == "原因不明"


@given(st.one_of(st.none(), st.integers(-5, 300)), st.one_of(st.none(), st.integers(-5, 300)))
def test_every_reason_and_cause_gets_an_outcome_and_chinese_words(reason: int | None, cause: int | None) -> None:
    end = classify(reason, cause)
    assert isinstance(end, CallEnd)
    assert end.outcome in set(CallOutcome)
    assert end.words and any("\u4e00" <= ch <= "\u9fff" for ch in end.words)
    assert end.fault in (None, "transient", "permanent")
    assert (end.outcome is CallOutcome.answered) == (reason == 4)


@given(st.text(max_size=12))
def test_parse_int_never_raises(text: str) -> None:
    v = parse_int(text)
    assert v is None or isinstance(v, int)
