"""Audio made at test time: espeak-ng speech at 8 kHz, tones, noise (nothing is downloaded)."""

from __future__ import annotations

import functools
import io
import subprocess
import wave

import numpy as np

from common.audio import resample_pcm


@functools.lru_cache(maxsize=64)
def espeak(text: str, voice: str = "cmn-latn-pinyin", rate: int = 8000, speed: int = 160) -> bytes:
    """`text` spoken by espeak-ng, as s16le mono PCM at `rate`."""
    out = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(speed), "--stdout", text], capture_output=True, check=True
    ).stdout
    with wave.open(io.BytesIO(out)) as w:
        pcm = w.readframes(w.getnframes())
        src = w.getframerate()
    return resample_pcm(pcm, src, rate)


def to_pcm(x: np.ndarray) -> bytes:
    return np.clip(np.round(x), -32768, 32767).astype("<i2").tobytes()


def silence(ms: float) -> np.ndarray:
    return np.zeros(int(8 * ms))


def from_pcm(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2").astype(np.float64)


def beep(ms: float, freq: float = 440.0, amp: float = 3000.0) -> bytes:
    """A prompt stand-in: a sine tone of `ms` (the runner does not care what a prompt says)."""
    t = np.arange(int(8 * ms)) / 8000
    return to_pcm(amp * np.sin(2 * np.pi * freq * t))
