"""Offline Mandarin TTS: espeak-ng's `cmn-latn-pinyin` voice fed with pinyin from pypinyin.

Why not the `cmn` voice: on this Debian release it reads tone digits aloud in English. The
`cmn-latn-pinyin` voice reads `ni3 hao3` with proper tones, so the text is turned into pinyin first:

1. `normalize_text`: numbers the Chinese way (37.3 -> 三十七点三, 14:30 -> 十四点三十分, 50% -> 百分之五十,
   2022年 -> 二零二二年, phone numbers such as 12320 digit by digit with 1 read 幺), ℃ -> 度.
2. `to_pinyin`: pypinyin `Style.TONE3` with its phrase dictionary (polyphones: 咳嗽 -> ke2 sou4), tone sandhi
   for 一/不, neutral tone as 5 (espeak reads `ma5` as neutral; a syllable without a digit would be tone 1),
   Chinese punctuation -> ASCII punctuation, which espeak turns into pauses.
3. `espeak-ng --stdout` runs as an async subprocess; its 22.05 kHz WAV goes through `tts.audio.to_telephone`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import shutil
import subprocess

import cn2an
from pypinyin import Style, lazy_pinyin

from tts.audio import AudioFormatError, to_telephone, wav_to_mono
from tts.base import TtsError
from tts.names import name_readings

log = logging.getLogger(__name__)

ESPEAK_BINARY = "espeak-ng"
DEFAULT_VOICE = "cmn-latn-pinyin"
BASE_SPEED_WPM = 150  # espeak's default is 175; a little slower is easier on the phone and for the elderly
BASE_PITCH = 50  # espeak's 0..99 scale
TIMEOUT_S = 30.0
# Bump when normalize_text/to_pinyin change in a way that changes the audio: the cache key includes it.
NORMALIZER_VERSION = 3

_DIGITS = "零一二三四五六七八九"
_PHONE_DIGITS = "零幺二三四五六七八九"
# measure words after which a lone 2 is read 两 (两天, 两次), unless preceded by 第. Not 月: "2月" is
# February (二月); two months is "2个月" (两个月).
_LIANG_MEASURES = "个次天周岁位人针剂遍年种名户口件杯顿"
# Readings pypinyin's phrase dictionary gets wrong in prompts like ours (Han text -> TONE3 syllables).
_PHRASE_FIXES: dict[str, tuple[str, ...]] = {
    "当小数点": ("dang4", "xiao3", "shu4", "dian3"),  # 用星号当小数点: dàng (serve as), not dāng
    "舒服": ("shu1", "fu5"),  # shūfu, neutral tone
    "大夫": ("dai4", "fu5"),  # the doctor: dàifu
}

_RATE_RE = re.compile(r"^([+-]\d{1,3})%$")
_PITCH_RE = re.compile(r"^([+-]\d{1,3})Hz$")

_PUNCT = {
    "，": ",",
    "、": ",",
    "；": ";",
    "：": ",",
    "。": ".",
    "？": "?",
    "！": "!",
    "…": ".",
    "（": ",",
    "）": ",",
    "(": ",",
    ")": ",",
    "—": ",",
    "-": ",",
    "~": ",",
    "～": ",",
    ",": ",",
    ".": ".",
    "?": "?",
    "!": "!",
    ";": ";",
    ":": ",",
}
_YI_DIGIT = "\ue0b1"  # private-use marker: the digit 1 read as a digit (yi1)
_SYLLABLE_RE = re.compile(r"^[a-zü]+[1-5]$")
_HAN_SPLIT_RE = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]|[^\u3400-\u4dbf\u4e00-\u9fff]+")


# ----------------------------------------------------------------------------- text -> pinyin (pure)


def _digits(s: str, phone: bool) -> str:
    table = _PHONE_DIGITS if phone else _DIGITS
    return "".join(table[int(c)] for c in s)


def _number(s: str) -> str:
    """'37.3' -> 三十七点三, '10' -> 十, '05' -> 零五 (a leading zero means read digit by digit)."""
    if len(s) > 1 and s[0] == "0" and "." not in s:
        return _digits(s, phone=False)
    return str(cn2an.an2cn(s, "low"))


def _time(m: re.Match[str]) -> str:
    hour, minute = int(m.group(1)), int(m.group(2))
    if hour > 24 or minute > 59:
        return m.group(0).replace(":", "比").replace("：", "比")
    out = _number(str(hour)) + "点"
    if minute == 0:
        return out
    if minute < 10:
        return out + "零" + _DIGITS[minute] + "分"
    return out + _number(str(minute)) + "分"


def _plain_number(m: re.Match[str]) -> str:
    s = m.group(0).replace(",", "")
    start, end = m.start(), m.end()
    text = m.string
    after = text[end : end + 1]
    before = text[start - 1 : start] if start else ""
    if "." not in s and after == "年" and len(s) == 4:
        return _digits(s, phone=False)  # years: 二零二二年
    if "." not in s and "," not in m.group(0) and (len(s) >= 5 or (len(s) >= 3 and s[0] == "0")):
        return _digits(s, phone=True)  # phone numbers, hotlines, codes: 幺二三二零
    if s == "2" and after and after in _LIANG_MEASURES and before != "第":
        return "两"
    if s == "1" and not (after and after in _LIANG_MEASURES):
        return _YI_DIGIT  # a digit read as such (按1, 1代表是): yi1, no tone sandhi
    return _number(s)


def normalize_text(text: str) -> str:
    """Rewrite digits and symbols into the Chinese words a speaker would say. Pure.

    >>> normalize_text("体温37.3℃")
    '体温三十七点三度'
    """
    return _normalize(text).replace(_YI_DIGIT, "一")


def _normalize(text: str) -> str:
    t = text.replace("℃", "度").replace("°C", "度").replace("°", "度")
    t = re.sub(r"(\d{1,2})[:：](\d{2})(?!\d)", _time, t)
    t = re.sub(r"(\d+(?:\.\d+)?)\s*[%％]", lambda m: "百分之" + _number(m.group(1)), t)
    t = re.sub(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?", _plain_number, t)
    return t


def _yi_sandhi(text: str, items: list[str]) -> list[str]:
    """一 before tone 4 -> yi2, before tones 1-3 -> yi4; not after 第/十 or in digit strings.

    pypinyin's own sandhi misses words from its phrase dictionary (一样, 一天); this completes it.
    """
    tokens = _HAN_SPLIT_RE.findall(text)
    if len(tokens) != len(items):
        return items
    out = list(items)
    for i, tok in enumerate(tokens):
        if tok != "一" or items[i] != "yi1" or i + 1 >= len(tokens):
            continue
        prev = tokens[i - 1] if i else ""
        nxt = tokens[i + 1]
        if prev in ("第", "十", "初", "百", "千", "万", "零", "点") or (prev and prev in _DIGITS) or (nxt in _DIGITS or nxt in _PHONE_DIGITS):
            continue
        tone = items[i + 1][-1:]
        if tone == "4":
            out[i] = "yi2"
        elif tone in ("1", "2", "3"):
            out[i] = "yi4"
    return out


def _phrase_fixes(text: str, items: list[str]) -> list[str]:
    """Replace pypinyin's readings of the phrases in `_PHRASE_FIXES` (items align with Han characters)."""
    tokens = _HAN_SPLIT_RE.findall(text)
    if len(tokens) != len(items):
        return items
    starts: dict[int, int] = {}  # character offset -> token index
    pos = 0
    for i, tok in enumerate(tokens):
        starts[pos] = i
        pos += len(tok)
    out = list(items)
    for phrase, syllables in _PHRASE_FIXES.items():
        at = text.find(phrase)
        while at >= 0:
            k = starts.get(at)
            if k is not None and tokens[k : k + len(phrase)] == list(phrase):
                out[k : k + len(phrase)] = syllables
            at = text.find(phrase, at + 1)
    return out


def _surnames(text: str, items: list[str]) -> list[str]:
    """Contact names in the text (tts.names.register_name) get their surname's reading (曾 zeng1)."""
    readings = name_readings(text)
    if not readings:
        return items
    tokens = _HAN_SPLIT_RE.findall(text)
    if len(tokens) != len(items):
        return items
    starts: dict[int, int] = {}
    pos = 0
    for i, tok in enumerate(tokens):
        starts[pos] = i
        pos += len(tok)
    out = list(items)
    for at, syllables in readings:
        k = starts.get(at)
        if k is not None and k + len(syllables) <= len(out):
            out[k : k + len(syllables)] = syllables
    return out


def to_pinyin(text: str) -> str:
    """Chinese text -> space-separated TONE3 pinyin with ASCII punctuation, ready for cmn-latn-pinyin. Pure.

    >>> to_pinyin("有没有咳嗽？")
    'you3 mei2 you3 ke2 sou4?'
    """
    normalized = _normalize(text)
    items = lazy_pinyin(
        normalized, style=Style.TONE3, neutral_tone_with_five=True, tone_sandhi=True, errors="default"
    )
    items = _yi_sandhi(normalized, _surnames(normalized, _phrase_fixes(normalized, items)))
    words: list[str] = []
    for item in items:
        item = item.strip()
        if not item:
            continue
        if _SYLLABLE_RE.match(item):
            words.append(item)
            continue
        for ch in item:
            if ch == _YI_DIGIT:
                words.append("yi1")
            elif ch in _PUNCT:
                mark = _PUNCT[ch]
                if words and words[-1][-1] not in ",.;?!":
                    words[-1] += mark
            elif ch.isascii() and ch.isalpha():
                if words and words[-1].isalpha() and words[-1].islower() and not words[-1][-1].isdigit():
                    words[-1] += ch.lower()
                else:
                    words.append(ch.lower())
            # anything else (symbols, emoji, stray digits) is not spoken
    return " ".join(words)


# ----------------------------------------------------------------------------- settings


def parse_rate(rate: str) -> int:
    """'+10%' -> espeak words per minute around BASE_SPEED_WPM (80..450)."""
    m = _RATE_RE.match(rate.strip())
    if not m:
        raise TtsError(f"espeak: tts.rate must look like '+0%' or '-10%', got {rate!r}")
    return max(80, min(450, round(BASE_SPEED_WPM * (100 + int(m.group(1))) / 100)))


def parse_pitch(pitch: str) -> int:
    """'+10Hz' -> espeak pitch 0..99 (50 + Hz/2: espeak's scale is roughly 2 Hz per step here)."""
    m = _PITCH_RE.match(pitch.strip())
    if not m:
        raise TtsError(f"espeak: tts.pitch must look like '+0Hz' or '-20Hz', got {pitch!r}")
    return max(0, min(99, BASE_PITCH + round(int(m.group(1)) / 2)))


@functools.lru_cache(maxsize=4)
def espeak_version(binary: str = ESPEAK_BINARY) -> str:
    """`espeak-ng --version` first line, part of the cache key (a new espeak may sound different)."""
    path = shutil.which(binary)
    if path is None:
        return "missing"
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    m = re.search(r"(\d+\.\d+(?:\.\d+)?)", out.stdout)
    return m.group(1) if m else "unknown"


@functools.lru_cache(maxsize=4)
def espeak_voices(binary: str = ESPEAK_BINARY) -> frozenset[str]:
    """Lower-cased names by which `espeak-ng -v` finds an installed voice (language, name, file)."""
    path = shutil.which(binary)
    if path is None:
        return frozenset()
    try:
        out = subprocess.run([path, "--voices"], capture_output=True, text=True, timeout=10, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return frozenset()
    names: set[str] = set()
    for line in out.splitlines()[1:]:
        cols = line.split()
        if len(cols) >= 5:
            names.update({cols[1].lower(), cols[3].lower(), cols[4].lower(), cols[4].rsplit("/", 1)[-1].lower()})
    return frozenset(names)


# ----------------------------------------------------------------------------- engine


class EspeakEngine:
    """espeak-ng `cmn-latn-pinyin` behind the TtsEngine protocol; local, no network, ~tens of ms a prompt.

    `volume` is accepted for config symmetry but not used: the output is normalised to the telephone level.
    """

    name = "espeak"

    def __init__(
        self,
        voice: str = DEFAULT_VOICE,
        rate: str = "+0%",
        pitch: str = "+0Hz",
        binary: str = ESPEAK_BINARY,
        timeout_s: float = TIMEOUT_S,
    ) -> None:
        self.voice = voice
        self.speed = parse_rate(rate)
        self.pitch = parse_pitch(pitch)
        self.binary = binary
        self.timeout_s = timeout_s

    def settings_key(self) -> str:
        return (
            f"espeak-ng={espeak_version(self.binary)};speed={self.speed};pitch={self.pitch};"
            f"norm={NORMALIZER_VERSION}"
        )

    def command(self) -> list[str]:
        """The espeak-ng command line; the pinyin goes to its standard input."""
        return [self.binary, "-v", self.voice, "-s", str(self.speed), "-p", str(self.pitch), "--stdout"]

    async def synthesize(self, text: str) -> bytes:
        pinyin = to_pinyin(text)
        if not pinyin.strip(" ,.;?!"):
            raise TtsError(f"espeak: nothing speakable in {text!r}")
        path = shutil.which(self.binary)
        if path is None:
            raise TtsError(f"espeak: {self.binary} is not installed (Debian: apt-get install espeak-ng)")
        voices = await asyncio.to_thread(espeak_voices, self.binary)
        if self.voice.split("+", 1)[0].lower() not in voices:
            # espeak-ng silently falls back to English for an unknown voice: refuse instead
            raise TtsError(f"espeak: voice {self.voice!r} is not installed (see `espeak-ng --voices`)")
        cmd = [path, *self.command()[1:]]
        try:
            proc = await asyncio.create_subprocess_exec(
                *cmd, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
            )
        except OSError as exc:
            raise TtsError(f"espeak: cannot start {path}: {exc}") from exc
        try:
            async with asyncio.timeout(self.timeout_s):
                out, err = await proc.communicate(pinyin.encode("utf-8") + b"\n")
        except TimeoutError as exc:
            proc.kill()
            await proc.wait()
            raise TtsError(f"espeak: timed out after {self.timeout_s:.0f} s on {text!r}") from exc
        if proc.returncode != 0:
            msg = err.decode("utf-8", "replace").strip()[:300]
            raise TtsError(f"espeak: exit {proc.returncode} on {text!r}: {msg}")
        try:
            pcm, rate = wav_to_mono(out, source=f"espeak-ng output for {text!r}")
        except AudioFormatError as exc:
            raise TtsError(f"espeak: {exc}") from exc
        audio = await asyncio.to_thread(to_telephone, pcm, rate)
        if not audio:
            raise TtsError(f"espeak: produced only silence for {text!r}")
        log.debug("espeak rendered %d chars -> %.2f s", len(text), len(audio) / 16000)
        return audio
