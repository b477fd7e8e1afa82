"""Body temperatures in spoken Chinese and in digits: 三十七度二, 37度2, 三十八点五, 37.5, 卅七度半, 三七度二.

Pure functions, no I/O. The input may be raw (full-width digits, spaces from Vosk between words) or
already normalized by the built-in NLU; normalizing twice is harmless.

How a reply is read:
1. NFKC (full-width digits and punctuation become ASCII), lower case, whitespace removed.
2. Spoken forms are made regular: 卅/廿, financial numerals (叁拾柒), 摄氏度/℃/° → 度, homophones of
   度 and 点 that ASR produces between numerals (三十七都五, 三十七店五).
3. Every run of Chinese numerals becomes Arabic digits with our own small converter (三十七 → 37,
   三七 → 37, 三十七八 → the range 37~38); runs with 百/千 go through cn2an. 36点几 is about 36.5.
4. One regex finds the candidates (37.5 / 37度5 / 37度半 / 37~38度 / 37); the last plausible one wins
   (a reply like 昨天三十八度今天三十七度二 means the latest reading).
5. Plausible is 34–43 °C. A number outside that range is reported as implausible, never clamped.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

MIN_PLAUSIBLE_C = 34.0
MAX_PLAUSIBLE_C = 43.0


@dataclass(frozen=True, slots=True)
class Temperature:
    """A temperature found in a reply.

    value: °C, rounded to two decimals.
    approximate: the reply hedged (三十七度多, 大概, 左右, 三十七八度).
    plausible: within 34–43 °C.
    span: the text that was read (after normalization), for logs and records.
    """

    value: float
    approximate: bool
    plausible: bool
    span: str
    vague: bool = False  # not one value: 三十七度多 / 三十七度几 / 三十七八度 / a range (三十七到三十八度)


_CN_DIGITS = {
    "零": 0,
    "〇": 0,
    "○": 0,
    "洞": 0,
    "一": 1,
    "幺": 1,
    "壹": 1,
    "二": 2,
    "两": 2,
    "俩": 2,
    "贰": 2,
    "三": 3,
    "叁": 3,
    "仨": 3,
    "四": 4,
    "肆": 4,
    "五": 5,
    "伍": 5,
    "六": 6,
    "陆": 6,
    "七": 7,
    "柒": 7,
    "八": 8,
    "捌": 8,
    "九": 9,
    "玖": 9,
}
_CN_NUM_CHARS = "".join(_CN_DIGITS) + "十拾百佰千仟"
_CN_RUN_RE = re.compile(f"[{_CN_NUM_CHARS}]+")

# Pre-normalization substitutions, applied in one pass.
_SUBS = {
    "摄氏度": "度",
    "摄氏": "度",
    "℃": "度",
    "°c": "度",
    "°": "度",
    "度c": "度",
    "卅": "三十",
    "廿": "二十",
    "拾": "十",
    "點": "点",
}
_SUBS_RE = re.compile("|".join(sorted((re.escape(k) for k in _SUBS), key=len, reverse=True)))

_NUMERAL = f"0-9{_CN_NUM_CHARS}"
# ASR homophones of 度 (dù) and 点 (diǎn) between numerals.
_DU_HOMOPHONE_RE = re.compile(f"(?<=[{_NUMERAL}])[都读渡杜肚毒](?=[{_NUMERAL}半多几]|$|[^\u4e00-\u9fff])")
_DIAN_HOMOPHONE_RE = re.compile(f"(?<=[{_NUMERAL}])[店典电垫](?=[{_NUMERAL}])")
# 三十7 (ASR or typing mixing scripts): the tens in words, the units in digits.
_TENS_THEN_DIGIT_RE = re.compile(r"([一二三四五六七八九])十(?=[0-9])")
# A decimal point written as 。 or 点 or ， between two digits.
_DECIMAL_RE = re.compile(r"(?<=\d)[点。,，](?=\d)")

# 36到37度 / 36至37: a range, read as its middle.
_RANGE_RE = re.compile(r"(?<![\d.])(\d{2})度?(?:到|至|-)(\d{2})(?=度|$|[^\d.])")
_TEMP_RE = re.compile(
    r"(?P<int>\d{1,3})"
    r"(?:~(?P<int2>\d{1,3}))?"
    r"(?:"
    r"\.(?P<dec>\d{1,2})"
    r"|度(?P<frac>半|\d{1,2}(?:~\d)?)?"
    r")?"
    r"(?P<deg>度)?"
    r"(?P<more>点?多|点?几)?"
)
_APPROX_RE = re.compile(r"左右|上下|差不多|大概|大约|好像|可能|应该|估计|也许|吧|多|不到|出头|将近|接近|快")
_FAHRENHEIT_RE = re.compile(r"华氏|fahrenheit|°f|(?<=\d)f\b")


def _cn_run_to_arabic(run: str) -> str:
    """三十七 → 37, 三七 → 37, 五 → 5, 三十七八 → 37~38, 一百零二 → 102 (via cn2an)."""
    if any(c in run for c in "百佰千仟"):
        import cn2an  # imported on first use: it costs ~150 ms of `outreach nlu` startup

        try:
            return str(cn2an.cn2an(run.replace("佰", "百").replace("仟", "千"), "smart"))
        except ValueError:
            return run
    if "十" in run:
        left, _, right = run.partition("十")
        if "十" in right or len(left) > 1:
            return run
        tens = _CN_DIGITS[left] if left else 1
        if not right:
            return str(tens * 10)
        if len(right) == 1:
            return str(tens * 10 + _CN_DIGITS[right])
        if len(right) == 2:
            a, b = _CN_DIGITS[right[0]], _CN_DIGITS[right[1]]
            if b == a + 1:  # 三十七八 = 37 to 38
                return f"{tens * 10 + a}~{tens * 10 + b}"
        return run
    digits = "".join(str(_CN_DIGITS[c]) for c in run)
    # Colloquial 三七五 = 37.5: three bare digits whose first two are a body temperature.
    if len(digits) == 3 and 34 <= int(digits[:2]) <= 42:
        return f"{digits[:2]}.{digits[2]}"
    return digits


def normalize_numbers(text: str) -> str:
    """The text with spoken numerals as digits, decimal marks as '.', and 度 spelled uniformly."""
    t = unicodedata.normalize("NFKC", text).lower()
    t = "".join(t.split())
    t = _SUBS_RE.sub(lambda m: _SUBS[m.group()], t)
    t = _TENS_THEN_DIGIT_RE.sub(lambda m: str(_CN_DIGITS[m.group(1)]), t)
    t = _DU_HOMOPHONE_RE.sub("度", t)
    t = _DIAN_HOMOPHONE_RE.sub("点", t)
    t = _CN_RUN_RE.sub(lambda m: _cn_run_to_arabic(m.group()), t)
    t = _DECIMAL_RE.sub(".", t)
    return _RANGE_RE.sub(r"\1~\2", t)


def _candidate(m: re.Match[str]) -> tuple[float, bool, bool] | None:
    """(value, approximate, vague) of one match."""
    whole = int(m.group("int"))
    int2 = m.group("int2")
    dec = m.group("dec")
    frac = m.group("frac")
    approximate = bool(m.group("more"))
    if int2 is not None:
        value = (whole + int(int2)) / 2
        return value, True, True
    if dec is not None:
        return whole + int(dec) / (10 ** len(dec)), approximate, approximate
    if frac is not None:
        if frac == "半":
            return whole + 0.5, approximate, approximate
        if "~" in frac:  # 37度2~3: between 37.2 and 37.3
            a, b = frac.split("~")
            return whole + (int(a) + int(b)) / 20, True, False
        if len(frac) == 2 and int(frac[1]) == int(frac[0]) + 1:  # 三十七度二三 = 37.2 to 37.3
            return whole + (int(frac[0]) + int(frac[1])) / 20, True, False
        return whole + int(frac) / (10 ** len(frac)), approximate, approximate
    if approximate:  # 37度多 / 36点几: somewhere above 37
        return whole + 0.5, True, True
    return float(whole), approximate, False


def find_temperatures(text: str) -> list[Temperature]:
    """Every temperature reading a reply states, in order (plausible or not)."""
    t = normalize_numbers(text)
    if not any(c.isdigit() for c in t):
        return []
    out: list[Temperature] = []
    fahrenheit = _FAHRENHEIT_RE.search(t) is not None
    hedged = _APPROX_RE.search(t) is not None
    for m in _TEMP_RE.finditer(t):
        got = _candidate(m)
        if got is None:
            continue
        value, approximate, vague = got
        if fahrenheit and 93.0 <= value <= 110.0:
            value = (value - 32.0) * 5.0 / 9.0
        value = round(value, 2)
        plausible = MIN_PLAUSIBLE_C <= value <= MAX_PLAUSIBLE_C
        out.append(Temperature(value, approximate or hedged, plausible, m.group(), vague))
    return out


def find_temperature(text: str) -> Temperature | None:
    """The temperature a reply states, or None when it names no number at all.

    The last plausible reading wins; when no reading is plausible, the last number is returned with
    `plausible=False` so the caller can say "unsure" and still log what was heard.
    """
    found = find_temperatures(text)
    plausible = [t for t in found if t.plausible]
    if plausible:
        return plausible[-1]
    return found[-1] if found else None


def parse_key_temperature(keys: str) -> float | None:
    """Keys typed for a temperature (without the closing #) -> °C, or None if implausible.

    `37*5` -> 37.5; `375` -> 37.5 (three digits: the last is the tenth); `37` -> 37.0. The engine reads
    real key presses with it and the NLU reads key presses that arrived as text (37*5#), so both give
    the same value.
    """
    if keys.count("*") > 1 or not keys.replace("*", "").isdigit():
        return None
    if "*" in keys:
        whole, _, frac = keys.partition("*")
        if not whole or len(frac) > 1:
            return None
        value = float(f"{whole}.{frac or 0}")
    elif len(keys) == 3:
        value = int(keys) / 10
    elif len(keys) == 2:
        value = float(keys)
    else:
        return None
    return value if MIN_PLAUSIBLE_C <= value <= MAX_PLAUSIBLE_C else None


def parse_temperature(text: str) -> float | None:
    """The plausible temperature in °C a reply states, else None."""
    temp = find_temperature(text)
    return temp.value if temp is not None and temp.plausible else None
