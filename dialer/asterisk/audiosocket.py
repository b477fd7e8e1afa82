"""The AudioSocket media server: each answered call's TCP connection from Asterisk as a `MediaSession`.

Wire format (Asterisk include/asterisk/res_audiosocket.h, res/res_audiosocket.c, apps/app_audiosocket.c):
every message is 1 byte kind, 2 bytes payload length (unsigned, big-endian), then the payload.

| kind | payload | direction |
|---|---|---|
| 0x00 hangup | none | us -> Asterisk (Asterisk itself just closes the socket) |
| 0x01 uuid | 16 raw bytes | Asterisk -> us, always the first message (`ast_audiosocket_init`) |
| 0x03 DTMF | 1 ASCII byte | Asterisk -> us |
| 0x10 audio | s16le, 8 kHz mono (320 bytes = 20 ms) | both ways |
| 0x11-0x18 | other slin rates | channel-driver form only; we never ask for them |
| 0xff error | bit mask (0x01 caller hung up, 0x02 frame forwarding, 0x04 memory) | Asterisk -> us |

The dialplan app forces slin 8 kHz, needs the channel answered, and errors out after 2 s with no frame
either way. Asterisk writes whatever packetization the channel has; we re-cut incoming audio into 20 ms
frames. Whatever a peer does wrong (an unknown kind, a bad length, no uuid first, an unknown uuid, no
frames for `stall_s`, audio far faster than real time, not reading what we send) ends *that* connection
with a logged reason; every other call goes on.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import struct
import uuid as uuidlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from common.audio import FRAME_BYTES, SILENCE_FRAME
from dialer.media import (
    AudioFrame,
    DtmfEvent,
    HangupEvent,
    MediaClosed,
    MediaEvent,
    check_frame,
)

log = logging.getLogger(__name__)

HEADER = struct.Struct("!BH")
MAX_PAYLOAD = 0xFFFF
DTMF_DIGITS = frozenset("0123456789*#ABCD")


class Kind(enum.IntEnum):
    HANGUP = 0x00
    UUID = 0x01
    DTMF = 0x03
    AUDIO = 0x10
    ERROR = 0xFF


SLIN_OTHER_RATES = range(0x11, 0x19)


class AudioSocketProtocolError(ValueError):
    """A peer broke the AudioSocket framing (the message says how)."""


@dataclass(frozen=True, slots=True)
class Message:
    kind: int
    payload: bytes = b""


def encode(kind: int, payload: bytes = b"") -> bytes:
    """One AudioSocket message."""
    if not 0 <= kind <= 0xFF:
        raise ValueError(f"kind {kind} is not one byte")
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    return HEADER.pack(kind, len(payload)) + payload


def encode_uuid(call_uuid: str | uuidlib.UUID) -> bytes:
    u = call_uuid if isinstance(call_uuid, uuidlib.UUID) else uuidlib.UUID(call_uuid)
    return encode(Kind.UUID, u.bytes)


def encode_audio(pcm: bytes) -> bytes:
    return encode(Kind.AUDIO, pcm)


def encode_dtmf(digit: str) -> bytes:
    return encode(Kind.DTMF, digit.encode("ascii"))


HANGUP_MESSAGE = encode(Kind.HANGUP)
_AUDIO_HEADER = HEADER.pack(Kind.AUDIO, FRAME_BYTES)
_AUDIO_MSG = 3 + FRAME_BYTES


class Decoder:
    """Incremental parser: bytes in, messages out. Validates what a message of each kind must hold.

    `max_audio` bounds one audio payload (Asterisk sends one channel frame per message: 20-60 ms).
    """

    def __init__(self, *, max_audio: int = 4000) -> None:
        self._buf = bytearray()
        self.max_audio = max_audio

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[Message]:
        self._buf += data
        out: list[Message] = []
        buf = self._buf
        pos = 0
        n = len(buf)
        while n - pos >= 3:
            kind, length = HEADER.unpack_from(buf, pos)
            self._check_header(kind, length)
            if n - pos - 3 < length:
                break
            payload = bytes(buf[pos + 3 : pos + 3 + length])
            pos += 3 + length
            self._check_payload(kind, payload)
            out.append(Message(kind, payload))
        if pos:
            del buf[:pos]
        return out

    def _check_header(self, kind: int, length: int) -> None:
        if kind == Kind.AUDIO:
            if length == 0 or length % 2 or length > self.max_audio:
                raise AudioSocketProtocolError(
                    f"audio message of {length} bytes (expected an even length of 2..{self.max_audio})"
                )
        elif kind == Kind.UUID:
            if length != 16:
                raise AudioSocketProtocolError(f"uuid message of {length} bytes (expected 16)")
        elif kind == Kind.DTMF:
            if length != 1:
                raise AudioSocketProtocolError(f"DTMF message of {length} bytes (expected 1)")
        elif kind == Kind.HANGUP:
            if length != 0:
                raise AudioSocketProtocolError(f"hangup message with a {length}-byte payload (expected none)")
        elif kind == Kind.ERROR:
            if length > 16:
                raise AudioSocketProtocolError(f"error message of {length} bytes (expected a short bit mask)")
        elif kind in SLIN_OTHER_RATES:
            raise AudioSocketProtocolError(f"audio kind 0x{kind:02x} (only slin 8 kHz, kind 0x10, is spoken here)")
        else:
            raise AudioSocketProtocolError(f"unknown message kind 0x{kind:02x}")

    @staticmethod
    def _check_payload(kind: int, payload: bytes) -> None:
        if kind == Kind.DTMF:
            digit = chr(payload[0])
            if digit not in DTMF_DIGITS:
                raise AudioSocketProtocolError(f"DTMF message with byte 0x{payload[0]:02x} (not a key)")


def error_text(payload: bytes) -> str:
    """Asterisk's error bit mask in words."""
    code = int.from_bytes(payload, "big") if payload else 0
    words = []
    if code & 0x01:
        words.append("calling party hung up")
    if code & 0x02:
        words.append("frame forwarding error")
    if code & 0x04:
        words.append("memory error")
    return ", ".join(words) or f"error 0x{code:x}"


# ============================================================================ the session (one call)


@dataclass(frozen=True, slots=True)
class Limits:
    """When a peer is misbehaving enough to end its call."""

    uuid_timeout_s: float = 2.0  # connected but no uuid message
    stall_s: float = 2.0  # no message from Asterisk for this long (its own timeout is 2 s too)
    flood_frames: int = 100  # audio frames beyond real time (plus this burst) end the call
    max_queued: int = 500  # undelivered events (10 s of audio): the consumer is not reading
    write_buffer_bytes: int = 64000  # unsent bytes towards Asterisk (~2 s of audio): it stopped reading
    keepalive_s: float = 0.5  # send one silent frame when we sent nothing for this long
    linger_s: float = 2.0  # after our hangup message, how long we wait for Asterisk to close its side
    frame_period_s: float = 0.020  # real time; tests may run the line faster


class AudioSocketSession:
    """One call's AudioSocket connection, as a `dialer.media.MediaSession`."""

    def __init__(self, call_id: str, protocol: _Connection) -> None:
        self._call_id = call_id
        self._proto = protocol
        self._inbox: deque[MediaEvent] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._hangup: HangupEvent | None = None  # read by the consumer
        self.end_reason: str | None = None  # set when the connection ended
        self.ended: asyncio.Future[str] = asyncio.get_running_loop().create_future()  # -> reason
        self.frames_in = 0
        self.frames_out = 0
        self.peer = protocol.peer

    @property
    def call_id(self) -> str:
        return self._call_id

    @property
    def closed(self) -> bool:
        return self.end_reason is not None

    async def receive(self) -> MediaEvent:
        inbox = self._inbox
        while not inbox:
            if self._hangup is not None:
                return self._hangup
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self._waiter = None
        event = inbox.popleft()
        if type(event) is HangupEvent:
            self._hangup = event  # and it keeps being returned
        return event

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    async def send_audio(self, pcm: bytes) -> None:
        if self.end_reason is not None or self._proto.closing:
            raise MediaClosed(f"call {self._call_id} has ended")
        check_frame(pcm)
        self.frames_out += 1
        self._proto.write_audio(pcm)

    async def hangup(self) -> None:
        """End the call from our side: an AudioSocket hangup message, then close the socket."""
        self._proto.end("robot", send_hangup=True)

    # -- from the connection

    def _deliver(self, event: MediaEvent) -> bool:
        if self.end_reason is not None:
            return True
        if len(self._inbox) >= self._proto.limits.max_queued:
            return False
        if type(event) is AudioFrame:
            self.frames_in += 1
        self._inbox.append(event)
        if self._waiter is not None:
            self._wake()
        return True

    def _closed(self, cause: str) -> None:
        if self.end_reason is None:
            self.end_reason = cause
            self._inbox.append(HangupEvent(cause))  # after what arrived before it, in order
            self._wake()
        if not self.ended.done():
            self.ended.set_result(cause)


class _Connection(asyncio.Protocol):
    """One TCP connection from Asterisk."""

    def __init__(self, server: AudioSocketServer) -> None:
        self.server = server
        self.limits = server.limits
        self.decoder = Decoder()
        self.transport: asyncio.Transport | None = None
        self.session: AudioSocketSession | None = None
        self.closing = False
        self.peer = "?"
        self._pcm = bytearray()  # incoming audio not yet a whole 20 ms frame
        self._last_rx = 0.0
        self._last_tx = 0.0
        self._t0 = 0.0
        self._frames_rx = 0
        self._timer: asyncio.TimerHandle | None = None
        self._ended_told = False
        self.reason = ""

    # -- asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        loop = asyncio.get_running_loop()
        self._last_rx = self._last_tx = loop.time()
        self.server._connections.add(self)
        self._timer = loop.call_later(self.limits.uuid_timeout_s, self._tick)

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        self._last_rx = now = asyncio.get_running_loop().time()
        # Fast path, the common case on a live call: whole 20 ms audio messages and nothing pending.
        n = len(data)
        if self.session is not None and not self._pcm and not self.decoder.buffered and n % _AUDIO_MSG == 0:
            if all(data[i : i + 3] == _AUDIO_HEADER for i in range(0, n, _AUDIO_MSG)):
                self._audio_frames([data[i + 3 : i + _AUDIO_MSG] for i in range(0, n, _AUDIO_MSG)], now)
                return
        try:
            messages = self.decoder.feed(data)
        except AudioSocketProtocolError as exc:
            self._fail(f"protocol error: {exc}")
            return
        for msg in messages:
            if self.closing:
                return
            self._on_message(msg)

    def eof_received(self) -> bool | None:
        self.end("caller")
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.server._connections.discard(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self.closing:
            self.closing = True
            self.reason = "caller" if exc is None else f"connection lost: {exc}"
        self._ended()

    def _ended(self) -> None:
        """Tell the session and the server, once, that this call's media is over."""
        session = self.session
        if session is None or self._ended_told:
            return
        self._ended_told = True
        session._closed(self.reason or "caller")
        self.server._session_ended(session, self.reason or "caller")

    # -- messages

    def _on_message(self, msg: Message) -> None:
        if self.session is None:
            if msg.kind != Kind.UUID:
                self._fail(f"first message is kind 0x{msg.kind:02x}, not the uuid")
                return
            call_id = str(uuidlib.UUID(bytes=msg.payload))
            session = self.server._claim(call_id, self)
            if session is None:
                return
            self.session = session
            loop = asyncio.get_running_loop()
            self._t0 = loop.time()
            if self._timer is not None:
                self._timer.cancel()
            self._timer = loop.call_later(self._step(), self._tick)
            return
        kind = msg.kind
        if kind == Kind.AUDIO:
            self._on_audio(msg.payload)
        elif kind == Kind.DTMF:
            self._push(DtmfEvent(chr(msg.payload[0])))
        elif kind == Kind.HANGUP:
            self.end("caller")
        elif kind == Kind.ERROR:
            text = error_text(msg.payload)
            if int.from_bytes(msg.payload, "big") == 0x01:
                self.end("caller")
            else:
                self._fail(f"Asterisk reported an error: {text}")
        elif kind == Kind.UUID:
            self._fail("a second uuid message")

    def _on_audio(self, pcm: bytes) -> None:
        buf = self._pcm
        buf += pcm
        while len(buf) >= FRAME_BYTES:
            frame = bytes(buf[:FRAME_BYTES])
            del buf[:FRAME_BYTES]
            self._frames_rx += 1
            if not self._push(AudioFrame(frame)):
                return
        self._check_flood()  # more audio than real time allows (plus a burst)

    def _audio_frames(self, frames: list[bytes], now: float) -> None:
        self._frames_rx += len(frames)
        for pcm in frames:
            if not self._push(AudioFrame(pcm)):
                return
        self._check_flood(now)

    def _check_flood(self, now: float | None = None) -> None:
        if now is None:
            now = asyncio.get_running_loop().time()
        elapsed = now - self._t0
        allowed = elapsed / self.limits.frame_period_s
        if self._frames_rx > allowed + self.limits.flood_frames:
            self._fail(f"flood: {self._frames_rx} audio frames in {elapsed:.2f} s (real time allows {allowed:.0f})")

    def _push(self, event: MediaEvent) -> bool:
        session = self.session
        assert session is not None
        if not session._deliver(event):
            self._fail(f"backlog: more than {self.limits.max_queued} events not read by the robot")
            return False
        return True

    # -- towards Asterisk

    def write_audio(self, pcm: bytes) -> None:
        transport = self.transport
        if transport is None or self.closing:
            return
        if transport.get_write_buffer_size() > self.limits.write_buffer_bytes:
            self._fail("Asterisk stopped reading our audio (write buffer full)")
            return
        transport.write(encode_audio(pcm))
        self._last_tx = asyncio.get_running_loop().time()

    # -- ending

    def _tick(self) -> None:
        self._timer = None
        if self.closing:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self.session is None:
            self._fail(f"no uuid message within {self.limits.uuid_timeout_s:.1f} s")
            return
        if now - self._last_rx > self.limits.stall_s:
            self._fail(f"stall: no message from Asterisk for {now - self._last_rx:.1f} s")
            return
        if now - self._last_tx >= self.limits.keepalive_s and self.transport is not None:
            self.transport.write(encode_audio(SILENCE_FRAME))
            self._last_tx = now
        self._timer = loop.call_later(self._step(), self._tick)

    def _step(self) -> float:
        return min(self.limits.keepalive_s, self.limits.stall_s / 4)

    def _fail(self, reason: str) -> None:
        who = self.session.call_id if self.session is not None else f"peer {self.peer}"
        log.warning("AudioSocket call %s ended: %s", who, reason)
        self.end(reason, send_hangup=True)

    def end(self, reason: str, *, send_hangup: bool = False) -> None:
        if self.closing:
            return
        self.closing = True
        self.reason = reason
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        transport = self.transport
        if transport is not None:
            if send_hangup and not transport.is_closing() and transport.can_write_eof():
                # A lingering close: hangup message, then FIN, and we keep reading (and dropping) until
                # Asterisk closes its side. Closing at once while its audio still arrives would answer
                # with a TCP reset, which can discard our hangup message before Asterisk reads it.
                try:
                    transport.write(HANGUP_MESSAGE)
                    transport.write_eof()
                except (OSError, RuntimeError):
                    transport.close()
                else:
                    self._timer = asyncio.get_running_loop().call_later(self.limits.linger_s, transport.close)
            else:
                if send_hangup:
                    try:
                        transport.write(HANGUP_MESSAGE)
                    except (OSError, RuntimeError):
                        pass
                transport.close()  # connection_lost follows
        self._ended()  # the robot hears of the end now, not when the socket is finally gone


SessionHandler = Callable[[AudioSocketSession], None]


class AudioSocketServer:
    """Listens for Asterisk's AudioSocket connections and hands each to the call waiting for its uuid.

    `expect(call_id)` registers a call about to be answered and returns a future for its session.
    A uuid nobody expects goes to `on_unexpected` (inbound calls) when set, else it is refused.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        limits: Limits | None = None,
        on_unexpected: SessionHandler | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.limits = limits or Limits()
        self.on_unexpected = on_unexpected
        self._server: asyncio.AbstractServer | None = None
        self._waiting: dict[str, asyncio.Future[AudioSocketSession]] = {}
        self._active: dict[str, AudioSocketSession] = {}
        self._connections: set[_Connection] = set()
        self.refused: deque[tuple[str, str]] = deque(maxlen=1000)  # (uuid or peer, reason)
        self.ended: deque[tuple[str, str]] = deque(maxlen=10000)  # (call id, reason)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self), self.host, self.port)
        sock = self._server.sockets[0]
        self.port = sock.getsockname()[1]
        log.info("AudioSocket server listening on %s:%d", self.host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self._connections):
            conn.end("server stopping", send_hangup=True)
        for fut in self._waiting.values():
            if not fut.done():
                fut.cancel()
        self._waiting.clear()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> AudioSocketServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def active(self) -> int:
        return len(self._active)

    def expect(self, call_id: str) -> asyncio.Future[AudioSocketSession]:
        """Register a call before it is dialled; the future gets its session when Asterisk connects."""
        call_id = str(uuidlib.UUID(call_id))
        fut: asyncio.Future[AudioSocketSession] = asyncio.get_running_loop().create_future()
        self._waiting[call_id] = fut
        return fut

    def forget(self, call_id: str) -> None:
        """The call will not connect (it failed, or it is over): stop waiting for it."""
        call_id = str(uuidlib.UUID(call_id))
        fut = self._waiting.pop(call_id, None)
        if fut is not None and not fut.done():
            fut.cancel()

    def session(self, call_id: str) -> AudioSocketSession | None:
        return self._active.get(str(uuidlib.UUID(call_id)))

    def _claim(self, call_id: str, conn: _Connection) -> AudioSocketSession | None:
        if call_id in self._active:
            conn._fail(f"uuid {call_id} is already connected")
            return None
        fut = self._waiting.pop(call_id, None)
        if fut is not None and not fut.done():
            session = AudioSocketSession(call_id, conn)
            self._active[call_id] = session
            fut.set_result(session)
            return session
        if self.on_unexpected is not None:
            session = AudioSocketSession(call_id, conn)
            self._active[call_id] = session
            try:
                self.on_unexpected(session)
            except Exception:
                log.exception("AudioSocket: the handler for call %s failed", call_id)
                conn.end("handler failed", send_hangup=True)
            return session
        self.refused.append((call_id, "unknown uuid"))
        conn._fail(f"unknown uuid {call_id} (no call of ours waits for it)")
        return None

    def _session_ended(self, session: AudioSocketSession, reason: str) -> None:
        if self._active.get(session.call_id) is session:
            del self._active[session.call_id]
        self.ended.append((session.call_id, reason))
