"""PCM helpers for telephone prompts: 8 kHz, signed 16-bit little-endian, mono.

Every TTS engine ends in `to_telephone()`: resample (soxr, high quality) to 8 kHz, trim leading and
trailing silence, and normalise loudness to one telephone level.

Level: the *active speech level* (RMS over the 20 ms frames that carry speech, a simplified ITU-T P.56
measure) is set to `TARGET_ACTIVE_DBFS` = -20 dBFS, with peaks kept at or below `PEAK_CEILING_DBFS` =
-1 dBFS (the gain is lowered rather than clipping). -20 dBFS active level leaves ~17 dB of headroom for
speech peaks and sits in the range IVR prompt guidelines give for G.711 trunks, so every prompt, from
either engine, plays at the same loudness.
"""

from __future__ import annotations

import io
import struct
import wave
from pathlib import Path

import miniaudio
import numpy as np

from common.atomic import atomic_write_bytes
from common.audio import FRAME_MS, SAMPLE_WIDTH, TELEPHONE_RATE, AudioFormatError, pcm_to_array, resample_pcm

TARGET_ACTIVE_DBFS = -20.0
PEAK_CEILING_DBFS = -1.0
SILENCE_DBFS = -45.0  # a 10 ms window quieter than this counts as silence when trimming
_FULL_SCALE = 32768.0


# ----------------------------------------------------------------------------- conversions


def array_to_pcm(samples: np.ndarray) -> bytes:
    """Float (-1..1 scale of int16) or int array -> s16le bytes, clipped to the int16 range."""
    if samples.dtype.kind == "f":
        samples = np.clip(np.rint(samples), -32768, 32767)
    return samples.astype("<i2").tobytes()


def duration_s(pcm: bytes, rate: int = TELEPHONE_RATE) -> float:
    """Length of s16 mono PCM in seconds."""
    return len(pcm) / (SAMPLE_WIDTH * rate)


def to_mono(samples: np.ndarray, channels: int) -> np.ndarray:
    """Interleaved int16 samples with `channels` channels -> mono (average)."""
    if channels == 1:
        return samples
    frames = samples[: samples.size - samples.size % channels].reshape(-1, channels)
    return np.rint(frames.astype(np.float64).mean(axis=1)).astype(np.int16)


# ----------------------------------------------------------------------------- levels


def dbfs(rms: float) -> float:
    """An RMS value in int16 units -> dB relative to full scale (-inf for silence)."""
    return float(20.0 * np.log10(rms / _FULL_SCALE)) if rms > 0 else float("-inf")


def _frame_rms(samples: np.ndarray, frame: int) -> np.ndarray:
    n = samples.size // frame
    if n == 0:
        return np.zeros(0)
    blocks = samples[: n * frame].astype(np.float64).reshape(n, frame)
    rms: np.ndarray = np.sqrt((blocks * blocks).mean(axis=1))
    return rms


def active_level_dbfs(pcm: bytes, rate: int = TELEPHONE_RATE) -> float:
    """Active speech level: RMS over 20 ms frames that are above -50 dBFS and within 35 dB of the loudest.

    A simplified ITU-T P.56 active level; pauses between words do not lower it. -inf for silence.
    """
    samples = pcm_to_array(pcm)
    rms = _frame_rms(samples, max(1, rate * FRAME_MS // 1000))
    if rms.size == 0 or rms.max() <= 0:
        return float("-inf")
    floor = max(_FULL_SCALE * 10 ** (-50 / 20), rms.max() * 10 ** (-35 / 20))
    active = rms[rms >= floor]
    return dbfs(float(np.sqrt((active * active).mean())))


def peak_dbfs(pcm: bytes) -> float:
    """Absolute peak in dBFS (-inf for silence)."""
    samples = pcm_to_array(pcm)
    if samples.size == 0:
        return float("-inf")
    return dbfs(float(np.abs(samples.astype(np.int32)).max()))


def normalize(
    pcm: bytes,
    rate: int = TELEPHONE_RATE,
    target_dbfs: float = TARGET_ACTIVE_DBFS,
    peak_ceiling_dbfs: float = PEAK_CEILING_DBFS,
) -> bytes:
    """Scale so the active speech level is `target_dbfs`, never letting a peak exceed the ceiling."""
    level = active_level_dbfs(pcm, rate)
    if level == float("-inf"):
        return pcm
    gain_db = target_dbfs - level
    peak = peak_dbfs(pcm)
    gain_db = min(gain_db, peak_ceiling_dbfs - peak)
    gain = 10 ** (gain_db / 20)
    return array_to_pcm(pcm_to_array(pcm).astype(np.float64) * gain)


def trim_silence(
    pcm: bytes, rate: int = TELEPHONE_RATE, threshold_dbfs: float = SILENCE_DBFS, pad_ms: int = 10
) -> bytes:
    """Cut leading and trailing silence (10 ms windows below `threshold_dbfs`), keeping `pad_ms` around speech.

    All-silent input becomes empty.
    """
    samples = pcm_to_array(pcm)
    win = max(1, rate // 100)
    rms = _frame_rms(samples, win)
    # the tail shorter than one window counts as its own window
    if samples.size % win:
        tail = samples[rms.size * win :].astype(np.float64)
        rms = np.append(rms, np.sqrt((tail * tail).mean()))
    loud = np.flatnonzero(rms >= _FULL_SCALE * 10 ** (threshold_dbfs / 20))
    if loud.size == 0:
        return b""
    pad = rate * pad_ms // 1000
    start = max(0, int(loud[0]) * win - pad)
    end = min(samples.size, (int(loud[-1]) + 1) * win + pad)
    return samples[start:end].tobytes()


def to_telephone(pcm: bytes, rate: int) -> bytes:
    """Any-rate s16 mono PCM -> 8 kHz, trimmed, normalised: what every engine returns."""
    return normalize(trim_silence(resample_pcm(pcm, rate, TELEPHONE_RATE), TELEPHONE_RATE), TELEPHONE_RATE)


# ----------------------------------------------------------------------------- decoding


def parse_wav(data: bytes, source: str = "<bytes>") -> tuple[bytes, int, int]:
    """Parse RIFF/WAVE PCM s16 bytes -> (pcm, rate, channels).

    Tolerates the bogus sizes written by streaming producers (`espeak-ng --stdout` writes 0x7ffff000-ish
    lengths): a data chunk that claims more than is there is read to the end.
    """
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise AudioFormatError(f"{source}: not a RIFF/WAVE file")
    pos = 12
    rate = channels = bits = fmt_tag = 0
    while pos + 8 <= len(data):
        cid = data[pos : pos + 4]
        (size,) = struct.unpack_from("<I", data, pos + 4)
        body = pos + 8
        if cid == b"fmt ":
            if size < 16 or body + 16 > len(data):
                raise AudioFormatError(f"{source}: truncated fmt chunk")
            fmt_tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", data, body)
        elif cid == b"data":
            if not rate:
                raise AudioFormatError(f"{source}: data chunk before fmt chunk")
            if fmt_tag not in (1, 0xFFFE) or bits != 16:
                raise AudioFormatError(f"{source}: only 16-bit PCM WAV is supported (format {fmt_tag}, {bits} bits)")
            end = min(len(data), body + size)
            payload = data[body:end]
            payload = payload[: len(payload) - len(payload) % (SAMPLE_WIDTH * channels)]
            return payload, rate, channels
        pos = body + size + (size & 1)
    raise AudioFormatError(f"{source}: no data chunk")


def wav_to_mono(data: bytes, source: str = "<bytes>") -> tuple[bytes, int]:
    """RIFF/WAVE s16 bytes of any channel count -> (mono s16 PCM, rate)."""
    pcm, rate, channels = parse_wav(data, source)
    return to_mono(pcm_to_array(pcm), channels).astype("<i2").tobytes(), rate


def decode_mp3(data: bytes, source: str = "<mp3>") -> tuple[bytes, int]:
    """Decode MP3 bytes with miniaudio (dr_mp3) -> (mono s16 PCM, native rate)."""
    if not data:
        raise AudioFormatError(f"{source}: empty MP3 data")
    try:
        info = miniaudio.mp3_get_info(data)
        decoded = miniaudio.decode(
            data, output_format=miniaudio.SampleFormat.SIGNED16, nchannels=1, sample_rate=info.sample_rate
        )
    except miniaudio.DecodeError as exc:
        raise AudioFormatError(f"{source}: cannot decode MP3 ({exc})") from exc
    return np.asarray(decoded.samples, dtype="<i2").tobytes(), decoded.sample_rate


# ----------------------------------------------------------------------------- WAV files (8 kHz mono s16)


def wav_bytes(pcm: bytes, rate: int = TELEPHONE_RATE) -> bytes:
    """Mono s16 PCM -> a complete WAV file in memory."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(SAMPLE_WIDTH)
        w.setframerate(rate)
        w.writeframes(pcm)
    return buf.getvalue()


def write_wav(path: str | Path, pcm: bytes, rate: int = TELEPHONE_RATE) -> Path:
    """Write mono s16 PCM as a WAV file atomically (common.atomic; missing folders are created)."""
    p = Path(path)
    atomic_write_bytes(p, wav_bytes(pcm, rate), parents=True)
    return p


def read_wav(path: str | Path, rate: int = TELEPHONE_RATE) -> bytes:
    """Read a WAV file that must be `rate` Hz mono s16; returns its PCM."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError as exc:
        raise AudioFormatError(f"{p}: no such file") from exc
    pcm, file_rate, channels = parse_wav(data, str(p))
    if file_rate != rate or channels != 1:
        raise AudioFormatError(f"{p}: expected {rate} Hz mono s16, got {file_rate} Hz with {channels} channel(s)")
    return pcm
