"""How an Asterisk originate ended: `OriginateResponse` Reason + the `Hangup` event's Q.850 cause.

Asterisk reports a failed originate in two pieces (main/manager.c `fast_originate`, main/pbx.c
`pbx_dial_reason`): the `OriginateResponse` event's `Reason` (the AST_CONTROL_* value the dial ended
with: 0 failure, 1 hung up, 3 ringing/no answer, 4 answered, 5 busy, 8 congestion) and, when a channel
was created, the `Hangup` event of that channel (`Uniqueid` = our ChannelId) with `Cause` (Q.850, from
the SIP status via res_pjsip's `ast_sip_hangup_sip2cause`, e.g. 404 -> 1, 486 -> 17, 480 -> 19,
503 -> 34). The cause refines the reason: Asterisk folds 21/27/34/38/41/42 into Reason 8, and 1/28 into
Reason 0.

The result keeps the cause in words a hotline supervisor understands (空号, 关机或不在服务区, 用户忙,
无人接听 …) for exports, and says whether the ending is the *resident's* (counts as an attempt) or a
fault of the telephone system (trunk congestion, SIP 503, a barred trunk): `fault` is None, "transient"
(retry soon, pause the trunk) or "permanent" (the trunk or its configuration is wrong).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dialer.base import CallOutcome

Fault = Literal["transient", "permanent"] | None

# OriginateResponse Reason values (include/asterisk/frame.h, enum ast_control_frame_type).
REASON_FAILURE = 0
REASON_HANGUP = 1
REASON_RINGING = 3
REASON_ANSWERED = 4
REASON_BUSY = 5
REASON_CONGESTION = 8


@dataclass(frozen=True, slots=True)
class CallEnd:
    """One classified ending."""

    outcome: CallOutcome
    words: str  # Simplified Chinese, for supervisors and exports
    cause: int | None  # Q.850 cause code, when Asterisk gave one
    reason: int | None  # OriginateResponse Reason, when it came
    fault: Fault = None

    @property
    def system_fault(self) -> bool:
        return self.fault is not None

    @property
    def text(self) -> str:
        """The text stored as the attempt's cause: words plus the codes behind them."""
        codes = []
        if self.cause is not None:
            codes.append(f"Q.850 {self.cause}")
        if self.reason is not None:
            codes.append(f"Reason {self.reason}")
        return f"{self.words}（{'，'.join(codes)}）" if codes else self.words


# cause -> (outcome, words, fault). Codes from include/asterisk/causes.h.
_CAUSES: dict[int, tuple[CallOutcome, str, Fault]] = {
    1: (CallOutcome.invalid_number, "空号", None),
    2: (CallOutcome.failed, "无法接通（无路由）", "transient"),
    3: (CallOutcome.failed, "无法接通（无路由）", "transient"),
    5: (CallOutcome.invalid_number, "号码错误（前缀有误）", None),
    6: (CallOutcome.failed, "线路不可用", "transient"),
    14: (CallOutcome.invalid_number, "号码已携号转网，无法接通", None),
    16: (CallOutcome.no_answer, "未接通即挂断", None),
    17: (CallOutcome.busy, "用户忙", None),
    18: (CallOutcome.no_answer, "无人接听", None),
    19: (CallOutcome.no_answer, "无人接听", None),
    20: (CallOutcome.congestion, "关机或不在服务区", None),
    21: (CallOutcome.congestion, "呼叫被拒绝（用户拒接或中继拒绝）", "transient"),
    22: (CallOutcome.invalid_number, "号码已改号", None),
    23: (CallOutcome.failed, "呼叫被转移", None),
    26: (CallOutcome.no_answer, "已在别处接听", None),
    27: (CallOutcome.congestion, "关机或不在服务区（终端故障）", None),
    28: (CallOutcome.invalid_number, "号码格式错误", None),
    29: (CallOutcome.failed, "业务被拒绝", "transient"),
    31: (CallOutcome.failed, "呼叫失败（原因未说明）", "transient"),
    34: (CallOutcome.congestion, "中继线路忙（网络拥塞）", "transient"),
    38: (CallOutcome.congestion, "网络故障", "transient"),
    41: (CallOutcome.congestion, "网络临时故障", "transient"),
    42: (CallOutcome.congestion, "交换机拥塞", "transient"),
    44: (CallOutcome.congestion, "请求的线路不可用", "transient"),
    50: (CallOutcome.failed, "中继未开通该业务", "permanent"),
    52: (CallOutcome.failed, "中继禁止呼出", "permanent"),
    54: (CallOutcome.failed, "被叫禁止呼入", None),
    57: (CallOutcome.failed, "中继无权使用该承载能力", "permanent"),
    58: (CallOutcome.failed, "编解码不匹配", "permanent"),
    65: (CallOutcome.failed, "编解码不支持", "permanent"),
    66: (CallOutcome.failed, "通道类型未实现（检查中继配置）", "permanent"),
    88: (CallOutcome.failed, "目的地不兼容", "transient"),
    102: (CallOutcome.congestion, "网络超时无响应", "transient"),
    111: (CallOutcome.failed, "信令协议错误", "transient"),
    127: (CallOutcome.failed, "网间互通失败", "transient"),
}

# A reason without a (known) cause.
_REASONS: dict[int, tuple[CallOutcome, str, Fault]] = {
    REASON_FAILURE: (CallOutcome.failed, "呼叫失败（原因不明）", "transient"),
    REASON_HANGUP: (CallOutcome.failed, "呼叫被挂断（未接通）", "transient"),
    REASON_RINGING: (CallOutcome.no_answer, "无人接听", None),
    REASON_BUSY: (CallOutcome.busy, "用户忙", None),
    REASON_CONGESTION: (CallOutcome.congestion, "网络忙", "transient"),
}


def parse_int(value: object) -> int | None:
    """An AMI header as an int: None for '', '<unknown>', garbage or a repeated header."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if not isinstance(value, str):
        return None
    v = value.strip()
    if not v or len(v) > 6 or not v.isascii() or not v.lstrip("-").isdigit():
        return None
    return int(v)


def classify(reason: int | None, cause: int | None) -> CallEnd:
    """Map an originate's Reason and the dialed channel's hang-up cause to our outcome.

    Reason 4 (answered) always wins. Reason 5 is busy and 3 is no answer whatever the cause says
    (Asterisk derived them from it). Otherwise the cause, when known, decides: it carries the detail
    that Reason 0/8 fold together (空号 vs 中继故障, 关机 vs 网络拥塞).
    """
    if reason == REASON_ANSWERED:
        return CallEnd(CallOutcome.answered, "已接通", cause, reason)
    if reason == REASON_BUSY:
        return CallEnd(CallOutcome.busy, "用户忙", cause, reason)
    if reason == REASON_RINGING and cause not in _CAUSES:
        return CallEnd(CallOutcome.no_answer, "无人接听", cause, reason)
    if reason == REASON_RINGING and cause is not None and _CAUSES[cause][0] is not CallOutcome.no_answer:
        # Rang, then the network ended it (e.g. a timer): the resident just did not answer.
        return CallEnd(CallOutcome.no_answer, "无人接听", cause, reason)
    if cause is not None and cause in _CAUSES and cause != 16:
        outcome, words, fault = _CAUSES[cause]
        return CallEnd(outcome, words, cause, reason, fault)
    if cause == 16 and reason in (None, REASON_FAILURE, REASON_HANGUP, REASON_RINGING):
        outcome, words, fault = _CAUSES[16]
        return CallEnd(outcome, words, cause, reason, fault)
    if reason is not None and reason in _REASONS:
        outcome, words, fault = _REASONS[reason]
        return CallEnd(outcome, words, cause, reason, fault)
    return CallEnd(CallOutcome.failed, "呼叫失败（原因不明）", cause, reason, "transient")


def cause_words(cause: int | None) -> str:
    """The supervisor's words for a Q.850 cause alone (e.g. a hang-up after the call was up)."""
    if cause is None:
        return "原因不明"
    if cause == 16:
        return "正常挂机"
    entry = _CAUSES.get(cause)
    return entry[1] if entry else f"其他原因（Q.850 {cause}）"


OUR_TIMEOUT = CallEnd(CallOutcome.no_answer, "无人接听（超过振铃时间）", None, None)
