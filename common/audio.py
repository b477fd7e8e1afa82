"""The telephone audio format, defined once for every package: 8 kHz, signed 16-bit little-endian, mono,
carried in 20 ms frames of 320 bytes (AudioSocket's slin, the simulated network, prompts, VAD, DTMF,
the recognizers' input before they resample it).

Also the one whole-buffer resampler (soxr, high quality, band-limited) for files and fixtures; streaming
resampling for the recognizers lives in `asr.resample`.
"""

from __future__ import annotations

import numpy as np
import soxr

TELEPHONE_RATE = 8000
SAMPLE_WIDTH = 2  # bytes per sample, s16le
FRAME_MS = 20
FRAME_SAMPLES = TELEPHONE_RATE * FRAME_MS // 1000  # 160
FRAME_BYTES = FRAME_SAMPLES * SAMPLE_WIDTH  # 320
SILENCE_FRAME = b"\x00" * FRAME_BYTES


class AudioFormatError(ValueError):
    """Audio bytes, a sample rate or a WAV file are not in the expected format; the message names the source."""


def pcm_to_array(pcm: bytes) -> np.ndarray:
    """s16le bytes -> int16 array (a copy; an odd trailing byte is an error)."""
    if len(pcm) % SAMPLE_WIDTH:
        raise AudioFormatError(f"PCM length {len(pcm)} bytes is not a multiple of {SAMPLE_WIDTH} bytes (s16le)")
    return np.frombuffer(pcm, dtype="<i2").copy()


def resample_pcm(pcm: bytes, in_rate: int, out_rate: int = TELEPHONE_RATE) -> bytes:
    """Resample a whole s16le mono buffer with soxr's high-quality filter (no aliasing)."""
    if in_rate <= 0 or out_rate <= 0:
        raise AudioFormatError(f"invalid sample rates {in_rate} -> {out_rate}")
    samples = pcm_to_array(pcm)
    if in_rate == out_rate or samples.size == 0:
        return samples.tobytes()
    out = soxr.resample(samples, in_rate, out_rate, quality="HQ")
    return np.asarray(out).astype("<i2", copy=False).tobytes()
