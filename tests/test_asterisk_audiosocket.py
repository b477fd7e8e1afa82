"""The AudioSocket media server over real sockets: framing, one session per call, faults end one call only.

Clients here write the wire format by hand (res_audiosocket.c: kind byte, big-endian length, payload;
the 16-byte uuid first), not with the server's encoder.
"""

from __future__ import annotations

import asyncio
import struct
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.audio import FRAME_BYTES
from dialer.asterisk.audiosocket import (
    AudioSocketProtocolError,
    AudioSocketServer,
    AudioSocketSession,
    Decoder,
    Kind,
    Limits,
    Message,
    encode,
)
from dialer.media import AudioFrame, DtmfEvent, HangupEvent, MediaClosed


def frame(kind: int, payload: bytes = b"") -> bytes:
    return bytes([kind]) + struct.pack(">H", len(payload)) + payload


AUDIO = b"\x10\x00" * (FRAME_BYTES // 2)

# ----------------------------------------------------------------------------- pure framing


valid_messages = st.one_of(
    st.binary(min_size=16, max_size=16).map(lambda b: Message(Kind.UUID, b)),
    st.integers(1, 400).map(lambda n: Message(Kind.AUDIO, b"\x01\x02" * n)),
    st.sampled_from("0123456789*#").map(lambda d: Message(Kind.DTMF, d.encode())),
    st.just(Message(Kind.HANGUP)),
    st.binary(min_size=1, max_size=1).map(lambda b: Message(Kind.ERROR, b)),
)


@given(st.lists(valid_messages, max_size=20), st.lists(st.integers(1, 50), max_size=30))
def test_decoder_reassembles_messages_split_anywhere(msgs: list[Message], cuts: list[int]) -> None:
    wire = b"".join(frame(m.kind, m.payload) for m in msgs)
    assert wire == b"".join(encode(m.kind, m.payload) for m in msgs)
    dec = Decoder(max_audio=800)
    out: list[Message] = []
    pos = 0
    for c in cuts:
        out += dec.feed(wire[pos : pos + c])
        pos += c
    out += dec.feed(wire[pos:])
    assert out == msgs
    assert dec.buffered == 0


@given(st.binary(max_size=200))
def test_garbage_gives_a_protocol_error_or_messages_never_anything_else(data: bytes) -> None:
    dec = Decoder()
    try:
        for m in dec.feed(data):
            assert isinstance(m, Message)
    except AudioSocketProtocolError as exc:
        assert str(exc)


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        (frame(0x10, b"\x01"), "audio message of 1 bytes"),
        (frame(0x10), "audio message of 0 bytes"),
        (b"\x10\xff\xff", "audio message of 65535 bytes"),
        (frame(0x01, b"\x00" * 15), "uuid message of 15 bytes"),
        (frame(0x03, b"12"), "DTMF message of 2 bytes"),
        (frame(0x03, b"x"), "not a key"),
        (frame(0x12, b"\x00\x00"), "only slin 8 kHz"),
        (frame(0x42, b"\x00"), "unknown message kind 0x42"),
        (frame(0x00, b"\x00"), "hangup message with a 1-byte payload"),
    ],
)
def test_bad_messages_are_named(wire: bytes, message: str) -> None:
    with pytest.raises(AudioSocketProtocolError, match=message):
        Decoder().feed(wire)


# ----------------------------------------------------------------------------- the server


class Client:
    """Asterisk's side of one call, by hand."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int, call_id: str | None = None) -> Client:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        c = cls(r, w)
        if call_id is not None:
            w.write(frame(0x01, uuid.UUID(call_id).bytes))
        return c

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def read_message(self, within_s: float = 3.0) -> tuple[int, bytes] | None:
        try:
            head = await asyncio.wait_for(self.reader.readexactly(3), within_s)
        except asyncio.IncompleteReadError:
            return None
        kind, length = head[0], struct.unpack(">H", head[1:])[0]
        return kind, await self.reader.readexactly(length)

    async def closed_by_server(self, within_s: float = 3.0) -> list[int]:
        """Read until EOF; returns the kinds received."""
        kinds = []
        async with asyncio.timeout(within_s):
            while (m := await self.read_message(within_s)) is not None:
                kinds.append(m[0])
        return kinds

    def close(self) -> None:
        self.writer.close()


async def test_a_call_streams_both_ways_with_keys_and_ends_on_caller_hangup() -> None:
    async with AudioSocketServer(port=0) as server:
        cid = str(uuid.uuid4())
        waiting = server.expect(cid)
        client = await Client.connect(server.port, cid)
        session = await asyncio.wait_for(waiting, 3)
        assert isinstance(session, AudioSocketSession) and session.call_id == cid
        # Asterisk's packetization need not be 20 ms: 30 ms + 10 ms become two 20 ms frames.
        client.send(frame(0x10, AUDIO + AUDIO[: FRAME_BYTES // 2]) + frame(0x03, b"5") + frame(0x10, AUDIO[: FRAME_BYTES // 2]))
        events = [await asyncio.wait_for(session.receive(), 2) for _ in range(3)]
        assert events[0] == AudioFrame(AUDIO)
        assert events[1] == DtmfEvent("5")
        assert isinstance(events[2], AudioFrame) and len(events[2].pcm) == FRAME_BYTES
        await session.send_audio(b"\x05\x00" * 160)
        assert await client.read_message() == (0x10, b"\x05\x00" * 160)
        client.close()  # Asterisk hangs up by closing the socket
        ev = await asyncio.wait_for(session.receive(), 2)
        assert isinstance(ev, HangupEvent) and ev.cause == "caller"
        assert isinstance(await session.receive(), HangupEvent)  # stays hung up
        with pytest.raises(MediaClosed):
            await session.send_audio(b"\x00" * FRAME_BYTES)


async def test_robot_hangup_sends_the_hangup_message_then_closes() -> None:
    async with AudioSocketServer(port=0) as server:
        cid = str(uuid.uuid4())
        waiting = server.expect(cid)
        client = await Client.connect(server.port, cid)
        session = await asyncio.wait_for(waiting, 3)
        await session.hangup()
        await session.hangup()  # idempotent
        assert await client.closed_by_server() == [0x00]
        assert isinstance(await asyncio.wait_for(session.receive(), 2), HangupEvent)


async def test_robot_hangup_reaches_a_peer_whose_audio_is_still_arriving() -> None:
    """Closing a socket with unread audio in it answers with a TCP reset, which can throw away our hangup
    message before Asterisk reads it (seen as 'robot closed the socket' on a loaded machine). We send the
    hangup, half-close, and drain until the peer closes."""
    async with AudioSocketServer(port=0) as server:
        for _ in range(20):
            cid = str(uuid.uuid4())
            waiting = server.expect(cid)
            client = await Client.connect(server.port, cid)
            session = await asyncio.wait_for(waiting, 3)
            client.send(frame(0x10, AUDIO) * 20)  # in the server's socket, not read yet
            await session.hangup()
            ev = await asyncio.wait_for(session.receive(), 2)
            assert isinstance(ev, HangupEvent) and ev.cause == "robot"  # told at once, not after the linger
            await asyncio.sleep(0.01)  # the reset (if any) lands before we read
            assert await client.read_message() == (0x00, b"")
            client.send(frame(0x10, AUDIO))  # Asterisk may still be sending; the server drops it quietly
            client.close()
        await asyncio.sleep(0.05)
        assert server.active == 0


async def test_silence_keeps_an_idle_call_alive() -> None:
    limits = Limits(keepalive_s=0.1, stall_s=5.0)
    async with AudioSocketServer(port=0, limits=limits) as server:
        cid = str(uuid.uuid4())
        waiting = server.expect(cid)
        client = await Client.connect(server.port, cid)
        await asyncio.wait_for(waiting, 3)
        got = await client.read_message(within_s=2.0)
        assert got == (0x10, b"\x00" * FRAME_BYTES)  # we sent nothing: the server filled in silence
        client.close()


async def _good_call(server: AudioSocketServer) -> tuple[Client, AudioSocketSession]:
    cid = str(uuid.uuid4())
    waiting = server.expect(cid)
    client = await Client.connect(server.port, cid)
    return client, await asyncio.wait_for(waiting, 3)


@pytest.mark.parametrize(
    ("name", "wire", "reason"),
    [
        ("unknown kind", frame(0x42, b"\x00"), "unknown message kind"),
        ("odd audio length", frame(0x10, b"\x00" * 321), "audio message of 321 bytes"),
        ("oversized audio", b"\x10\x7f\xff", "audio message of 32767 bytes"),
        ("second uuid", frame(0x01, uuid.uuid4().bytes), "a second uuid"),
        ("error frame", frame(0xFF, b"\x02"), "frame forwarding error"),
    ],
)
async def test_a_bad_frame_ends_only_that_call(name: str, wire: bytes, reason: str, caplog: pytest.LogCaptureFixture) -> None:
    async with AudioSocketServer(port=0) as server:
        good, good_session = await _good_call(server)
        bad, bad_session = await _good_call(server)
        bad.send(wire)
        assert 0x00 in await bad.closed_by_server()
        ev = await asyncio.wait_for(bad_session.receive(), 2)
        assert isinstance(ev, HangupEvent) and reason in ev.cause
        assert reason in caplog.text and bad_session.call_id in caplog.text
        # The other call goes on, both ways.
        good.send(frame(0x10, AUDIO))
        assert await asyncio.wait_for(good_session.receive(), 2) == AudioFrame(AUDIO)
        await good_session.send_audio(AUDIO)
        assert await good.read_message() == (0x10, AUDIO)
        assert server.active == 1
        good.close()


async def test_unknown_uuid_no_uuid_and_audio_first_are_refused() -> None:
    async with AudioSocketServer(port=0, limits=Limits(uuid_timeout_s=0.3)) as server:
        good, good_session = await _good_call(server)
        stranger = await Client.connect(server.port, str(uuid.uuid4()))
        assert await stranger.closed_by_server() == [0x00]
        assert server.refused and server.refused[-1][1] == "unknown uuid"
        silent = await Client.connect(server.port)  # never sends its uuid
        assert await silent.closed_by_server() == [0x00]
        audio_first = await Client.connect(server.port)
        audio_first.send(frame(0x10, AUDIO))
        assert await audio_first.closed_by_server() == [0x00]
        good.send(frame(0x03, b"#"))
        assert await asyncio.wait_for(good_session.receive(), 2) == DtmfEvent("#")
        good.close()


async def test_a_stalled_peer_and_a_flooding_peer_end_their_calls_only() -> None:
    limits = Limits(stall_s=0.4, keepalive_s=0.1, flood_frames=50)
    async with AudioSocketServer(port=0, limits=limits) as server:
        good, good_session = await _good_call(server)
        stalled, stalled_session = await _good_call(server)
        flooder, flood_session = await _good_call(server)
        flooder.send(frame(0x10, AUDIO) * 400)  # 8 s of audio at once
        feeder_stop = asyncio.Event()

        async def feed_good() -> None:
            while not feeder_stop.is_set():
                good.send(frame(0x10, AUDIO))
                await asyncio.sleep(0.02)

        feeder = asyncio.create_task(feed_good())
        ends = {}
        for name, s in (("stall", stalled_session), ("flood", flood_session)):
            ev = await asyncio.wait_for(s.ended, 3)
            ends[name] = ev
        assert "stall" in ends["stall"] and "flood" in ends["flood"]
        await asyncio.sleep(0.5)
        assert not good_session.closed and server.active == 1
        feeder_stop.set()
        await feeder
        good.close()
        stalled.close()
        flooder.close()


async def test_a_robot_that_stops_reading_is_cut_off() -> None:
    limits = Limits(max_queued=20, stall_s=5)
    async with AudioSocketServer(port=0, limits=limits) as server:
        client, session = await _good_call(server)
        client.send(frame(0x10, AUDIO) * 30)  # within flood tolerance, but nobody reads
        reason = await asyncio.wait_for(session.ended, 3)
        assert "backlog" in reason
        client.close()


async def test_two_connections_with_the_same_uuid() -> None:
    async with AudioSocketServer(port=0) as server:
        cid = str(uuid.uuid4())
        waiting = server.expect(cid)
        first = await Client.connect(server.port, cid)
        session = await asyncio.wait_for(waiting, 3)
        second = await Client.connect(server.port, cid)
        assert await second.closed_by_server() == [0x00]
        assert not session.closed
        first.close()
