"""tts/edge.py: the real edge-tts client against a local fake of the read-aloud websocket service.

The fake speaks the service's wire format as the edge-tts client parses it: the client sends a
`Path:speech.config` text message and a `Path:ssml` message; the service answers `Path:turn.start`,
binary `Path:audio` messages (2-byte big-endian header length, headers, MP3 bytes of
audio-24khz-48kbitrate-mono-mp3), `Path:audio.metadata`, and `Path:turn.end`. Failure waves are HTTP
status codes on the websocket handshake (403, 503) or a turn without audio.
"""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import edge_tts
import edge_tts.communicate
import lameenc
import pytest
from aiohttp import web

from tts import audio
from tts.base import TtsError
from tts.edge import EdgeTtsEngine
from tts.espeak import EspeakEngine

PATH = "/consumer/speech/synthesize/readaloud/edge/v1"


def encode_mp3(pcm24k: bytes) -> bytes:
    enc = lameenc.Encoder()
    enc.set_bit_rate(48)
    enc.set_in_sample_rate(24000)
    enc.set_channels(1)
    enc.set_quality(5)
    return bytes(enc.encode(pcm24k) + enc.flush())


@pytest.fixture(scope="module")
def speech_mp3() -> bytes:
    """Real Mandarin speech (espeak-ng), padded with 0.4 s of silence, as the service's 24 kHz MP3."""
    wav = subprocess.run(
        ["espeak-ng", "-v", "cmn-latn-pinyin", "--stdout", "nin2 hao3, qing3 wen4 nin2 you3 mei2 you3 fa1 shao1?"],
        capture_output=True,
        check=True,
    ).stdout
    pcm, rate = audio.wav_to_mono(wav)
    pcm24 = audio.resample_pcm(pcm, rate, 24000)
    pad = b"\x00\x00" * int(0.4 * 24000)
    return encode_mp3(pad + pcm24 + pad)


@dataclass
class FakeEdge:
    """Scripted behaviour per websocket connection: 'ok', 'noaudio' or an HTTP status for the handshake."""

    mp3: bytes
    plan: list[str | int] = field(default_factory=list)
    handshakes: int = 0
    queries: list[dict[str, str]] = field(default_factory=list)
    configs: list[str] = field(default_factory=list)
    ssml: list[str] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}{PATH}?TrustedClientToken={edge_tts.constants.TRUSTED_CLIENT_TOKEN}"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.handshakes += 1
        self.queries.append(dict(request.query))
        step = self.plan.pop(0) if self.plan else "ok"
        if isinstance(step, int):
            return web.Response(status=step, text=f"fake edge says {step}")
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        request_id = ""
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            head, _, body = msg.data.partition("\r\n\r\n")
            headers = dict(line.split(":", 1) for line in head.split("\r\n"))
            if headers.get("Path") == "speech.config":
                self.configs.append(body)
            elif headers.get("Path") == "ssml":
                request_id = headers["X-RequestId"]
                self.ssml.append(body)
                await self._answer(ws, request_id, audio_on=(step == "ok"))
                break
        await ws.close()
        return ws

    async def _answer(self, ws: web.WebSocketResponse, rid: str, audio_on: bool) -> None:
        def text(path: str, body: str) -> str:
            return (
                f"X-RequestId:{rid}\r\nContent-Type:application/json; charset=utf-8\r\nPath:{path}\r\n\r\n{body}"
            )

        await ws.send_str(text("turn.start", json.dumps({"context": {"serviceTag": "fake"}})))
        await ws.send_str(text("response", json.dumps({"context": {"serviceTag": "fake"}, "audio": {}})))
        if audio_on:
            stream_id = uuid.uuid4().hex.upper()
            head = f"X-RequestId:{rid}\r\nContent-Type:audio/mpeg\r\nX-StreamId:{stream_id}\r\nPath:audio\r\n"
            hb = head.encode()
            for i in range(0, len(self.mp3), 2400):
                await ws.send_bytes(len(hb).to_bytes(2, "big") + hb + self.mp3[i : i + 2400])
            meta = {
                "Metadata": [
                    {
                        "Type": "SentenceBoundary",
                        "Data": {
                            "Offset": 1000000,
                            "Duration": 20000000,
                            "text": {"Text": "您好", "Length": 2, "BoundaryType": "SentenceBoundary"},
                        },
                    }
                ]
            }
            await ws.send_str(text("audio.metadata", json.dumps(meta, ensure_ascii=False)))
            # the end-of-audio marker: an audio message without Content-Type and without data
            tail = f"X-RequestId:{rid}\r\nPath:audio\r\n".encode()
            await ws.send_bytes(len(tail).to_bytes(2, "big") + tail)
        await ws.send_str(text("turn.end", "{}"))


@pytest.fixture
async def fake_edge(speech_mp3: bytes, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeEdge]:
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    fake = FakeEdge(mp3=speech_mp3)
    app = web.Application()
    app.router.add_get(PATH, fake.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    fake.port = sock.getsockname()[1]
    site = web.SockSite(runner, sock)
    await site.start()
    # point the real client at the fake: edge_tts.communicate reads this module constant per connection
    monkeypatch.setattr(edge_tts.communicate, "WSS_URL", fake.url)
    yield fake
    await runner.cleanup()


def engine(**kw: object) -> EdgeTtsEngine:
    return EdgeTtsEngine(backoff_s=0.01, max_backoff_s=0.05, **kw)  # type: ignore[arg-type]


async def test_synthesize_decodes_mp3_to_telephone_audio(fake_edge: FakeEdge) -> None:
    pcm = await engine(rate="-10%", pitch="+5Hz").synthesize("您好，请问您有没有发烧？")
    assert fake_edge.handshakes == 1
    # 8 kHz s16 mono, the 0.4 s padding trimmed, normalised to the telephone level
    seconds = audio.duration_s(pcm)
    ref, ref_rate = audio.decode_mp3(fake_edge.mp3)
    assert seconds < audio.duration_s(ref, ref_rate) - 0.7
    assert seconds > 1.0
    assert audio.active_level_dbfs(pcm) == pytest.approx(audio.TARGET_ACTIVE_DBFS, abs=0.5)
    # what the client sent is what the service expects
    q = fake_edge.queries[0]
    assert q["TrustedClientToken"] == edge_tts.constants.TRUSTED_CLIENT_TOKEN
    assert q["Sec-MS-GEC"] and q["Sec-MS-GEC-Version"] and q["ConnectionId"]
    assert '"outputFormat":"audio-24khz-48kbitrate-mono-mp3"' in fake_edge.configs[0]
    ssml = fake_edge.ssml[0]
    assert "<voice name='Microsoft Server Speech Text to Speech Voice (zh-CN, XiaoxiaoNeural)'>" in ssml
    assert "<prosody pitch='+5Hz' rate='-10%' volume='+0%'>" in ssml
    assert "您好，请问您有没有发烧？" in ssml


async def test_503_wave_is_retried(fake_edge: FakeEdge, caplog: pytest.LogCaptureFixture) -> None:
    fake_edge.plan = [503, 503]
    caplog.set_level(logging.WARNING, logger="tts.edge")
    pcm = await engine(attempts=4).synthesize("谢谢您的配合")
    assert len(pcm) > 0
    assert fake_edge.handshakes == 3
    assert [r.getMessage().split(";")[0] for r in caplog.records] == [
        "edge-tts attempt 1/4 failed (HTTP 503 Service Unavailable)",
        "edge-tts attempt 2/4 failed (HTTP 503 Service Unavailable)",
    ]


async def test_403_wave_is_retried(fake_edge: FakeEdge) -> None:
    # edge-tts itself retries one 403 after correcting its clock from the Date header; a second 403
    # in a row reaches us and is retried with backoff
    fake_edge.plan = [403, 403, 403]
    pcm = await engine(attempts=3).synthesize("谢谢")
    assert len(pcm) > 0
    assert fake_edge.handshakes == 4


async def test_no_audio_is_retried(fake_edge: FakeEdge) -> None:
    fake_edge.plan = ["noaudio"]
    pcm = await engine(attempts=2).synthesize("再见")
    assert len(pcm) > 0
    assert fake_edge.handshakes == 2


async def test_gives_up_after_bounded_attempts(fake_edge: FakeEdge) -> None:
    fake_edge.plan = [503] * 10
    with pytest.raises(TtsError, match=r"edge: HTTP 503 .* for '再见'; gave up after 3 attempts"):
        await engine(attempts=3).synthesize("再见")
    assert fake_edge.handshakes == 3


async def test_permanent_error_is_not_retried(fake_edge: FakeEdge) -> None:
    fake_edge.plan = [400]
    with pytest.raises(TtsError, match=r"HTTP 400 .*not retried"):
        await engine(attempts=4).synthesize("再见")
    assert fake_edge.handshakes == 1


async def test_unreachable_service_is_transient_then_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now: connection refused
    monkeypatch.setattr(edge_tts.communicate, "WSS_URL", f"ws://127.0.0.1:{port}{PATH}?TrustedClientToken=x")
    with pytest.raises(TtsError, match="gave up after 2 attempts"):
        await engine(attempts=2).synthesize("你好")


def test_invalid_settings_are_rejected_early() -> None:
    with pytest.raises(TtsError, match="invalid tts settings"):
        EdgeTtsEngine(rate="fast")


def test_settings_key() -> None:
    a = EdgeTtsEngine()
    assert a.name == "edge" and a.voice == "zh-CN-XiaoxiaoNeural"
    assert a.settings_key() != EdgeTtsEngine(volume="+10%").settings_key()
    assert a.settings_key() != EspeakEngine().settings_key()
