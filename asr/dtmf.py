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

from common.audio import FRAME_SAMPLES, TELEPHONE_RATE

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


# The results without a digit, shared (the class is frozen): most frames are one of these two.
_NOTHING = DtmfFrameResult(None, False)
_TONE_ON = DtmfFrameResult(None, True)


def _result(digit: str | None, tone: bool) -> DtmfFrameResult:
    if digit is None:
        return _TONE_ON if tone else _NOTHING
    return DtmfFrameResult(digit, tone)


def _basis() -> np.ndarray:
    """Goertzel (single-bin DFT) rows over one 20 ms window: cosines then sines, shape (2K, WINDOW)."""
    freqs: list[float] = []
    for base in (*ROW_FREQS, *COL_FREQS):
        freqs.extend(base * t for t in _TOLERANCE)
    freqs.extend(2 * f for f in ROW_FREQS)
    freqs.extend(2 * f for f in COL_FREQS)
    w = 2 * math.pi * np.asarray(freqs) / TELEPHONE_RATE
    n = np.arange(WINDOW)
    return np.concatenate([np.cos(np.outer(w, n)), np.sin(np.outer(w, n))]).T.copy()  # (WINDOW, 2K)


_BASIS = _basis()
_K = _BASIS.shape[1] // 2  # 24 tone bins (8 tones x 3) + 8 harmonic bins
_TONE_BINS = 3 * 8  # bins 0..23: each tone at its nominal frequency, +1.5 % and -1.5 %; then 8 harmonics
_SCALE = 2.0 / (WINDOW * WINDOW)
_SCALE_0D = np.array(_SCALE)  # a ufunc takes a 0-d array faster than a Python float
_ROW = 48  # room for the _K bin powers of one window, a multiple of 3 (see DtmfDetector.__init__)
_S16 = np.dtype("<i2")


def tone(freqs: tuple[float, ...], ms: float, *, level_dbm0: float = -7.0, rate: int = TELEPHONE_RATE) -> np.ndarray:
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
    """Streaming detector: feed 20 ms frames (320 bytes s16le at 8 kHz) in order; one instance per call.

    The voice runner calls `process` for every frame of every live call on its event loop, so the work
    is done in arrays allocated once per detector, with as few (and as one-dimensional) numpy calls as
    possible: a frame is converted straight into the window matrix, its two half energies come from one
    2x2 product, and a silent frame stops there. The arithmetic itself is that of the plain version
    (float64 throughout: exact integer energies, the same Goertzel product, squares, sums and scaling), so
    the verdicts are the same bit for bit; tests/test_dtmf_equivalence.py holds the plain version and
    checks this.
    """

    def __init__(self, params: DtmfParams | None = None) -> None:
        p = params or DtmfParams()
        self.params = p
        amp = DBM0_PEAK * 10 ** (p.min_level_dbm0 / 20)
        self._min_tone_ms = amp * amp / 2  # mean square of a sine at the minimum level
        self._min_total_ms = 2 * self._min_tone_ms  # both tones at the minimum level
        self._floor = self._min_total_ms * WINDOW  # the same, as a window's energy
        self._normal_twist = 10 ** (p.normal_twist_db / 10)
        self._reverse_twist = 10 ** (p.reverse_twist_db / 10)
        self._rel_peak = 10 ** (p.relative_peak_db / 10)
        self._row_harm = 10 ** (p.row_harmonic_db / 10)
        self._col_harm = 10 ** (p.col_harmonic_db / 10)
        self._balance = 10 ** (p.balance_db / 10)
        self._energy_ratio = p.energy_ratio
        # The two 20 ms windows ending in this frame, one per row: [previous half, first half] and the frame.
        self._win = np.zeros((2, WINDOW))
        self._frame = self._win[1]
        self._halves = self._frame.reshape(2, HALF)
        self._halves_t = self._halves.T
        self._gram = np.empty((2, 2))  # the halves' dot products: their energies on the diagonal
        self._prev_half = self._win[0, :HALF]
        self._first_half = self._win[0, HALF:]
        self._last_half = self._frame[HALF:]
        self._raw = np.empty((2, 2 * _K))  # per window: Goertzel real parts, then imaginary parts
        self._re = self._raw[:, :_K]
        self._im = self._raw[:, _K:]
        # Bin powers, one window per _ROW-long row (the _K bins, then padding): with _ROW a multiple of 3,
        # one stride-3 view per frequency offset covers both windows' tone bins, so the best of each tone's
        # 3 bins takes two 1-D maximum calls (2-D strided ufunc calls cost several times more). That makes
        # _ROW // 3 tone powers per row: the 8 real ones, then maxima of harmonic bins and padding, unused.
        power = np.zeros(2 * _ROW)
        rows = power.reshape(2, _ROW)
        self._bins = rows[:, :_K]
        self._harmonics = rows[:, _TONE_BINS:_K]
        self._offsets = tuple(power[i : _ROW + _TONE_BINS : 3] for i in range(3))
        self._tones = np.empty(len(self._offsets[0]))
        self.reset()

    def reset(self) -> None:
        self._last_half[...] = 0.0  # the last 10 ms half of the previous frame
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
        self._prev_half[...] = self._last_half  # before the new frame overwrites it
        self._frame[...] = np.frombuffer(pcm, dtype=_S16)
        (e1, _), (_, e2) = np.dot(self._halves, self._halves_t, out=self._gram).tolist()
        prev_e = self._prev_energy
        self._prev_energy = e2
        floor = self._floor
        if prev_e + e1 < floor and e1 + e2 < floor:
            if self._current is None:  # all that two self._step(None) calls would do
                self._candidate = None
                self._count = 0
                return _NOTHING
            d1 = self._step(None)
            d2 = self._step(None)
            return _result(d1 or d2, self._current is not None)
        self._first_half[...] = self._halves[0]
        np.dot(self._win, _BASIS, out=self._raw)
        np.square(self._raw, out=self._raw)
        np.add(self._re, self._im, out=self._bins)
        tones = self._tones
        a, b, c = self._offsets
        np.maximum(a, b, out=tones)
        np.maximum(tones, c, out=tones)
        # Scaling after the max is the same: rounding x * _SCALE is monotonic in x, so it commutes with max.
        np.multiply(tones, _SCALE_0D, out=tones)
        t = tones.tolist()
        h1, h2 = self._harmonics.tolist()
        hit1, loose1 = self._window(t[:8], h1, prev_e, e1)
        hit2, loose2 = self._window(t[_ROW // 3 : _ROW // 3 + 8], h2, e1, e2)
        d1 = self._step(hit1)
        d2 = self._step(hit2)
        return _result(d1 or d2, loose1 or loose2 or self._current is not None)

    def _window(
        self, tones: list[float], harmonics: list[float], ea: float, eb: float
    ) -> tuple[str | None, bool]:
        """Test one 20 ms window; returns (digit if it passes every check, whether a tone pair is present).

        `tones`: the 8 tone powers (rows then columns), scaled; `harmonics`: their 2nd harmonics' powers,
        not scaled yet. Every failed check gives the same answer, so the cheapest, most selective go first.
        """
        total_ms = (ea + eb) / WINDOW
        if total_ms < self._min_total_ms:
            return None, False
        rows = tones[:4]
        cols = tones[4:]
        rp = max(rows)
        cp = max(cols)
        if rp + cp < self._energy_ratio * total_ms:
            return None, False
        if rp < self._min_tone_ms or cp < self._min_tone_ms:
            return None, False
        if rp > cp * self._normal_twist or cp > rp * self._reverse_twist:
            return None, False
        r = rows.index(rp)  # the first of equal bests, as max() over the indexes picked it
        c = cols.index(cp)
        if harmonics[r] * _SCALE * self._row_harm > rp or harmonics[4 + c] * _SCALE * self._col_harm > cp:
            return None, False
        # Relative peak: every other tone times the margin stays below the best. Rounding x * margin is
        # monotonic in x, so testing the runner-up (equal to the best on a tie) tests them all.
        rows.sort()
        cols.sort()
        if rows[2] * self._rel_peak > rp or cols[2] * self._rel_peak > cp:
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
