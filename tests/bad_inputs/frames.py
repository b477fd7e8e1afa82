"""Bad network frames: AudioSocket connections (what Asterisk sends our media server) and AMI messages (what
the manager sends our client), judged like the CLI cases.

AudioSocket: the real `AudioSocketServer` with two calls of ours connected; the bad bytes go on one connection
(or on a new one). The bad connection must be closed with a logged reason naming the call (or refused, for a
connection that never became a call), the good call must still carry audio both ways, and the log must hold no
traceback and no unmasked number.

AMI: the real `AsteriskTelephony` over the fake Asterisk of tests/fake_asterisk.py (the wire format of
reference/dialer.md); the bad message is written on the manager connection while a call rings. That call must
still end with its true outcome (busy), the backend must stay healthy, and the log must hold no traceback and no
unmasked number (the ringing number is one of the secret numbers of the corpus).
"""

from __future__ import annotations

import asyncio
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.bad_inputs.harness import Outcome, captured_logs, unmasked_numbers

AUDIO = b"\x00\x10" * 160


def frame(kind: int, payload: bytes = b"") -> bytes:
    return bytes([kind]) + len(payload).to_bytes(2, "big") + payload


@dataclass
class FrameCase:
    """`wire`: the bytes the peer sends. AudioSocket: `on` is "call" (a connected call of ours), "new" (a new
    connection: the bytes are all it sends) or "stranger" (a new connection with an unknown uuid first);
    `reason`: text the log must hold about the bad connection. AMI: the bytes arrive while a call rings."""

    id: str
    kind: str  # "audiosocket" or "ami"
    wire: bytes | Callable[[], bytes]
    reason: str = ""
    on: str = "call"
    close_after: bool = False  # the peer closes its side right after sending (truncated frames)

    @property
    def accepted(self) -> bool:
        return False


async def _read_until_closed(reader: asyncio.StreamReader, within_s: float) -> bool:
    """True when the server closed the connection within `within_s` (whatever it sent first)."""
    try:
        async with asyncio.timeout(within_s):
            while await reader.read(65536):
                pass
        return True
    except (TimeoutError, ConnectionError):
        return False


async def _audiosocket(case: FrameCase) -> list[str]:
    from dialer.asterisk.audiosocket import AudioSocketServer, Limits
    from dialer.media import AudioFrame, HangupEvent

    problems: list[str] = []
    wire = case.wire() if callable(case.wire) else case.wire
    async with AudioSocketServer(port=0, limits=Limits(uuid_timeout_s=0.5, stall_s=3.0, flood_frames=50)) as server:
        async def call() -> tuple[str, asyncio.StreamReader, asyncio.StreamWriter, Any]:
            cid = str(uuid.uuid4())
            waiting = server.expect(cid)
            r, w = await asyncio.open_connection("127.0.0.1", server.port)
            w.write(frame(0x01, uuid.UUID(cid).bytes))
            return cid, r, w, await asyncio.wait_for(waiting, 3)

        good_id, good_r, good_w, good = await call()
        if case.on == "call":
            bad_id, bad_r, bad_w, bad = await call()
        else:
            bad_id, bad = "", None
            bad_r, bad_w = await asyncio.open_connection("127.0.0.1", server.port)
            if case.on == "stranger":
                bad_id = str(uuid.uuid4())
                bad_w.write(frame(0x01, uuid.UUID(bad_id).bytes))
        bad_w.write(wire)
        await bad_w.drain()
        if case.close_after:
            bad_w.close()
        else:
            if not await _read_until_closed(bad_r, 3.0):
                problems.append("the bad connection was not closed")
            bad_w.close()
        if bad is not None:
            try:
                ev = await asyncio.wait_for(_last_event(bad), 3)
            except TimeoutError:
                problems.append("the robot never heard that the bad call ended")
            else:
                if not isinstance(ev, HangupEvent):
                    problems.append(f"the bad call ended with {ev!r}")
        # the good call goes on, both ways
        good_w.write(frame(0x10, AUDIO))
        try:
            got = await asyncio.wait_for(good.receive(), 2)
            if got != AudioFrame(AUDIO):
                problems.append(f"the good call got {got!r}")
            await good.send_audio(AUDIO)
            async with asyncio.timeout(2):
                while True:
                    head = await good_r.readexactly(3)
                    payload = await good_r.readexactly(int.from_bytes(head[1:], "big"))
                    if head[0] == 0x10 and payload == AUDIO:
                        break
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError) as exc:
            problems.append(f"the good call was affected: {type(exc).__name__}")
        await asyncio.sleep(0.05)
        if server.active != 1:
            problems.append(f"{server.active} calls active, expected only the good one")
        if bad_id and case.reason and case.on == "call" and not any(c == bad_id for c, _ in server.ended):
            problems.append("the bad call's end was not recorded")
        good_w.close()
        _ = good_id
    return problems


async def _last_event(session: Any) -> Any:
    from dialer.media import AudioFrame, MediaClosed

    while True:
        try:
            ev = await session.receive()
        except MediaClosed as exc:
            from dialer.media import HangupEvent

            return HangupEvent(str(exc))
        if not isinstance(ev, AudioFrame):
            return ev


async def _ami(case: FrameCase) -> list[str]:
    from dialer.asterisk.backend import AsteriskTelephony
    from dialer.base import CallOutcome, OriginateRequest
    from tests.fake_asterisk import FakeAsterisk, Scenario
    from tests.test_asterisk_backend import fast_settings, until

    problems: list[str] = []
    wire = case.wire() if callable(case.wire) else case.wire
    async with FakeAsterisk(auth_delay_s=0.01) as pbx:
        pbx.scenario_for = lambda number: Scenario("busy", ring_s=0.6) if number == "8613800138000" else Scenario(
            "invalid")
        async with AsteriskTelephony(fast_settings(pbx)) as backend:
            pbx.audiosocket = ("127.0.0.1", backend.audiosocket_port)
            req = OriginateRequest(channel_id=str(uuid.uuid4()), phone="+8613800138000", caller_id="12320",
                                   timeout_s=3.0)
            task = asyncio.ensure_future(backend.originate(req))
            if not await until(lambda: len(pbx.of("dial")) == 1, 3.0):
                problems.append("the call was never dialled")
            for s in list(pbx._sessions):
                if s.authenticated and s.transport is not None:
                    s.transport.write(wire)
            try:
                result = await asyncio.wait_for(task, 8)
            except Exception as exc:
                problems.append(f"the ringing call failed: {type(exc).__name__}: {exc}")
            else:
                if result.outcome is not CallOutcome.busy:
                    problems.append(f"the ringing call ended as {result.outcome.value}, not busy")
            if not await until(lambda: backend.health().ok, 3.0):
                problems.append("the backend is unhealthy after the bad message")
    return problems


def run_frame_case(case: FrameCase, *, time_limit_s: float = 30) -> Outcome:
    run = _audiosocket if case.kind == "audiosocket" else _ami

    async def bounded() -> list[str]:
        async with asyncio.timeout(time_limit_s):
            return await run(case)

    with captured_logs() as capture:
        try:
            problems = asyncio.run(bounded())
        except TimeoutError:
            return Outcome("hang", [f"ran past {time_limit_s} s"], capture.text, None)
        except Exception as exc:
            out = "".join(traceback.format_exception(exc)) + capture.text
            return Outcome("crash", [f"uncaught {type(exc).__name__}: {str(exc)[:200]}"], out, None)
    logs = capture.text
    if "Traceback (most recent call last)" in logs:
        return Outcome("crash", ["a traceback in the log"], logs, None)
    if case.reason and case.reason not in logs:
        problems.append(f"the log does not say {case.reason!r}")
    leaked = unmasked_numbers(logs)
    if leaked:
        problems.append(f"unmasked numbers in the log: {', '.join(leaked)}")
    return Outcome("wrong" if problems else "clear", problems, logs, None)


# --------------------------------------------------------------------------- the cases

EOL = b"\r\n"


def _ami_msg(*pairs: tuple[str, str]) -> bytes:
    return b"".join(f"{k}: {v}".encode() + EOL for k, v in pairs) + EOL


def frame_cases() -> list[FrameCase]:
    a = "audiosocket"
    cases = [
        FrameCase("as-unknown-kind", a, frame(0x42, b"\x00"), "unknown message kind"),
        FrameCase("as-odd-audio-length", a, frame(0x10, b"\x00" * 321), "audio message of 321 bytes"),
        FrameCase("as-oversized-audio", a, b"\x10\x7f\xff", "audio message of 32767 bytes"),
        FrameCase("as-other-slin-rate", a, frame(0x12, b"\x00" * 640), "0x12"),
        FrameCase("as-second-uuid", a, frame(0x01, uuid.uuid4().bytes), "a second uuid"),
        FrameCase("as-error-frame", a, frame(0xFF, b"\x02"), "frame forwarding error"),
        FrameCase("as-dtmf-bad-digit", a, frame(0x03, b"Z"), "DTMF"),
        FrameCase("as-dtmf-empty", a, frame(0x03, b""), "DTMF"),
        FrameCase("as-dtmf-long", a, frame(0x03, b"12345"), "DTMF"),
        FrameCase("as-hangup-with-payload", a, frame(0x00, b"bye"), ""),
        FrameCase("as-truncated-header", a, b"\x10", "", close_after=True),
        FrameCase("as-truncated-payload", a, b"\x10\x01\x40" + b"\x00" * 100, "", close_after=True),
        FrameCase("as-flood", a, frame(0x10, AUDIO) * 400, "flood"),
        FrameCase("as-garbage-http", a, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "", on="new"),
        FrameCase("as-uuid-short", a, frame(0x01, b"\x01" * 10), "uuid", on="new"),
        FrameCase("as-audio-first", a, frame(0x10, AUDIO), "", on="new"),
        FrameCase("as-nothing-sent", a, b"", "uuid", on="new"),
        FrameCase("as-unknown-uuid", a, b"", "unknown uuid", on="stranger"),
    ]
    m = "ami"
    cases += [
        FrameCase("ami-garbage-line", m, b"\x00\xff this is not a header\r\n\r\n"),
        FrameCase("ami-not-utf8", m, _ami_msg(("Event", "Newchannel"), ("CallerIDName", "x")).replace(b"x", b"\xff\xfe")),
        FrameCase("ami-huge-header", m, _ami_msg(("Event", "Newchannel"), ("Channel", "x" * 1_000_000))),
        FrameCase("ami-many-headers", m, _ami_msg(("Event", "VarSet"), *[(f"X{i}", "y") for i in range(20_000)])),
        FrameCase("ami-hangup-no-fields", m, _ami_msg(("Event", "Hangup"))),
        FrameCase("ami-hangup-bad-cause", m, _ami_msg(("Event", "Hangup"), ("Uniqueid", "nosuch"),
                                                      ("Cause", "abc"), ("Channel", "PJSIP/trunk-1"))),
        FrameCase("ami-originate-response-bare", m, _ami_msg(("Event", "OriginateResponse"), ("Response", "Failure"))),
        FrameCase("ami-originate-response-unknown", m, _ami_msg(
            ("Event", "OriginateResponse"), ("ActionID", f"outreach-{uuid.uuid4()}"), ("Response", "Success"),
            ("Reason", "4"), ("Uniqueid", str(uuid.uuid4())), ("Channel", "PJSIP/13900139000@trunk"))),
        FrameCase("ami-originate-response-bad-reason", m, _ami_msg(
            ("Event", "OriginateResponse"), ("ActionID", f"outreach-{uuid.uuid4()}"), ("Response", "Failure"),
            ("Reason", "99999999999999999999"))),
        FrameCase("ami-unknown-event", m, _ami_msg(("Event", "FrobnicateEvent"), ("Foo", "bar"))),
        FrameCase("ami-response-no-action-id", m, _ami_msg(("Response", "Success"), ("Message", "hi"))),
        FrameCase("ami-phone-in-event", m, _ami_msg(("Event", "Newchannel"), ("Channel", "PJSIP/trunk-9"),
                                                    ("CallerIDNum", "13900139000"), ("Uniqueid", "9.9"))),
        FrameCase("ami-event-flood", m, _ami_msg(("Event", "FrobnicateEvent"), ("Foo", "bar")) * 5000),
    ]
    return cases
