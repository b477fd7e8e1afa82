"""Streaming 8 kHz -> 16 kHz resampling for the recognizers.

Vosk's small models are wideband and reject 8 kHz input, so telephone audio is upsampled with a proper
band-limited filter (soxr), never by sample repetition or linear interpolation. The resampler keeps its
filter state between chunks, so feeding a call frame by frame gives the same audio as resampling the
whole recording at once (apart from the filter delay, which `flush()` releases at the end).
"""

from __future__ import annotations

import numpy as np
import soxr

from common.audio import TELEPHONE_RATE, AudioFormatError

ASR_RATE = 16000


class StreamResampler:
    """Resamples a stream of s16le mono chunks; one instance per audio stream (not thread-safe)."""

    def __init__(self, in_rate: int = TELEPHONE_RATE, out_rate: int = ASR_RATE, quality: str = "HQ") -> None:
        self.in_rate = in_rate
        self.out_rate = out_rate
        self._quality = quality
        self._stream = soxr.ResampleStream(in_rate, out_rate, 1, dtype="int16", quality=quality)
        self._closed = False

    def process(self, pcm: bytes) -> bytes:
        """Resample one chunk; returns what the filter can emit so far (may be shorter at the start)."""
        if len(pcm) % 2:
            raise AudioFormatError(f"PCM chunk of {len(pcm)} bytes is not whole 16-bit samples")
        if self._closed:
            self.reset()
        if not pcm:
            return b""
        samples = np.frombuffer(pcm, dtype="<i2")
        out: np.ndarray = self._stream.resample_chunk(samples)
        return out.astype("<i2", copy=False).tobytes()

    def flush(self) -> bytes:
        """Emit the audio still held in the filter (the end of the stream); the next chunk starts afresh."""
        if self._closed:
            return b""
        out: np.ndarray = self._stream.resample_chunk(np.zeros(0, dtype="<i2"), last=True)
        self._closed = True
        return out.astype("<i2", copy=False).tobytes()

    def reset(self) -> None:
        """Forget all state (a new utterance)."""
        self._stream = soxr.ResampleStream(self.in_rate, self.out_rate, 1, dtype="int16", quality=self._quality)
        self._closed = False
