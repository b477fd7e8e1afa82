"""tts/audio.py: resampling, trimming, loudness, WAV and MP3 handling on generated signals."""

from __future__ import annotations

import struct
import wave
from pathlib import Path

import lameenc
import numpy as np
import pytest

from tts import audio
from tts.audio import AudioFormatError


def tone(freq: float, seconds: float, rate: int, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (np.sin(2 * np.pi * freq * t) * amp * 32767).astype(np.int16)


def silence(seconds: float, rate: int) -> np.ndarray:
    return np.zeros(int(seconds * rate), dtype=np.int16)


def dominant_freq(pcm: bytes, rate: int) -> float:
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    spec = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.fft.rfftfreq(x.size, 1 / rate)[int(spec.argmax())])


def test_resample_keeps_duration_and_pitch() -> None:
    pcm = tone(440, 1.0, 22050).tobytes()
    out = audio.resample_pcm(pcm, 22050, 8000)
    assert len(out) == 2 * 8000
    assert abs(dominant_freq(out, 8000) - 440) < 2


def test_resample_removes_content_above_nyquist() -> None:
    # 6 kHz cannot exist at 8 kHz; a naive decimator would alias it to 2 kHz, soxr filters it out
    pcm = (tone(6000, 1.0, 24000) + tone(500, 1.0, 24000, amp=0.1)).tobytes()
    out = np.frombuffer(audio.resample_pcm(pcm, 24000, 8000), dtype="<i2").astype(np.float64)
    spec = np.abs(np.fft.rfft(out))
    freqs = np.fft.rfftfreq(out.size, 1 / 8000)
    alias = spec[(freqs > 1900) & (freqs < 2100)].max()
    wanted = spec[(freqs > 490) & (freqs < 510)].max()
    assert alias < wanted / 100


def test_resample_same_rate_is_identity() -> None:
    pcm = tone(300, 0.1, 8000).tobytes()
    assert audio.resample_pcm(pcm, 8000, 8000) == pcm


def test_odd_length_pcm_is_an_error() -> None:
    with pytest.raises(AudioFormatError, match="multiple of 2"):
        audio.pcm_to_array(b"\x00\x01\x02")


def test_trim_silence_cuts_both_ends_and_keeps_pad() -> None:
    sig = np.concatenate([silence(0.5, 8000), tone(400, 0.3, 8000), silence(0.7, 8000)])
    out = audio.trim_silence(sig.tobytes(), 8000, pad_ms=10)
    # 0.3 s of tone plus at most 10 ms pad on each side (window granularity 10 ms)
    assert 0.3 <= audio.duration_s(out) <= 0.3 + 0.02 + 0.01
    first = np.frombuffer(out[: 2 * 160], dtype="<i2")
    assert np.abs(first).max() > 1000  # speech starts within the first 20 ms


def test_trim_silence_of_silence_is_empty() -> None:
    assert audio.trim_silence(silence(1.0, 8000).tobytes()) == b""


def test_trim_keeps_quiet_but_audible_speech() -> None:
    quiet = tone(400, 0.2, 8000, amp=0.02)  # about -37 dBFS RMS, above the -45 dBFS silence gate
    out = audio.trim_silence(np.concatenate([silence(0.2, 8000), quiet]).tobytes())
    assert audio.duration_s(out) >= 0.2


@pytest.mark.parametrize("amp", [0.01, 0.05, 0.3])
def test_normalize_sets_active_level(amp: float) -> None:
    # speech-like: bursts with pauses; the pauses must not lower the measured level
    parts = [tone(300 + 50 * i, 0.2, 8000, amp) for i in range(4)]
    sig = np.concatenate([np.concatenate([p, silence(0.15, 8000)]) for p in parts])
    out = audio.normalize(sig.tobytes())
    assert audio.active_level_dbfs(out) == pytest.approx(audio.TARGET_ACTIVE_DBFS, abs=0.2)
    assert audio.peak_dbfs(out) <= audio.PEAK_CEILING_DBFS + 0.01


def test_normalize_respects_peak_ceiling() -> None:
    # one loud click in a quiet signal: raising the level to -20 dBFS would clip the click
    sig = tone(300, 1.0, 8000, amp=0.01)
    sig[4000] = 30000
    out = audio.normalize(sig.tobytes())
    assert audio.peak_dbfs(out) <= audio.PEAK_CEILING_DBFS + 0.01


def test_normalize_silence_is_unchanged() -> None:
    pcm = silence(0.2, 8000).tobytes()
    assert audio.normalize(pcm) == pcm


def test_to_telephone_chain() -> None:
    sig = np.concatenate([silence(0.3, 24000), tone(500, 0.5, 24000, 0.05), silence(0.3, 24000)])
    out = audio.to_telephone(sig.tobytes(), 24000)
    assert 0.5 <= audio.duration_s(out) <= 0.54
    assert audio.active_level_dbfs(out) == pytest.approx(-20.0, abs=0.3)


def test_wav_roundtrip_atomic(tmp_path: Path) -> None:
    pcm = tone(440, 0.25, 8000).tobytes()
    path = audio.write_wav(tmp_path / "sub" / "a.wav", pcm)
    assert audio.read_wav(path) == pcm
    with wave.open(str(path)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["a.wav"]  # no temp file left


def test_read_wav_rejects_other_formats(tmp_path: Path) -> None:
    path = tmp_path / "stereo.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(b"\x00\x00" * 200)
    with pytest.raises(AudioFormatError, match=r"stereo.wav: expected 8000 Hz mono s16, got 16000 Hz with 2"):
        audio.read_wav(path)
    (tmp_path / "junk.wav").write_bytes(b"not a wav at all")
    with pytest.raises(AudioFormatError, match="junk.wav: not a RIFF/WAVE file"):
        audio.read_wav(tmp_path / "junk.wav")
    with pytest.raises(AudioFormatError, match="no such file"):
        audio.read_wav(tmp_path / "nope.wav")


def test_parse_wav_tolerates_streaming_sizes() -> None:
    # what `espeak-ng --stdout` writes: RIFF and data sizes of ~2 GiB, then the real samples
    samples = tone(300, 0.1, 22050).tobytes()
    header = b"RIFF" + struct.pack("<I", 0x7FFFF024) + b"WAVE"
    fmt = b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, 22050, 44100, 2, 16)
    data = b"data" + struct.pack("<I", 0x7FFFF000)
    pcm, rate, channels = audio.parse_wav(header + fmt + data + samples)
    assert (pcm, rate, channels) == (samples, 22050, 1)


def test_wav_to_mono_averages_channels() -> None:
    left = tone(300, 0.05, 8000, 0.2)
    stereo = np.stack([left, np.zeros_like(left)], axis=1).reshape(-1)
    data = audio.wav_bytes(stereo.tobytes(), 8000).replace(
        struct.pack("<HHIIHH", 1, 1, 8000, 16000, 2, 16), struct.pack("<HHIIHH", 1, 2, 8000, 32000, 4, 16)
    )
    mono, rate = audio.wav_to_mono(data)
    assert rate == 8000
    assert np.array_equal(np.frombuffer(mono, dtype="<i2"), np.rint(left / 2).astype(np.int16))


def test_decode_mp3_real_encoder() -> None:
    enc = lameenc.Encoder()
    enc.set_bit_rate(48)
    enc.set_in_sample_rate(24000)
    enc.set_channels(1)
    enc.set_quality(5)
    mp3 = bytes(enc.encode(tone(440, 0.5, 24000).tobytes()) + enc.flush())
    pcm, rate = audio.decode_mp3(mp3)
    assert rate == 24000
    assert 0.5 <= audio.duration_s(pcm, 24000) < 0.6  # encoder delay/padding adds a little
    assert abs(dominant_freq(pcm, 24000) - 440) < 5


def test_decode_mp3_garbage() -> None:
    with pytest.raises(AudioFormatError, match="cannot decode MP3|empty"):
        audio.decode_mp3(b"\x00" * 100)
    with pytest.raises(AudioFormatError, match="empty MP3"):
        audio.decode_mp3(b"")
