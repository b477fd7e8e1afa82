"""The optimized VAD energy gate against a frozen copy of the first Vad, frame by frame.

`ReferenceVad` is asr/vad.py's Vad as it was before the per-frame cost work, copied verbatim. Both see
the same frames and must give the same booleans; the frames are built with exact sums of squares at and
around each gate threshold (where a float32 sum and an exact one could part), plus speech, noise, tones,
clipping and hypothesis-made input, in every mode.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import webrtcvad
from hypothesis import given, settings
from hypothesis import strategies as st

from asr.vad import _EXACT_GATE_MAX, Vad, VadError
from tests.asr_audio import espeak, to_pcm

# ---- the frozen reference (do not edit) ----------------------------------------------------------------

SAMPLE_RATE = 8000
FRAME_BYTES = 320  # 20 ms at 8 kHz, s16le


class ReferenceVad:
    """asr.vad.Vad as first written (commit 9ea892a), unchanged but for the name."""

    def __init__(self, mode: int = 2, *, min_rms: float = 60.0) -> None:
        if mode not in (0, 1, 2, 3):
            raise VadError(f"VAD mode must be 0..3, got {mode}")
        self.mode = mode
        self._vad = webrtcvad.Vad(mode)
        # Sum of squares over the frame below which a frame is never speech (about -55 dBFS RMS by default).
        self._min_energy = min_rms * min_rms * (FRAME_BYTES // 2)

    def is_speech(self, pcm: bytes) -> bool:
        """True when the 20 ms frame carries speech."""
        if len(pcm) != FRAME_BYTES:
            raise VadError(f"VAD expects 20 ms frames of {FRAME_BYTES} bytes (8 kHz s16le), got {len(pcm)}")
        x = np.frombuffer(pcm, dtype="<i2").astype(np.float32)
        if float(np.dot(x, x)) < self._min_energy:
            return False
        return bool(self._vad.is_speech(pcm, SAMPLE_RATE))


# ---- the comparison -------------------------------------------------------------------------------------

# Default, fractional, tiny and zero thresholds, both sides of the exact-gate limit (min_rms ~323.8), and
# large ones where the float32 product is kept.
MIN_RMS = [60.0, 0.0, 1.0, 7.3, 60.5, 100.0, 323.0, 323.8, 323.81, 323.9, 324.0, 400.0, 1000.0, 5000.0]


def compare(frames: list[bytes], mode: int = 2, min_rms: float = 60.0, what: str = "") -> list[bool]:
    ref = ReferenceVad(mode, min_rms=min_rms)
    new = Vad(mode, min_rms=min_rms)
    out = []
    for i, frame in enumerate(frames):
        want = ref.is_speech(frame)
        assert new.is_speech(frame) is want, f"{what} mode {mode} min_rms {min_rms}: frame {i}"
        out.append(want)
    return out


def _frames(pcm: bytes) -> list[bytes]:
    return [pcm[i : i + FRAME_BYTES] for i in range(0, len(pcm) - FRAME_BYTES + 1, FRAME_BYTES)]


def frame_with_energy(rng: np.random.Generator, energy: int) -> bytes:
    """A 160-sample frame whose sum of squares is exactly `energy`: random samples for part of it, the
    rest in a few samples (greedy squares), shuffled, with random signs."""
    x: list[int] = []
    rest = energy
    budget = int(energy * rng.uniform(0.0, 0.95))
    while len(x) < 140 and budget > 0:
        v = min(int(abs(rng.normal(0.0, math.sqrt(max(energy, 1) / 160)))), math.isqrt(budget), 32767)
        if v == 0 and rng.random() < 0.5:
            break
        x.append(v)
        budget -= v * v
        rest -= v * v
    while rest > 0:
        v = min(math.isqrt(rest), 32767)
        x.append(v)
        rest -= v * v
    assert len(x) <= 160 and sum(v * v for v in x) == energy
    samples = np.zeros(160, dtype=np.int64)
    samples[: len(x)] = x
    rng.shuffle(samples)
    samples *= rng.choice([-1, 1], 160)
    return samples.astype("<i2").tobytes()


def _targets(min_rms: float) -> list[int]:
    """Integer energies at and around the gate threshold min_rms**2 * 160, and around 2**24."""
    t = min_rms * min_rms * 160
    base = {math.floor(t), math.ceil(t), 2**24, int(_EXACT_GATE_MAX)}
    out: set[int] = set()
    for b in base:
        for d in (-1000, -3, -2, -1, 0, 1, 2, 3, 1000):
            if 0 <= b + d <= 160 * 32767 * 32767:
                out.add(b + d)
    return sorted(out)


@pytest.mark.parametrize("min_rms", MIN_RMS)
def test_energies_at_the_threshold(min_rms: float) -> None:
    rng = np.random.default_rng(int(min_rms * 1000))
    frames = [frame_with_energy(rng, e) for e in _targets(min_rms) for _ in range(6)]
    for mode in (0, 1, 2, 3):
        compare(frames, mode, min_rms, what="threshold")


def test_frames_with_exact_energies_are_built_right() -> None:
    rng = np.random.default_rng(1)
    for e in (0, 1, 575999, 576000, 2**24 + 1, 10**9):
        x = np.frombuffer(frame_with_energy(rng, e), dtype="<i2").astype(np.int64)
        assert int(x @ x) == e


def _noise_corpus(rng: np.random.Generator) -> list[bytes]:
    frames = []
    for _ in range(3000):
        sigma = 10 ** rng.uniform(0.0, 4.6) if rng.random() < 0.7 else 60.0 * rng.uniform(0.9, 1.1)
        frames.append(to_pcm(rng.normal(0.0, sigma, 160)))  # loud ones clip at the rails
    t = np.arange(160) / SAMPLE_RATE
    for f in (300.0, 697.0, 1209.0, 1633.0, 3000.0):
        for amp in (30.0, 60.0, 85.0, 1000.0, 30000.0, 60000.0):
            frames.append(to_pcm(amp * np.sin(2 * np.pi * f * t)))
    frames += [b"\x00" * 320, np.full(160, 32767, "<i2").tobytes(), np.full(160, -32768, "<i2").tobytes()]
    frames.append(np.where(np.arange(160) % 2 == 0, 32767, -32768).astype("<i2").tobytes())
    return frames


@pytest.mark.parametrize("mode", [0, 1, 2, 3])
def test_noise_tones_and_rails(mode: int) -> None:
    frames = _noise_corpus(np.random.default_rng(mode))
    for min_rms in (60.0, 323.9, 1000.0):
        verdicts = compare(frames, mode, min_rms, what="noise")
        assert any(verdicts) and not all(verdicts)


def test_real_speech_in_every_mode() -> None:
    pcm = b"".join(
        espeak(t, voice=v, speed=s)
        for t, v in [("zui4 jin4 you3 mei2 you3 fa1 shao1 ke2 sou4", "cmn-latn-pinyin"), ("one two three", "en")]
        for s in (120, 220)
    )
    speech = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    for gain_db in (-40.0, -30.0, -20.0, 0.0, 12.0):
        frames = _frames(to_pcm(speech * 10 ** (gain_db / 20)))
        for mode in (0, 1, 2, 3):
            compare(frames, mode, what=f"speech {gain_db:+} dB")


def test_bad_frames_and_modes_match() -> None:
    for bad in (b"", b"\x00" * 160, b"\x00" * 321):
        with pytest.raises(VadError, match="320 bytes"):
            Vad().is_speech(bad)
    with pytest.raises(VadError, match="0..3"):
        Vad(4)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(min_size=FRAME_BYTES, max_size=FRAME_BYTES), min_size=1, max_size=20), st.sampled_from([0, 1, 2, 3]))
def test_hypothesis_raw_frames(frames: list[bytes], mode: int) -> None:
    compare(frames, mode, what="raw")


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2 * 2**24), st.integers(0, 2**32 - 1), st.sampled_from(MIN_RMS))
def test_hypothesis_energies(energy: int, seed: int, min_rms: float) -> None:
    compare([frame_with_energy(np.random.default_rng(seed), energy)], 2, min_rms, what=f"energy {energy}")
