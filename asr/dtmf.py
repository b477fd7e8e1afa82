"""In-band DTMF detection for 8 kHz telephone audio (Goertzel), for trunks that do not signal keys out of band.

Checks follow Asterisk's `dsp.c` / spandsp and the AT&T / ETSI figures (reference/voicebot.md section 5):

- Goertzel power at the 4 row and 4 column frequencies; each tone is measured at its nominal frequency and
  at +/-1.5 % (the tolerance a receiver must accept), keeping the best of the three;
- both tones above a minimum level (default -35 dBm0 per tone: a nominal -7 dBm0 sender attenuated by 26 dB
  still passes, with a little room for the +/-1.5 % frequency offset);
- twist: row may exceed column by at most 8 dB (normal), column may exceed row by at most 4 dB (reverse);
- relative peak: the best row / column beat every other row / column by 8 dB;
- second harmonics: row fundamental 4 dB and column fundamental 18 dB above its own 2nd harmonic (speech is
  rich in harmonics, a DTMF generator is not);
- energy ratio: the two tones carry most of the window's energy (rejects speech and noise);
- timing: 20 ms windows every 10 ms; a window counts only when the tone fills it evenly (both 10 ms halves
  within 2 dB), a digit starts after 2 consecutive such windows (so a tone of 40 ms or more is always
  detected and one shorter than about 22 ms never is) and ends after 3 windows without it (about 30 ms off).

Pure and allocation-light: one small matrix product per 20 ms frame, and nothing at all for silent frames.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

SAMPLE_RATE = 8000
FRAME_SAMPLES = 160
HALF = 80  # 10 ms: the hop between analysis windows
WINDOW = 2 * HALF  # 20 ms: the analysis window (50 Hz resolution)

ROW_FREQS = (697.0, 770.0, 852.0, 941.0)
COL_FREQS = (1209.0, 1336.0, 1477.0, 1633.0)
KEYPAD = (("1", "2", "3", "A"), ("4", "5", "6", "B"), ("7", "8", "9", "C"), ("*", "0", "#", "D"))
DIGITS = "0123456789*#ABCD"
# Peak amplitude of a 0 dBm0 sine in 16-bit linear PCM (G.711: full scale is +3.17 dBm0).
DBM0_PEAK = 32767.0 / 10 ** (3.17 / 20)

_TOLERANCE = (1.0, 1.015, 0.985)


class DtmfError(ValueError):
    """Audio handed to the detector is not 8 kHz s16le in whole samples."""


@dataclass(frozen=True, slots=True)
class DtmfParams:
    """Detector thresholds (dB figures as in the AT&T / Asterisk specs)."""

    min_level_dbm0: float = -35.0
    normal_twist_db: float = 8.0
    reverse_twist_db: float = 4.0
    relative_peak_db: float = 8.0
    row_harmonic_db: float = 4.0
    col_harmonic_db: float = 18.0
    energy_ratio: float = 0.75
    balance_db: float = 2.0
    hits_to_begin: int = 2
    misses_to_end: int = 3


@dataclass(frozen=True, slots=True)
class DtmfFrameResult:
    """What one 20 ms frame showed: a digit that just began (once per key press) and whether a tone is on."""

    digit: str | None
    tone: bool


def _basis() -> np.ndarray:
    """Goertzel (single-bin DFT) rows over one 20 ms window: cosines then sines, shape (2K, WINDOW)."""
    freqs: list[float] = []
    for base in (*ROW_FREQS, *COL_FREQS):
        freqs.extend(base * t for t in _TOLERANCE)
    freqs.extend(2 * f for f in ROW_FREQS)
    freqs.extend(2 * f for f in COL_FREQS)
    w = 2 * math.pi * np.asarray(freqs) / SAMPLE_RATE
    n = np.arange(WINDOW)
    return np.concatenate([np.cos(np.outer(w, n)), np.sin(np.outer(w, n))]).T.copy()  # (WINDOW, 2K)


_BASIS = _basis()
_K = _BASIS.shape[1] // 2  # 24 tone bins (8 tones x 3) + 8 harmonic bins
# The two windows ending in a frame, as indexes into [previous half, this frame] (240 samples).
_WINDOWS = np.stack([np.arange(WINDOW), np.arange(WINDOW) + HALF])
_SCALE = 2.0 / (WINDOW * WINDOW)


def tone(freqs: tuple[float, ...], ms: float, *, level_dbm0: float = -7.0, rate: int = SAMPLE_RATE) -> np.ndarray:
    """A float sum of sines, each at `level_dbm0`, `ms` long (used by tests and the simulated network)."""
    n = int(rate * ms / 1000)
    t = np.arange(n) / rate
    amp = DBM0_PEAK * 10 ** (level_dbm0 / 20)
    out = np.zeros(n)
    for f in freqs:
        out += amp * np.sin(2 * np.pi * f * t)
    return out


def digit_tone(digit: str, ms: float = 80.0, *, level_dbm0: float = -7.0, twist_db: float = 0.0) -> np.ndarray:
    """The two-tone signal of one key; `twist_db` > 0 makes the row tone louder than the column tone."""
    if len(digit) != 1 or digit.upper() not in DIGITS:
        raise DtmfError(f"not a DTMF key: {digit!r} (keys are 0-9, *, #, A-D)")
    for r, row in enumerate(KEYPAD):
        if digit.upper() in row:
            c = row.index(digit.upper())
            low = tone((ROW_FREQS[r],), ms, level_dbm0=level_dbm0 + twist_db / 2)
            high = tone((COL_FREQS[c],), ms, level_dbm0=level_dbm0 - twist_db / 2)
            return low + high
    raise DtmfError(f"not a DTMF key: {digit!r}")  # pragma: no cover - DIGITS covers the keypad


class DtmfDetector:
    """Streaming detector: feed 20 ms frames (320 bytes s16le at 8 kHz) in order; one instance per call."""

    def __init__(self, params: DtmfParams | None = None) -> None:
        p = params or DtmfParams()
        self.params = p
        amp = DBM0_PEAK * 10 ** (p.min_level_dbm0 / 20)
        self._min_tone_ms = amp * amp / 2  # mean square of a sine at the minimum level
        self._normal_twist = 10 ** (p.normal_twist_db / 10)
        self._reverse_twist = 10 ** (p.reverse_twist_db / 10)
        self._rel_peak = 10 ** (p.relative_peak_db / 10)
        self._row_harm = 10 ** (p.row_harmonic_db / 10)
        self._col_harm = 10 ** (p.col_harmonic_db / 10)
        self._balance = 10 ** (p.balance_db / 10)
        self.reset()

    def reset(self) -> None:
        self._prev = np.zeros(HALF)  # the last 10 ms half of the previous frame
        self._prev_energy = 0.0
        self._current: str | None = None
        self._candidate: str | None = None
        self._count = 0
        self._misses = 0

    @property
    def active(self) -> str | None:
        """The digit whose tone is on now (after it was reported), else None."""
        return self._current

    def process(self, pcm: bytes) -> DtmfFrameResult:
        """Analyse one 20 ms frame."""
        if len(pcm) != 2 * FRAME_SAMPLES:
            raise DtmfError(f"DTMF detector expects 20 ms frames of {2 * FRAME_SAMPLES} bytes, got {len(pcm)}")
        x = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
        halves = x.reshape(2, HALF)
        e1, e2 = np.einsum("ij,ij->i", halves, halves).tolist()
        floor = 2 * self._min_tone_ms * WINDOW  # both tones at the minimum level
        prev = self._prev
        prev_e = self._prev_energy
        self._prev = x[HALF:]
        self._prev_energy = e2
        if prev_e + e1 < floor and e1 + e2 < floor:
            d1 = self._step(None)
            d2 = self._step(None)
            return DtmfFrameResult(d1 or d2, self._current is not None)
        buf = np.concatenate((prev, x))
        raw = buf[_WINDOWS] @ _BASIS  # (2 windows, 2K): Goertzel real and imaginary parts
        power = (raw[:, :_K] ** 2 + raw[:, _K:] ** 2).tolist()
        hit1, loose1 = self._window(power[0], prev_e, e1)
        hit2, loose2 = self._window(power[1], e1, e2)
        d1 = self._step(hit1)
        d2 = self._step(hit2)
        return DtmfFrameResult(d1 or d2, loose1 or loose2 or self._current is not None)

    def _window(self, power: list[float], ea: float, eb: float) -> tuple[str | None, bool]:
        """Test one 20 ms window; returns (digit if it passes every check, whether a tone pair is present)."""
        total_ms = (ea + eb) / WINDOW
        if total_ms < 2 * self._min_tone_ms:
            return None, False
        p = [v * _SCALE for v in power]
        tones = [max(p[3 * i], p[3 * i + 1], p[3 * i + 2]) for i in range(8)]
        rows = tones[:4]
        cols = tones[4:]
        r = max(range(4), key=rows.__getitem__)
        c = max(range(4), key=cols.__getitem__)
        rp = rows[r]
        cp = cols[c]
        if rp < self._min_tone_ms or cp < self._min_tone_ms:
            return None, False
        if rp > cp * self._normal_twist or cp > rp * self._reverse_twist:
            return None, False
        for i in range(4):
            if i != r and rows[i] * self._rel_peak > rp:
                return None, False
            if i != c and cols[i] * self._rel_peak > cp:
                return None, False
        if p[24 + r] * self._row_harm > rp or p[28 + c] * self._col_harm > cp:
            return None, False
        if rp + cp < self.params.energy_ratio * total_ms:
            return None, False
        # The tone pair is there; it counts towards a digit only if it fills the window evenly.
        lo, hi = (ea, eb) if ea <= eb else (eb, ea)
        if hi > lo * self._balance:
            return None, True
        return KEYPAD[r][c], True

    def _step(self, hit: str | None) -> str | None:
        """Debounce one window's verdict; returns a digit when a key press begins."""
        p = self.params
        if self._current is not None:
            if hit == self._current:
                self._misses = 0
                return None
            self._misses += 1
            if self._misses < p.misses_to_end:
                return None
            self._current = None
            self._misses = 0
            self._candidate = hit
            self._count = 1 if hit else 0
            return None
        if hit is None:
            self._candidate = None
            self._count = 0
            return None
        if hit == self._candidate:
            self._count += 1
        else:
            self._candidate = hit
            self._count = 1
        if self._count >= p.hits_to_begin:
            self._current = hit
            self._candidate = None
            self._count = 0
            self._misses = 0
            return hit
        return None


def detect_digits(pcm: bytes, params: DtmfParams | None = None) -> str:
    """All key presses in a buffer of 8 kHz s16le audio (trailing partial frame ignored)."""
    det = DtmfDetector(params)
    out = []
    for i in range(0, len(pcm) - 2 * FRAME_SAMPLES + 1, 2 * FRAME_SAMPLES):
        res = det.process(pcm[i : i + 2 * FRAME_SAMPLES])
        if res.digit:
            out.append(res.digit)
    return "".join(out)
