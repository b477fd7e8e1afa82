"""When to call back, from phrases like 半小时后再打, 一个小时以后, 下午三点打过来, 明天上午, 晚上再说.

Pure, no clock: the result is relative (minutes from now, or a day offset plus a wall time) and the
caller resolves it against its own clock and calling windows. The shape is the dialog engine's
`callback_hint`: {"text": phrase, "delay_minutes": int | None, "day_offset": int, "time": "HH:MM" | None}.

Hours without a part of day are read the way people answer a daytime call: 1–6 → afternoon,
7–11 → morning, 12 → noon. A part of day alone gives its usual start (上午 09:00, 中午 12:00,
下午 14:00, 傍晚 18:00, 晚上 19:00), which a scheduler then snaps into the calling windows.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

_CN = {
    "零": 0,
    "〇": 0,
    "一": 1,
    "二": 2,
    "两": 2,
    "俩": 2,
    "三": 3,
    "四": 4,
    "五": 5,
    "六": 6,
    "七": 7,
    "八": 8,
    "九": 9,
}
_NUM = r"[0-9零〇一二两俩三四五六七八九十]+"

_DAY_WORDS = {
    "今天": 0,
    "今儿": 0,
    "今日": 0,
    "明天": 1,
    "明儿": 1,
    "明日": 1,
    "明早": 1,
    "明晚": 1,
    "后天": 2,
    "大后天": 3,
    "下周": 7,
    "下礼拜": 7,
    "下星期": 7,
    "下个星期": 7,
    "下个礼拜": 7,
    "改天": 1,
    "过两天": 2,
    "过几天": 2,
}
_PARTS = {
    "早上": ("am", "08:00"),
    "早晨": ("am", "08:00"),
    "一早": ("am", "08:00"),
    "明早": ("am", "08:00"),
    "上午": ("am", "09:00"),
    "中午": ("noon", "12:00"),
    "下午": ("pm", "14:00"),
    "午后": ("pm", "14:00"),
    "傍晚": ("pm", "18:00"),
    "晚上": ("eve", "19:00"),
    "晚些": ("eve", None),
    "明晚": ("eve", "19:00"),
    "夜里": ("eve", "19:00"),
    "今晚": ("eve", "19:00"),
}

_DAY_RE = "|".join(sorted(_DAY_WORDS, key=len, reverse=True))
_PART_RE = "|".join(sorted(_PARTS, key=len, reverse=True))
_CLOCK_RE = re.compile(
    rf"(?P<h>{_NUM})\s*(?:点|點|时|:)\s*(?:(?P<half>半)|(?P<q>[一三两])刻|(?P<m>{_NUM})(?:分)?)?(?:钟)?"
)
_DELAY_RE = re.compile(
    rf"(?:过|等)?(?:(?P<n>{_NUM})个?(?P<half2>半)?|(?P<half>半)个?)\s*"
    r"(?P<unit>小时|钟头|分钟|分|钟)"
    r"(?:以后|之后|后|过后|左右)?"
)
_VAGUE_RE = re.compile(r"一会儿?|一下|待会儿?|等会儿?|过会儿?|晚点|晚一点|晚些|稍后|回头|等下|过一会儿?|一阵")
_DAY_TOKEN_RE = re.compile(_DAY_RE)
_PART_TOKEN_RE = re.compile(_PART_RE)
# Everything that may surround a time phrase in a reply that is only a time ("明天上午吧").
_TIME_ONLY_REST_RE = re.compile(
    r"[，,。.!！?？~～…\s]|再说|再打|打过来|打来|再联系|联系|再问|再聊|回电|再|吧|啊|呀|嘛|呢|哦|嗯|那个|就|的|时候|候|打|行|可以|好|你|我|们|给|来|以后|之后|后|那|好吗|行吗|可以吗"
)


def _cn_int(s: str) -> int | None:
    """Small integers in digits or Chinese: 3, 三, 十五, 二十, 两."""
    if s.isdigit():
        return int(s)
    if "十" in s:
        left, _, right = s.partition("十")
        if len(left) > 1 or len(right) > 1:
            return None
        tens = _CN.get(left, -1) if left else 1
        ones = _CN.get(right, -1) if right else 0
        if tens < 0 or ones < 0:
            return None
        return tens * 10 + ones
    if len(s) == 1 and s in _CN:
        return _CN[s]
    if all(c in _CN for c in s) and len(s) == 2:  # 两三 (个小时): take the larger
        return max(_CN[s[0]], _CN[s[1]])
    return None


def _clock(m: re.Match[str], part: str | None) -> str | None:
    hour = _cn_int(m.group("h"))
    if hour is None or hour > 24:
        return None
    minute = 0
    if m.group("half"):
        minute = 30
    elif m.group("q"):
        minute = {"一": 15, "两": 30, "三": 45}[m.group("q")]
    elif m.group("m"):
        got = _cn_int(m.group("m"))
        if got is None or got > 59:
            return None
        minute = got
    if hour < 12:
        if part in ("pm", "eve"):
            hour += 12
        elif part is None and 1 <= hour <= 6:
            hour += 12
    elif hour == 12 and part == "am":
        hour = 0
    return f"{hour:02d}:{minute:02d}"


def _normalize(text: str) -> str:
    t = unicodedata.normalize("NFKC", text).lower()
    return "".join(t.split())


def parse_callback_time(text: str) -> dict[str, Any] | None:
    """The callback time a reply asks for, or None when it names none.

    >>> parse_callback_time("下午三点打过来")
    {'text': '下午三点', 'delay_minutes': None, 'day_offset': 0, 'time': '15:00'}
    """
    t = _normalize(text)
    spans: list[tuple[int, int]] = []
    delay: int | None = None
    day_offset = 0
    time: str | None = None
    part: str | None = None

    dm = _DELAY_RE.search(t)
    if dm:
        n = 0.0
        if dm.group("n"):
            got = _cn_int(dm.group("n"))
            if got is not None:
                n = float(got)
        if dm.group("half") or dm.group("half2"):
            n += 0.5
        if n > 0:
            unit = dm.group("unit")
            delay = int(round(n * 60)) if unit in ("小时", "钟头") else int(round(n))
            if unit == "钟" and n <= 12 and not dm.group("half"):  # 两个钟 = two hours (southern usage)
                delay = int(round(n * 60))
            spans.append(dm.span())

    day = _DAY_TOKEN_RE.search(t)
    if day:
        day_offset = _DAY_WORDS[day.group()]
        spans.append(day.span())
    pm = _PART_TOKEN_RE.search(t)
    if pm:
        part, time = _PARTS[pm.group()]
        spans.append(pm.span())
        if pm.group() in ("明早", "明晚"):
            day_offset = max(day_offset, 1)
    cm = None
    for cand in _CLOCK_RE.finditer(t):
        # "一点" in "晚一点" or "有一点" is not a clock time unless a part of day or 钟 backs it.
        h = cand.group("h")
        if h in ("一", "1") and not (pm or "钟" in cand.group()):
            continue
        cm = cand
        break
    if cm and delay is None:
        clock = _clock(cm, part)
        if clock is not None:
            time = clock
            spans.append(cm.span())
    if not spans:
        vm = _VAGUE_RE.search(t)
        if vm is None:
            return None
        spans.append(vm.span())
    if delay is not None and day is None:
        time = None
    start = min(s for s, _ in spans)
    end = max(e for _, e in spans)
    return {"text": t[start:end], "delay_minutes": delay, "day_offset": day_offset, "time": time}


def is_time_only(text: str) -> bool:
    """True when a reply is nothing but a callback time ("明天上午吧", "晚上再说", "半小时后")."""
    t = _normalize(text)
    if parse_callback_time(t) is None:
        return False
    rest = _DELAY_RE.sub("", t)
    rest = _DAY_TOKEN_RE.sub("", rest)
    rest = _PART_TOKEN_RE.sub("", rest)
    rest = _VAGUE_RE.sub("", rest)
    rest = _CLOCK_RE.sub("", rest)
    rest = _TIME_ONLY_REST_RE.sub("", rest)
    return rest == ""
