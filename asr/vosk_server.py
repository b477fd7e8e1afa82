"""`asr.engine: vosk-server`: recognition on separate machines through Vosk's own WebSocket server.

Protocol (alphacep/vosk-server `websocket/asr_server.py`):

1. the client opens a WebSocket and may send a text message `{"config": {...}}` with `sample_rate`,
   `words`, `phrase_list`, `max_alternatives`; the server creates its recognizer at the first audio;
2. binary messages carry s16le mono audio; the server answers each one with a JSON text message, either
   `{"partial": "..."}` or, when its endpointer fired, a result `{"text": "...", "result": [{"word",
   "conf", "start", "end"}, ...]}`;
3. the text message `{"eof" : 1}` (the server compares this exact string) asks for the final result,
   after which the server sends it and closes the connection.

The server fixes its recognizer (and grammar) at the first audio of a connection, so this client opens
one connection per utterance, lazily at the first audio, and resamples 8 -> 16 kHz locally so the
server can run the small wideband models. Hints are sent as `phrase_list` only when `send_hints` is set:
the server drops every token missing from its model's vocabulary, so they must be pre-segmented words.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from asr.base import AsrError, AsrResult
from asr.resample import ASR_RATE, StreamResampler
from asr.vosk_asr import UNK, _collect

log = logging.getLogger(__name__)

EOF_MESSAGE = '{"eof" : 1}'


class VoskServerRecognizer:
    """Client of one vosk-server (`ws://host:2700`)."""

    name = "vosk-server"

    def __init__(
        self,
        url: str,
        *,
        chunk_ms: int = 200,
        send_hints: bool = False,
        connect_timeout_s: float = 5.0,
        result_timeout_s: float = 10.0,
    ) -> None:
        if not url.startswith(("ws://", "wss://")):
            raise AsrError(f"vosk-server: asr.server_url must be a ws:// or wss:// URL, got {url!r}")
        self.url = url
        self.chunk_bytes = ASR_RATE * 2 * chunk_ms // 1000
        self.send_hints = send_hints
        self.connect_timeout_s = connect_timeout_s
        self.result_timeout_s = result_timeout_s

    async def open_stream(self, *, call_id: str = "") -> VoskServerStream:
        return VoskServerStream(self, call_id)

    async def close(self) -> None:
        return None


class VoskServerStream:
    def __init__(self, owner: VoskServerRecognizer, call_id: str) -> None:
        self._owner = owner
        self.call_id = call_id
        self._hints: tuple[str, ...] = ()
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._resampler = StreamResampler()
        self._buf = bytearray()
        self._texts: list[str] = []
        self._confs: list[float] = []
        self._partial = ""
        self._closed = False

    @property
    def partial(self) -> str:
        return self._partial

    def set_hints(self, hints: Sequence[str]) -> None:
        self._hints = tuple(hints)

    async def feed(self, pcm_8k: bytes) -> None:
        if self._closed:
            raise AsrError(f"vosk-server: stream of call {self.call_id} is closed")
        self._buf += self._resampler.process(pcm_8k)
        while len(self._buf) >= self._owner.chunk_bytes:
            chunk = bytes(self._buf[: self._owner.chunk_bytes])
            del self._buf[: self._owner.chunk_bytes]
            await self._send(chunk)

    async def finish(self) -> AsrResult:
        if self._closed:
            raise AsrError(f"vosk-server: stream of call {self.call_id} is closed")
        self._buf += self._resampler.flush()
        if self._buf:
            await self._send(bytes(self._buf))
            self._buf.clear()
        ws, reader = self._ws, self._reader
        self._ws = None
        self._reader = None
        if ws is None or reader is None:
            return AsrResult("", 0.0)  # no audio at all
        try:
            await ws.send(EOF_MESSAGE)
            async with asyncio.timeout(self._owner.result_timeout_s):
                await reader
        except TimeoutError as exc:
            reader.cancel()
            await ws.close()
            raise AsrError(
                f"vosk-server {self._owner.url}: no final result within {self._owner.result_timeout_s} s "
                f"(call {self.call_id})"
            ) from exc
        except (ConnectionClosed, OSError) as exc:
            raise AsrError(f"vosk-server {self._owner.url}: connection lost (call {self.call_id}): {exc}") from exc
        finally:
            await ws.close()
        text = " ".join(self._texts)
        conf = sum(self._confs) / len(self._confs) if self._confs else 0.0
        self._texts = []
        self._confs = []
        self._partial = ""
        return AsrResult(text, round(conf, 4))

    async def cancel(self) -> None:
        await self._drop()

    async def close(self) -> None:
        self._closed = True
        await self._drop()

    # ------------------------------------------------------------------ internals

    async def _drop(self) -> None:
        ws, reader = self._ws, self._reader
        self._ws = None
        self._reader = None
        if reader is not None:
            reader.cancel()
            try:
                await reader
            except (asyncio.CancelledError, AsrError):
                pass
        if ws is not None:
            await ws.close()
        self._resampler.reset()
        self._buf.clear()
        self._texts = []
        self._confs = []
        self._partial = ""

    async def _send(self, chunk: bytes) -> None:
        if self._ws is None:
            await self._connect()
        assert self._ws is not None
        try:
            await self._ws.send(chunk)
        except (ConnectionClosed, OSError) as exc:
            raise AsrError(f"vosk-server {self._owner.url}: connection lost (call {self.call_id}): {exc}") from exc

    async def _connect(self) -> None:
        url = self._owner.url
        try:
            async with asyncio.timeout(self._owner.connect_timeout_s):
                ws = await connect(url, max_size=2**22, compression=None)
        except (TimeoutError, OSError, WebSocketException) as exc:
            raise AsrError(f"vosk-server: cannot connect to {url} (call {self.call_id}): {exc}") from exc
        config: dict[str, Any] = {"sample_rate": ASR_RATE, "words": True}
        if self._owner.send_hints and self._hints:
            config["phrase_list"] = [*self._hints, UNK]
        await ws.send(json.dumps({"config": config}, ensure_ascii=False))
        self._texts = []
        self._confs = []
        self._ws = ws
        self._reader = asyncio.create_task(self._read(ws), name=f"vosk-server-{self.call_id}")

    async def _read(self, ws: ClientConnection) -> None:
        """Collect results until the server closes the connection (it does after the final result)."""
        try:
            async for message in ws:
                if not isinstance(message, str):
                    continue
                try:
                    data = json.loads(message)
                except ValueError:
                    log.warning("vosk-server: call %s: a message that is not JSON: %.80r", self.call_id, message)
                    continue
                if "partial" in data:
                    partial = [t for t in str(data["partial"]).split() if t != UNK]
                    self._partial = " ".join([*self._texts, *partial])
                elif "text" in data or "result" in data:
                    _collect(data, self._texts, self._confs)
                    self._partial = " ".join(self._texts)
        except ConnectionClosed:
            return
