"""8 -> 16 kHz resampling: streaming equals one-shot, the spectrum stays clean, bad input is refused."""

from __future__ import annotations

import numpy as np
import pytest

from asr.resample import StreamResampler
from common.audio import AudioFormatError, resample_pcm
from tests.asr_audio import espeak, from_pcm, to_pcm


def _sine(freq: float, ms: float, rate: int = 8000, amp: float = 8000.0) -> bytes:
    t = np.arange(int(rate * ms / 1000)) / rate
    return to_pcm(amp * np.sin(2 * np.pi * freq * t))


def test_streaming_in_20ms_frames_matches_one_shot() -> None:
    pcm = espeak("ni3 hao3, qing3 wen4 shi4 zhang1 san1 ma5")
    rs = StreamResampler()
    out = b"".join(rs.process(pcm[i : i + 320]) for i in range(0, len(pcm), 320)) + rs.flush()
    whole = StreamResampler()
    ref = whole.process(pcm) + whole.flush()
    assert len(out) == len(ref) == 2 * len(pcm)
    diff = np.abs(from_pcm(out) - from_pcm(ref))
    assert diff.max() <= 2.0  # the same audio, up to the int16 rounding of intermediate blocks


def test_upsampled_sine_keeps_its_frequency_and_adds_no_images() -> None:
    pcm = _sine(1000.0, 1000)
    rs = StreamResampler()
    out = from_pcm(b"".join(rs.process(pcm[i : i + 320]) for i in range(0, len(pcm), 320)) + rs.flush())
    mid = out[4000:12000]  # away from the filter's start-up and tail
    spectrum = np.abs(np.fft.rfft(mid * np.hanning(len(mid))))
    freqs = np.fft.rfftfreq(len(mid), 1 / 16000)
    assert abs(freqs[spectrum.argmax()] - 1000.0) <= 2.0
    image = spectrum[freqs > 4100].max()  # the mirror image at 7 kHz that naive upsampling leaves
    assert 20 * np.log10(image / spectrum.max()) < -60


def test_flush_releases_the_filter_delay_and_the_next_chunk_starts_fresh() -> None:
    rs = StreamResampler()
    first = rs.process(b"\x00\x01" * 160)
    assert len(first) < 640  # the filter holds some samples back
    tail = rs.flush()
    assert len(first) + len(tail) == 640
    assert rs.flush() == b""
    again = rs.process(b"\x00\x01" * 160) + rs.flush()
    assert len(again) == 640


def test_one_shot_helper_and_odd_lengths() -> None:
    assert len(resample_pcm(b"\x00\x00" * 8000, 8000, 16000)) == 32000
    assert resample_pcm(b"\x01\x00" * 10, 8000, 8000) == b"\x01\x00" * 10
    with pytest.raises(AudioFormatError, match="321 bytes"):
        StreamResampler().process(b"\x00" * 321)
    with pytest.raises(AudioFormatError, match="3 bytes"):
        resample_pcm(b"\x00" * 3, 8000, 16000)
