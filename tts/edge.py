"""Online neural Mandarin TTS through edge-tts (Microsoft Edge's read-aloud service).

The service only returns 24 kHz 48 kbit/s mono MP3; it is decoded with miniaudio (dr_mp3) and turned into
telephone audio by `tts.audio.to_telephone`. The service fails in waves (403 handshake rejections, 503,
429, "no audio received"): each synthesis is retried a bounded number of times with exponential backoff
and jitter, then `TtsError`. Never call this on a live call: render before the campaign (tts.cache).
"""

from __future__ import annotations

import asyncio
import logging
import random
from http import HTTPStatus

import aiohttp
import edge_tts
from edge_tts import exceptions as edge_exc

from tts.audio import AudioFormatError, decode_mp3, to_telephone
from tts.base import TtsError

log = logging.getLogger(__name__)

DEFAULT_VOICE = "zh-CN-XiaoxiaoNeural"
TRANSIENT_HTTP = frozenset({403, 408, 425, 429, 500, 502, 503, 504})
# Bump when the decode/resample/trim/normalise chain changes the audio: the cache key includes it.
PIPELINE_VERSION = 1


class _Transient(Exception):
    """A failure worth retrying (wraps the library's exception)."""


def _classify(exc: BaseException) -> bool:
    """True if `exc` is a transient service failure (retry), False if retrying cannot help."""
    if isinstance(exc, aiohttp.ClientResponseError):
        return exc.status in TRANSIENT_HTTP
    return isinstance(
        exc,
        (
            edge_exc.NoAudioReceived,
            edge_exc.WebSocketError,
            edge_exc.SkewAdjustmentError,
            aiohttp.ClientConnectionError,
            aiohttp.ClientPayloadError,
            TimeoutError,
            ConnectionError,
        ),
    )


def _describe(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientResponseError):
        try:
            phrase = HTTPStatus(exc.status).phrase
        except ValueError:
            phrase = exc.message
        return f"HTTP {exc.status} {phrase}".strip()
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class EdgeTtsEngine:
    """edge-tts behind the TtsEngine protocol.

    Args:
        voice: an edge-tts voice, e.g. zh-CN-XiaoxiaoNeural, zh-CN-YunxiNeural.
        rate, pitch, volume: edge-tts prosody strings ('+0%', '+0Hz', '+0%').
        attempts: total tries per text (first try + retries) on transient failures.
        backoff_s: first retry delay; doubled each retry (with +-25 % jitter), capped at max_backoff_s.
    """

    name = "edge"

    def __init__(
        self,
        voice: str = DEFAULT_VOICE,
        rate: str = "+0%",
        pitch: str = "+0Hz",
        volume: str = "+0%",
        *,
        attempts: int = 4,
        backoff_s: float = 1.0,
        max_backoff_s: float = 20.0,
        connect_timeout_s: int = 10,
        receive_timeout_s: int = 30,
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts must be >= 1")
        self.voice = voice
        self.rate = rate
        self.pitch = pitch
        self.volume = volume
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.connect_timeout_s = connect_timeout_s
        self.receive_timeout_s = receive_timeout_s
        # validate the prosody strings now, with a clear message, instead of on the first render
        try:
            edge_tts.Communicate("x", voice, rate=rate, pitch=pitch, volume=volume)
        except ValueError as exc:
            raise TtsError(f"edge: invalid tts settings (voice/rate/pitch/volume): {exc}") from exc

    def settings_key(self) -> str:
        # The client library version is left out on purpose: it changes whenever Microsoft changes the
        # handshake, not the audio, and re-rendering every prompt through a flaky service is the risk.
        return f"rate={self.rate};pitch={self.pitch};volume={self.volume};pipeline={PIPELINE_VERSION}"

    async def _fetch_mp3(self, text: str) -> bytes:
        comm = edge_tts.Communicate(
            text,
            self.voice,
            rate=self.rate,
            pitch=self.pitch,
            volume=self.volume,
            connect_timeout=self.connect_timeout_s,
            receive_timeout=self.receive_timeout_s,
        )
        chunks: list[bytes] = []
        async for chunk in comm.stream():
            if chunk["type"] == "audio":
                chunks.append(chunk["data"])
        return b"".join(chunks)

    def _delay(self, retry: int) -> float:
        base = min(self.max_backoff_s, self.backoff_s * (2 ** (retry - 1)))
        return base * random.uniform(0.75, 1.25)

    async def synthesize(self, text: str) -> bytes:
        if not text.strip():
            raise TtsError("edge: empty text")
        last = ""
        for attempt in range(1, self.attempts + 1):
            try:
                mp3 = await self._fetch_mp3(text)
                break
            except (edge_exc.EdgeTTSException, aiohttp.ClientError, TimeoutError, ConnectionError) as exc:
                if not _classify(exc):
                    raise TtsError(f"edge: {_describe(exc)} for {text!r} (not retried)") from exc
                last = _describe(exc)
                if attempt == self.attempts:
                    raise TtsError(f"edge: {last} for {text!r}; gave up after {self.attempts} attempts") from exc
                delay = self._delay(attempt)
                log.warning(
                    "edge-tts attempt %d/%d failed (%s); retrying in %.2f s", attempt, self.attempts, last, delay
                )
                await asyncio.sleep(delay)
        try:
            pcm, rate = decode_mp3(mp3, source=f"edge-tts audio for {text!r}")
        except AudioFormatError as exc:
            raise TtsError(f"edge: {exc}") from exc
        audio = await asyncio.to_thread(to_telephone, pcm, rate)
        if not audio:
            raise TtsError(f"edge: the service returned only silence for {text!r}")
        return audio
