"""A protocol-faithful fake Asterisk: a TCP AMI server and, per answered call, an AudioSocket client.

Written from Asterisk's own source (main/manager.c, main/manager_channels.c, main/pbx.c,
apps/app_audiosocket.c, res/res_audiosocket.c) and ../shared/reference/dialer.md, not from our client:

AMI (text over TCP, messages of `Key: Value` lines ended by an empty line, CRLF):
- banner `Asterisk Call Manager/13.0.0` on connect; actions before a successful Login get
  `Response: Error / Message: Permission denied`; a bad secret gets `Authentication failed` after a
  delay and the connection is closed; Login answers `Authentication accepted` then, for sessions that
  receive system events, `Event: FullyBooted`.
- write permission per action class (originate, call, system, reporting, config) as in manager.conf;
  events delivered per read class (call, system, user) and the Login's `Events:` mask.
- `Originate` (Async true): validated like action_originate (Channel tech/data, Context+Exten+Priority
  existing, Timeout, ChannelId length), acked with `Originate successfully queued`, then per the
  number's scripted outcome the events of a real dial: `Newchannel` (Uniqueid = ChannelId), `Newstate`
  ringing, then either `Newstate` Up + `OriginateResponse` Success Reason 4 and the robot context's
  `AudioSocket(${AUDIOSOCKET_UUID},host:port)`, or `Hangup` with the Q.850 cause and
  `OriginateResponse` Failure with the Reason `pbx_dial_reason` derives. A ChannelId that is still
  live is refused like `do_ids_conflict` (Failure, Reason 0, no channel).
- `Hangup`, `Redirect` (into the human queue context: the AudioSocket app ends, the channel stays up
  in the queue), `CoreShowChannels` (list ack, `CoreShowChannel` events, `CoreShowChannelsComplete`),
  `ShowDialPlan` (for `outreach asterisk check`), `Ping`, `Logoff`; anything else: `Invalid/unknown command`.
- faults: `drop_connections()`, `refuse(True)` (accept and close at once), per-action response delays and
  missing responses, `mute()` (a half-open connection: nothing is answered any more).

AudioSocket client (the dialplan app): connects to the robot, sends the 16-byte uuid message, then one
20 ms slin frame per period while the call is up (the resident's scripted speech, silence, key presses as
DTMF messages or in-band tones), plays what it receives, ends on our hangup message or EOF, hangs up by
closing the socket, and gives up after 2 s without a frame either way. Every dial, answer, hang-up and
AudioSocket end is written to `events` (time, kind, fields), from which tests measure trunk limits,
double dials and late frames.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import struct
import time
import uuid as uuidlib
from collections import defaultdict
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("fake_asterisk")

EOL = "\r\n"
AMI_VERSION = "13.0.0"
MAX_PUBLIC_UNIQUEID = 149  # AST_MAX_PUBLIC_UNIQUEID
FRAME = 320  # 20 ms of slin 8 kHz
PERIOD = 0.020
AUDIOSOCKET_TIMEOUT_S = 2.0  # MAX_WAIT_TIMEOUT_MSEC

# Asterisk cause texts (main/channel.c causes[]).
CAUSE_TXT = {
    0: "Unknown",
    1: "Unallocated (unassigned) number",
    16: "Normal Clearing",
    17: "User busy",
    18: "No user responding",
    19: "User alerting, no answer",
    20: "Subscriber absent",
    21: "Call Rejected",
    27: "Destination out of order",
    28: "Invalid number format",
    34: "Circuit/channel congestion",
    38: "Network out of order",
    41: "Temporary failure",
    42: "Switching equipment congestion",
    52: "Outgoing call barred",
}

# pbx_dial_reason: dial failure cause -> OriginateResponse Reason.
_CONGESTION = {21, 38, 27, 41, 42, 34}


def reason_for(cause: int) -> int:
    if cause == 17:
        return 5
    if cause in _CONGESTION:
        return 8
    if cause in (26, 19):
        return 3
    return 0


# Permission classes (include/asterisk/manager.h) needed to *run* each action (any one of them).
ACTION_AUTH: dict[str, set[str]] = {
    "originate": {"originate"},
    "redirect": {"call"},
    "hangup": {"system", "call"},
    "coreshowchannels": {"system", "reporting"},
    "showdialplan": {"config", "reporting"},
    "status": {"system", "call", "reporting"},
    "ping": set(),
    "logoff": set(),
    "login": set(),
    "challenge": set(),
    "events": set(),
    "listcommands": set(),
}
ACTION_NAMES = {"originate": "Originate", "redirect": "Redirect", "hangup": "Hangup",
                "coreshowchannels": "CoreShowChannels", "showdialplan": "ShowDialPlan", "status": "Status",
                "ping": "Ping", "logoff": "Logoff", "login": "Login", "challenge": "Challenge", "events": "Events",
                "listcommands": "ListCommands"}


# ============================================================================ resident behaviour


@dataclass
class Step:
    """One thing the resident does on an answered call."""

    kind: str  # speak | silence | dtmf | tone | wait_prompt | hangup
    pcm: bytes = b""
    seconds: float = 0.0
    digit: str = ""


def speak(pcm: bytes) -> Step:
    return Step("speak", pcm=pcm)


def pause(seconds: float) -> Step:
    return Step("silence", seconds=seconds)


def dtmf(digit: str) -> Step:
    return Step("dtmf", digit=digit)


def tone(pcm: bytes) -> Step:
    """An in-band key tone (already rendered as audio)."""
    return Step("tone", pcm=pcm)


def wait_prompt(seconds: float = 0.0) -> Step:
    """Wait until the robot spoke and then went quiet (its prompt ended)."""
    return Step("wait_prompt", seconds=seconds)


def hang_up() -> Step:
    return Step("hangup")


@dataclass
class Scenario:
    """How a dialled number behaves.

    outcome: answer | busy | no_answer (rings until our Timeout) | unanswered (the network gives up:
    cause 19) | invalid (cause 1) | switched_off (cause 20) | congestion (cause 34, SIP 503) |
    rejected (cause 21) | barred (cause 52) | no_channel (the channel cannot even be created).
    """

    outcome: str = "answer"
    ring_s: float = 0.2
    steps: list[Step] = field(default_factory=list)
    after_steps: str = "silence"  # silence (until the robot hangs up) | hangup
    max_call_s: float = 120.0
    queue_s: float = 0.5  # time in the human queue after a Redirect before the agent hangs up
    audiosocket_garbage: bytes | None = None  # raw bytes sent after the uuid (fault injection)
    stall_after_s: float | None = None  # stop sending frames (fault injection)
    flood: bool = False  # send audio as fast as possible (fault injection)
    bad_uuid: bool = False  # send another uuid than the channel's


ScenarioFor = Callable[[str], Scenario]


# ============================================================================ AMI wire helpers


def parse_message(block: str) -> dict[str, Any]:
    """`Key: Value` lines -> dict (case kept; repeated keys become lists)."""
    out: dict[str, Any] = {}
    for line in block.split(EOL):
        if ": " in line:
            k, v = line.split(": ", 1)
        elif line.endswith(":"):
            k, v = line[:-1], ""
        else:
            continue
        if k in out:
            prev = out[k]
            out[k] = [*prev, v] if isinstance(prev, list) else [prev, v]
        else:
            out[k] = v
    return out


def header(msg: dict[str, Any], key: str) -> str:
    for k, v in msg.items():
        if k.lower() == key.lower():
            return v if isinstance(v, str) else v[0]
    return ""


def headers(msg: dict[str, Any], key: str) -> list[str]:
    for k, v in msg.items():
        if k.lower() == key.lower():
            return v if isinstance(v, list) else [v]
    return []


def render(*pairs: tuple[str, object]) -> str:
    return "".join(f"{k}: {v}{EOL}" for k, v in pairs) + EOL


# ============================================================================ channels


@dataclass
class Channel:
    name: str
    uniqueid: str
    number: str
    trunk: str
    context: str
    exten: str
    priority: int
    caller_id: str
    variables: dict[str, str]
    state: int = 0  # 0 Down, 5 Ringing, 6 Up
    created: float = field(default_factory=time.monotonic)
    application: str = ""
    app_data: str = ""
    hangup_requested: asyncio.Future[int] | None = None
    redirected: asyncio.Future[tuple[str, str, int]] | None = None
    audiosocket: AudioSocketCall | None = None
    inbound: bool = False


STATE_DESC = {0: "Down", 4: "Ring", 5: "Ringing", 6: "Up"}


class _AmiSession(asyncio.Protocol):
    def __init__(self, fake: FakeAsterisk) -> None:
        self.fake = fake
        self.transport: asyncio.Transport | None = None
        self.buf = ""
        self.authenticated = False
        self.username = ""
        self.events: set[str] = set()
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.fake._sessions.add(self)
        self.fake.connections_accepted += 1
        if self.fake._refusing:
            transport.close()
            return
        transport.write(f"Asterisk Call Manager/{AMI_VERSION}{EOL}".encode())

    def data_received(self, data: bytes) -> None:
        self.buf += data.decode("utf-8", "replace")
        while EOL + EOL in self.buf:
            block, self.buf = self.buf.split(EOL + EOL, 1)
            if not block.strip():
                continue
            msg = parse_message(block)
            self.fake._received(self, msg)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.fake._sessions.discard(self)

    def send(self, text: str) -> None:
        if self.transport is not None and not self.closed and not self.fake._muted:
            self.transport.write(text.encode("utf-8"))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        self.closed = True

    def wants(self, klass: str) -> bool:
        if not self.authenticated:
            return False
        perms = self.fake.users[self.username].read
        return klass in perms and ("on" in self.events or "all" in self.events or klass in self.events)


@dataclass
class User:
    secret: str
    read: set[str]
    write: set[str]


@dataclass
class Trunk:
    name: str
    max_channels: int = 1000  # the carrier's channel limit: beyond it, 503 (cause 34)
    active: int = 0
    peak: int = 0


class FakeAsterisk:
    """Run with `async with FakeAsterisk(...) as pbx:`; AMI on `pbx.port`."""

    def __init__(
        self,
        *,
        scenario_for: ScenarioFor | None = None,
        username: str = "outreach",
        secret: str = "s3cret",
        read: str = "call,system,user",
        write: str = "originate,call,reporting",
        robot_context: str = "outreach-robot",
        inbound_context: str = "outreach-inbound",
        human_context: str = "outreach-human",
        audiosocket: tuple[str, int] | Callable[[], tuple[str, int]] | None = None,
        per_call_address: bool = False,
        trunks: dict[str, int] | None = None,
        auth_delay_s: float = 0.2,
        frame_period_s: float = PERIOD,
    ) -> None:
        self.scenario_for: ScenarioFor = scenario_for or (lambda number: Scenario())
        self.users: dict[str, User] = {username: User(secret, set(read.split(",")), set(write.split(",")))}
        # context -> extension -> [(application, data)] by priority, as deploy/asterisk/extensions.conf has them
        self.contexts: dict[str, dict[str, list[tuple[str, str]]]] = {
            robot_context: {"s": [("NoOp", "outreach attempt ${AUDIOSOCKET_UUID}"), ("Answer", ""),
                                  ("AudioSocket", "${AUDIOSOCKET_UUID},"
                                   + ("${AUDIOSOCKET_ADDR}" if per_call_address else "{robot}")),
                                  ("Hangup", "")]},
            inbound_context: {"_X.": [("Answer", ""), ("Set", "OUTREACH_UUID=${UUID()}"),
                                      ("UserEvent", "OutreachInbound,Uuid: ${OUTREACH_UUID},CallerNum: ${CALLERID(num)}"),
                                      ("AudioSocket", "${OUTREACH_UUID},{robot}"), ("Hangup", "")]},
            human_context: {"s": [("Answer", ""), ("Queue", "outreach-human,t,,,300")]},
        }
        self.robot_context = robot_context
        self.inbound_context = inbound_context
        self.human_context = human_context
        # The robot's host:port as the dialplan has it (a callable: looked up at each call).
        self.audiosocket = audiosocket
        # True: the robot context is AudioSocket(${AUDIOSOCKET_UUID},${AUDIOSOCKET_ADDR}) (the sample
        # dialplan), so each call connects where its Originate's AUDIOSOCKET_ADDR variable says.
        self.per_call_address = per_call_address
        self.trunks = {name: Trunk(name, n) for name, n in (trunks or {"trunk": 1000}).items()}
        self.auth_delay_s = auth_delay_s
        self.frame_period_s = frame_period_s
        self.port = 0
        self.channels: dict[str, Channel] = {}  # by uniqueid
        self.events: list[tuple[float, str, dict[str, Any]]] = []
        self.actions: list[dict[str, Any]] = []  # every action received, in order
        self.delays: dict[str, float] = {}  # action name (lower) -> response delay
        self.ignore: set[str] = set()  # action names (lower) never answered
        self.connections_accepted = 0
        self._sessions: set[_AmiSession] = set()
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._refusing = False
        self._muted = False
        self._seq = itertools.count(1)
        self._media: set[AudioSocketCall] = set()
        self._clock: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self, port: int = 0) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _AmiSession(self), "127.0.0.1", port)
        self.port = self._server.sockets[0].getsockname()[1]
        self._clock = asyncio.create_task(self._media_clock(), name="fake-asterisk-media-clock")

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for s in list(self._sessions):
            s.close()
        for call in list(self._media):
            call.close("shutdown")
        for t in list(self._tasks):
            t.cancel()
        if self._clock is not None:
            self._clock.cancel()
        await asyncio.gather(*self._tasks, *( [self._clock] if self._clock else []), return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> FakeAsterisk:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ faults

    def drop_connections(self) -> int:
        """Close every AMI connection now (Asterisk restarting its manager, a network cut)."""
        n = 0
        for s in list(self._sessions):
            s.close()
            n += 1
        self.log("ami_drop", sessions=n)
        return n

    def refuse(self, on: bool) -> None:
        """Accept AMI connections and close them at once (manager unavailable)."""
        self._refusing = on

    def mute(self, on: bool = True) -> None:
        """A half-open connection: nothing more is written to any AMI session."""
        self._muted = on

    # ------------------------------------------------------------------ measurements

    def log(self, kind: str, **fields: Any) -> None:
        self.events.append((time.monotonic(), kind, fields))

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [f for _, k, f in self.events if k == kind]

    def dials_per_channel_id(self) -> dict[str, int]:
        counts: dict[str, int] = defaultdict(int)
        for f in self.of("dial"):
            counts[f["uniqueid"]] += 1
        return dict(counts)

    def peak_channels(self, trunk: str) -> int:
        return self.trunks[trunk].peak

    def max_dials_in_window(self, trunk: str, window_s: float = 1.0) -> int:
        times = sorted(t for t, k, f in self.events if k == "dial" and f["trunk"] == trunk)
        best = 0
        j = 0
        for i, t in enumerate(times):
            while times[j] < t - window_s + 1e-9:
                j += 1
            best = max(best, i - j + 1)
        return best

    def frame_stats(self) -> dict[str, float]:
        """Robot -> caller audio over every finished AudioSocket call: frames and late ones (gap > 2 periods)."""
        ends = self.of("audiosocket_end")
        frames = sum(f["frames_heard"] for f in ends)
        late = sum(f["late_frames"] for f in ends)
        return {"frames": frames, "late": late, "max_gap_ms": max((f["max_gap_ms"] for f in ends), default=0.0)}

    def speaking_at_once(self, t_from: float | None = None, t_to: float | None = None,
                         step_s: float = 0.1) -> list[int]:
        """How many callers were speaking (or keying a tone), sampled every `step_s` between `t_from` and `t_to`
        (time.monotonic(); default: from the first utterance's start to the last one's end)."""
        spans = [(f["began"], f["ended"]) for f in self.of("spoke")]
        if not spans:
            return []
        t = min(b for b, _ in spans) if t_from is None else t_from
        end = max(e for _, e in spans) if t_to is None else t_to
        counts = []
        while t <= end:
            counts.append(sum(1 for b, e in spans if b <= t < e))
            t += step_s
        return counts

    # ------------------------------------------------------------------ AMI actions

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _received(self, s: _AmiSession, msg: dict[str, Any]) -> None:
        self.actions.append(msg)
        action = header(msg, "Action")
        name = action.lower()
        if name in self.ignore:
            return
        delay = self.delays.get(name, 0.0)
        if delay:
            self._spawn(self._later(delay, s, msg))
        else:
            self._handle(s, msg)

    async def _later(self, delay: float, s: _AmiSession, msg: dict[str, Any]) -> None:
        await asyncio.sleep(delay)
        if not s.closed:
            self._handle(s, msg)

    def _respond(self, s: _AmiSession, msg: dict[str, Any], response: str, message: str | None = None,
                 *extra: tuple[str, object]) -> None:
        pairs: list[tuple[str, object]] = [("Response", response)]
        aid = header(msg, "ActionID")
        if aid:
            pairs.append(("ActionID", aid))
        pairs.extend(extra)
        if message is not None:
            pairs.append(("Message", message))
        s.send(render(*pairs))

    def _handle(self, s: _AmiSession, msg: dict[str, Any]) -> None:
        action = header(msg, "Action")
        name = action.lower()
        if not action:
            self._respond(s, msg, "Error", "Missing action in request")
            return
        if not s.authenticated and name not in ("login", "logoff", "challenge"):
            self._respond(s, msg, "Error", "Permission denied")
            return
        if name == "login":
            self._spawn(self._login(s, msg))
            return
        if name == "logoff":
            self._respond(s, msg, "Goodbye", "Thanks for all the fish.")
            s.close()
            return
        if name not in ACTION_AUTH and name not in ("userevent",):
            self._respond(s, msg, "Error",
                          f"Invalid/unknown command: {action}. Use Action: ListCommands to show available commands.")
            return
        need = ACTION_AUTH.get(name, set())
        if need and not (need & self.users[s.username].write):
            self._respond(s, msg, "Error", "Permission denied")
            return
        handler = getattr(self, f"_action_{name}", None)
        if handler is None:
            self._respond(s, msg, "Error", f"Invalid/unknown command: {action}.")
            return
        handler(s, msg)

    async def _login(self, s: _AmiSession, msg: dict[str, Any]) -> None:
        if s.authenticated:
            self._respond(s, msg, "Success", "Already authenticated")
            return
        user = self.users.get(header(msg, "Username"))
        if user is None or header(msg, "Secret") != user.secret:
            await asyncio.sleep(self.auth_delay_s)  # manager.c sleeps 1 s
            self._respond(s, msg, "Error", "Authentication failed")
            s.close()
            self.log("login_failed", username=header(msg, "Username"))
            return
        s.authenticated = True
        s.username = header(msg, "Username")
        ev = header(msg, "Events").lower() or "on"
        s.events = {"off"} if ev in ("off", "no", "false", "0") else set(ev.split(","))
        self._respond(s, msg, "Success", "Authentication accepted")
        if s.wants("system"):
            s.send(render(("Event", "FullyBooted"), ("Privilege", "system,all"), ("Uptime", 100),
                          ("LastReload", 100), ("Status", "Fully Booted")))
        self.log("login", username=s.username)

    def _action_listcommands(self, s: _AmiSession, msg: dict[str, Any]) -> None:
        pairs: list[tuple[str, object]] = [("Response", "Success")]
        aid = header(msg, "ActionID")
        if aid:
            pairs.append(("ActionID", aid))
        write = self.users[s.username].write
        for name, need in ACTION_AUTH.items():
            if not need or need & write:
                pairs.append((ACTION_NAMES.get(name, name.title()), f"{name} (Priv: {','.join(sorted(need)) or '<none>'})"))
        s.send(render(*pairs))

    def _action_ping(self, s: _AmiSession, msg: dict[str, Any]) -> None:
        self._respond(s, msg, "Success", None, ("Ping", "Pong"), ("Timestamp", f"{time.time():.6f}"))

    def _action_events(self, s: _AmiSession, msg: dict[str, Any]) -> None:
        mask = header(msg, "EventMask").lower()
        s.events = {"off"} if mask == "off" else set(mask.split(","))
        self._respond(s, msg, "Success", None, ("Events", "On" if mask != "off" else "Off"))

    def _action_showdialplan(self, s: _AmiSession, msg: dict[str, Any]) -> None:
        context = header(msg, "Context")
        aid = header(msg, "ActionID")
        idl = [("ActionID", aid)] if aid else []
        ctxs = {context: self.contexts[context]} if context else self.contexts
        if context and context not in self.contexts:
            self._respond(s, msg, "Error", f"Did not find context {context}")
            return
        self._respond(s, msg, "Success", "DialPlan list will follow", ("EventList", "start"))
        n = 0
        robot = self._as_addr()
        for cname, extens in ctxs.items():
            for exten, prios in extens.items():
                for p, (app, data) in enumerate(prios, start=1):
                    n += 1
                    s.send(render(("Event", "ListDialplan"), *idl, ("Context", cname), ("Extension", exten),
                                  ("Priority", p), ("Application", app), ("AppData", data.replace("{robot}", robot)),
                                  ("Registrar", "pbx_config")))
        s.send(render(("Event", "ShowDialPlanComplete"), *idl, ("EventList", "Complete"), ("ListItems", n),
                      ("ListExtensions", sum(len(e) for e in ctxs.values())), ("ListPriorities", n),
                      ("ListContexts", len(ctxs))))

    def _channel_fields(self, ch: Channel) -> list[tuple[str, object]]:
        return [
            ("Channel", ch.name), ("ChannelState", ch.state), ("ChannelStateDesc", STATE_DESC.get(ch.state, "Unknown")),
            ("CallerIDNum", ch.number if not ch.inbound else ch.caller_id), ("CallerIDName", "<unknown>"),
            ("ConnectedLineNum", ch.caller_id if not ch.inbound else "<unknown>"), ("ConnectedLineName", "<unknown>"),
            ("Language", "en"), ("AccountCode", ""), ("Context", ch.context), ("Exten", ch.exten),
            ("Priority", ch.priority), ("Uniqueid", ch.uniqueid), ("Linkedid", ch.uniqueid),
        ]

    def _broadcast(self, klass: str, event: str, *pairs: tuple[str, object]) -> None:
        text = render(("Event", event), ("Privilege", f"{klass},all"), *pairs)
        for s in list(self._sessions):
            if s.wants(klass):
                s.send(text)

    def _action_coreshowchannels(self, s: _AmiSession, msg: dict[str, Any]) -> None:
        aid = header(msg, "ActionID")
        idl = [("ActionID", aid)] if aid else []
        self._respond(s, msg, "Success", "Channels will follow", ("EventList", "start"))
        for ch in list(self.channels.values()):
            dur = int(time.monotonic() - ch.created)
            s.send(render(("Event", "CoreShowChannel"), *idl, *self._channel_fields(ch),
                          ("Application", ch.application), ("ApplicationData", ch.app_data),
                          ("Duration", f"{dur // 3600:02d}:{dur // 60 % 60:02d}:{dur % 60:02d}"), ("BridgeId", "")))
        s.send(render(("Event", "CoreShowChannelsComplete"), *idl, ("EventList", "Complete"),
                      ("ListItems", len(self.channels))))

    def _has_exten(self, context: str, exten: str) -> bool:
        for pattern in self.contexts[context]:
            if pattern == exten or (pattern.startswith("_") and re.fullmatch(
                    pattern[1:].replace("X", "[0-9]").replace(".", ".+"), exten)):
                return True
        return False

    def _find(self, name: str) -> Channel | None:
        for ch in self.channels.values():
            if ch.name == name or ch.uniqueid == name:
                return ch
        return None

    def _action_hangup(self, s: _AmiSession, msg: dict[str, Any]) -> None:
        ch = self._find(header(msg, "Channel"))
        if ch is None:
            self._respond(s, msg, "Error", "No such channel")
            return
        cause = int(header(msg, "Cause") or 16)
        if ch.hangup_requested is not None and not ch.hangup_requested.done():
            ch.hangup_requested.set_result(cause)
        self._respond(s, msg, "Success", "Channel Hungup")
        self.log("ami_hangup", uniqueid=ch.uniqueid)

    def _action_redirect(self, s: _AmiSession, msg: dict[str, Any]) -> None:
        name = header(msg, "Channel")
        context, exten, prio = header(msg, "Context"), header(msg, "Exten"), header(msg, "Priority")
        if not name:
            self._respond(s, msg, "Error", "Channel not specified")
            return
        if not context:
            self._respond(s, msg, "Error", "Context not specified")
            return
        if not exten:
            self._respond(s, msg, "Error", "Exten not specified")
            return
        if not prio:
            self._respond(s, msg, "Error", "Priority not specified")
            return
        if not prio.isdigit():
            self._respond(s, msg, "Error", "Priority is invalid")
            return
        ch = self._find(name)
        if ch is None:
            self._respond(s, msg, "Error", f"Channel does not exist: {name}")
            return
        if ch.state != 6 or ch.redirected is None or ch.redirected.done():
            self._respond(s, msg, "Error", "Redirect failed, channel not up.")
            return
        if context not in self.contexts or not self._has_exten(context, exten):
            self._respond(s, msg, "Error", "Redirect failed")
            return
        ch.redirected.set_result((context, exten, int(prio)))
        self._respond(s, msg, "Success", "Redirect successful")
        self.log("redirect", uniqueid=ch.uniqueid, context=context, exten=exten)

    def _action_originate(self, s: _AmiSession, msg: dict[str, Any]) -> None:
        name = header(msg, "Channel")
        context, exten, priority = header(msg, "Context"), header(msg, "Exten"), header(msg, "Priority")
        timeout = header(msg, "Timeout")
        channel_id = header(msg, "ChannelId")
        if len(channel_id) > MAX_PUBLIC_UNIQUEID:
            self._respond(s, msg, "Error", f"Uniqueid length exceeds maximum of {MAX_PUBLIC_UNIQUEID}\n")
            return
        if not name:
            self._respond(s, msg, "Error", "Channel not specified")
            return
        if priority and not priority.isdigit():
            self._respond(s, msg, "Error", "Invalid priority")
            return
        to_ms = 30000
        if timeout:
            if not re.fullmatch(r"-?\d+", timeout.strip()):
                self._respond(s, msg, "Error", "Invalid timeout")
                return
            to_ms = int(timeout)
        if "/" not in name:
            self._respond(s, msg, "Error", "Invalid channel")
            return
        pi = int(priority) if priority else 0
        if exten and context and pi:
            if context not in self.contexts or not self._has_exten(context, exten):
                self._respond(s, msg, "Error", "Extension does not exist.")
                return
        elif not header(msg, "Application"):
            self._respond(s, msg, "Error", "Originate with 'Exten' requires 'Context' and 'Priority'")
            return
        variables: dict[str, str] = {}
        for v in headers(msg, "Variable"):
            for part in v.split(","):
                if "=" in part:
                    k, val = part.split("=", 1)
                    variables[k] = val
        is_async = header(msg, "Async").lower() in ("true", "yes", "1", "y", "t", "on")
        self.log("originate", uniqueid=channel_id, channel=name, action_id=header(msg, "ActionID"))
        task = self._spawn(self._dial(s, msg, name, context, exten, pi, to_ms / 1000, channel_id, variables,
                                      header(msg, "CallerID"), is_async))
        if is_async:
            self._respond(s, msg, "Success", "Originate successfully queued")
        else:
            task.add_done_callback(lambda t: self._respond(
                s, msg, "Success" if not t.cancelled() and t.result() else "Error",
                "Originate successfully queued" if not t.cancelled() and t.result() else "Originate failed"))

    # ------------------------------------------------------------------ a dial

    async def _dial(self, s: _AmiSession, msg: dict[str, Any], name: str, context: str, exten: str, pi: int,
                    timeout_s: float, channel_id: str, variables: dict[str, str], caller_id: str,
                    is_async: bool) -> bool:
        tech, data = name.split("/", 1)
        number, _, trunk_name = data.partition("@")
        aid = header(msg, "ActionID")
        idl = [("ActionID", aid)] if aid and is_async else []
        uniqueid = channel_id or f"{int(time.time())}.{next(self._seq)}"
        scenario = self.scenario_for(number)

        def response(ok: bool, reason: int, chan_name: str) -> None:
            if not is_async:
                return
            self._broadcast("call", "OriginateResponse", *idl, ("Response", "Success" if ok else "Failure"),
                            ("Channel", chan_name), ("Context", context), ("Exten", exten), ("Reason", reason),
                            ("Uniqueid", uniqueid), ("CallerIDNum", caller_id or "<unknown>"),
                            ("CallerIDName", "<unknown>"))

        if channel_id and channel_id in self.channels:  # do_ids_conflict
            self.log("id_conflict", uniqueid=channel_id)
            response(False, 0, name)
            return False
        trunk = self.trunks.get(trunk_name or tech)
        if scenario.outcome == "no_channel" or trunk is None or tech.upper() != "PJSIP":
            self.log("dial_failed", uniqueid=uniqueid, number=number, why="no channel")
            response(False, 0, name)
            return False
        await asyncio.sleep(0)  # the dial runs in its own thread in Asterisk
        ch = Channel(
            name=f"PJSIP/{trunk.name}-{next(self._seq):08x}", uniqueid=uniqueid, number=number, trunk=trunk.name,
            context=context, exten=exten, priority=pi, caller_id=caller_id, variables=variables,
        )
        loop = asyncio.get_running_loop()
        ch.hangup_requested = loop.create_future()
        self.channels[uniqueid] = ch
        trunk.active += 1
        trunk.peak = max(trunk.peak, trunk.active)
        self.log("dial", uniqueid=uniqueid, number=number, trunk=trunk.name, active=trunk.active)
        self._broadcast("call", "Newchannel", *self._channel_fields(ch))
        answered = False
        try:
            outcome = scenario.outcome
            if trunk.active > trunk.max_channels:
                outcome = "congestion"  # the carrier's channel limit: 503
            cause = {"busy": 17, "invalid": 1, "switched_off": 20, "congestion": 34, "rejected": 21,
                     "barred": 52, "unanswered": 19}.get(outcome)
            if cause in (1, 34, 52, 20):
                early = await self._wait(ch, 0.05)
            else:
                ch.state = 5
                self._broadcast("call", "Newstate", *self._channel_fields(ch))
                early = await self._wait(ch, min(scenario.ring_s, timeout_s) if outcome == "answer" or cause
                                         else timeout_s)
            if early is not None:  # hung up by an AMI Hangup while ringing
                self._end(ch, early)
                response(False, 0, name)
                return False
            if outcome != "answer" or scenario.ring_s > timeout_s:
                c = cause if cause is not None else 0
                self._end(ch, c)
                response(False, reason_for(c) if cause is not None else 3, name)
                return False
            ch.state = 6
            answered = True
            self._broadcast("call", "Newstate", *self._channel_fields(ch))
            response(True, 4, ch.name)
            self.log("answer", uniqueid=uniqueid, number=number, trunk=trunk.name)
            await self._run_dialplan(ch, scenario)
            return True
        finally:
            if uniqueid in self.channels:
                self._end(ch, 16 if answered else 0)

    async def _wait(self, ch: Channel, seconds: float) -> int | None:
        assert ch.hangup_requested is not None
        try:
            return await asyncio.wait_for(asyncio.shield(ch.hangup_requested), seconds)
        except TimeoutError:
            return None

    def _end(self, ch: Channel, cause: int) -> None:
        if self.channels.pop(ch.uniqueid, None) is None:
            return
        trunk = self.trunks.get(ch.trunk)
        if trunk is not None and not ch.inbound:
            trunk.active -= 1
        self._broadcast("call", "Hangup", *self._channel_fields(ch), ("Cause", cause),
                        ("Cause-txt", CAUSE_TXT.get(cause, "Unknown")))
        self.log("hangup", uniqueid=ch.uniqueid, number=ch.number, cause=cause, trunk=ch.trunk)

    async def _run_dialplan(self, ch: Channel, scenario: Scenario) -> None:
        """The robot context of deploy/asterisk/extensions.conf: Answer, AudioSocket, Hangup; or a Redirect."""
        loop = asyncio.get_running_loop()
        ch.redirected = loop.create_future()
        call_uuid = ch.variables.get("AUDIOSOCKET_UUID", "")
        if self.per_call_address:
            target = ch.variables.get("AUDIOSOCKET_ADDR", "")
            ch.application, ch.app_data = "AudioSocket", f"{call_uuid},{target}"
            addr = _parse_hostport(target)
            if addr is None:  # app_audiosocket: "Failed to parse address"; the app fails, the call ends
                self.log("audiosocket_end", uniqueid=ch.uniqueid, why=f"bad AudioSocket address {target!r}",
                         frames_heard=0, late_frames=0, max_gap_ms=0.0)
                return
        else:
            ch.application, ch.app_data = "AudioSocket", f"{call_uuid},{self._as_addr()}"
            addr = None
        await self._audiosocket(ch, call_uuid, scenario, addr)
        if ch.redirected.done() and ch.uniqueid in self.channels:
            context, exten, prio = ch.redirected.result()
            ch.context, ch.exten, ch.priority = context, exten, prio
            ch.application, ch.app_data = "Queue", "outreach-human"
            self.log("in_queue", uniqueid=ch.uniqueid, context=context)
            cause = await self._wait(ch, scenario.queue_s)
            self._end(ch, cause if cause is not None else 16)

    def audiosocket_addr(self) -> tuple[str, int] | None:
        a = self.audiosocket
        return a() if callable(a) else a

    def _as_addr(self) -> str:
        a = self.audiosocket_addr()
        return "127.0.0.1:0" if a is None else f"{a[0]}:{a[1]}"

    async def _audiosocket(self, ch: Channel, call_uuid: str, scenario: Scenario,
                           addr: tuple[str, int] | None = None) -> None:
        """app_audiosocket: validate the uuid, connect (to `addr`, else the configured address), run until
        either side ends."""
        try:
            uuidlib.UUID(call_uuid)
        except ValueError:
            self.log("audiosocket_end", uniqueid=ch.uniqueid, why=f"Failed to parse UUID '{call_uuid}'",
                     frames_heard=0, late_frames=0, max_gap_ms=0.0)
            return
        addr = addr or self.audiosocket_addr()
        if addr is None:
            self.log("audiosocket_end", uniqueid=ch.uniqueid, why="no AudioSocket server configured",
                     frames_heard=0, late_frames=0, max_gap_ms=0.0)
            return
        call = AudioSocketCall(self, ch, call_uuid, scenario, addr)
        ch.audiosocket = call
        assert ch.hangup_requested is not None and ch.redirected is not None
        why = await call.run(ch.hangup_requested, ch.redirected)
        self.log("audiosocket_end", uniqueid=ch.uniqueid, why=why, frames_heard=call.frames_heard,
                 late_frames=call.late_frames, max_gap_ms=round(call.max_gap * 1000, 1),
                 dtmf_sent=call.dtmf_sent, robot_hangup=call.robot_hangup)

    # ------------------------------------------------------------------ inbound

    async def inbound_call(self, caller: str, scenario: Scenario, *, did: str = "12320") -> str:
        """A resident rings the robot's number: the inbound context announces it with a UserEvent and
        runs AudioSocket with a fresh UUID() (see deploy/asterisk/extensions.conf). Returns the uniqueid."""
        loop = asyncio.get_running_loop()
        uniqueid = f"{int(time.time())}.{next(self._seq)}"
        ch = Channel(name=f"PJSIP/trunk-{next(self._seq):08x}", uniqueid=uniqueid, number=did, trunk="trunk",
                     context=self.inbound_context, exten=did, priority=1, caller_id=caller, variables={},
                     inbound=True, state=6)
        ch.hangup_requested = loop.create_future()
        ch.redirected = loop.create_future()
        self.channels[uniqueid] = ch
        self._broadcast("call", "Newchannel", *self._channel_fields(ch))
        call_uuid = str(uuidlib.uuid4())
        self.log("inbound", uniqueid=uniqueid, caller=caller, uuid=call_uuid)
        self._broadcast("user", "UserEvent", *self._channel_fields(ch), ("UserEvent", "OutreachInbound"),
                        ("Uuid", call_uuid), ("CallerNum", caller), ("Did", did))

        async def run() -> None:
            try:
                await self._audiosocket(ch, call_uuid, scenario)
                if ch.redirected is not None and ch.redirected.done() and ch.uniqueid in self.channels:
                    context, exten, prio = ch.redirected.result()
                    ch.context, ch.exten, ch.priority = context, exten, prio
                    self.log("in_queue", uniqueid=ch.uniqueid, context=context)
                    await self._wait(ch, scenario.queue_s)
            finally:
                self._end(ch, 16)

        self._spawn(run())
        return call_uuid

    # ------------------------------------------------------------------ media clock

    async def _media_clock(self) -> None:
        """One timer for every call's audio, like Asterisk's channel timing: a frame per period."""
        loop = asyncio.get_running_loop()
        next_t = loop.time()
        while True:
            for call in list(self._media):
                call.tick()
            next_t += self.frame_period_s
            delay = next_t - loop.time()
            if delay < -5 * self.frame_period_s:
                next_t = loop.time()
                delay = 0
            await asyncio.sleep(max(delay, 0))


_HDR = struct.Struct("!BH")


def _parse_hostport(text: str) -> tuple[str, int] | None:
    """`host:port` or `[v6]:port` as AudioSocket(uuid,address) takes it; None when it is not one."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return host.strip("[]"), int(port)


class AudioSocketCall(asyncio.Protocol):
    """The AudioSocket dialplan app's side of one call (a TCP client to the robot)."""

    def __init__(self, fake: FakeAsterisk, ch: Channel, call_uuid: str, scenario: Scenario,
                 addr: tuple[str, int]) -> None:
        self.fake = fake
        self.ch = ch
        self.addr = addr
        self.uuid = call_uuid
        self.scenario = scenario
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.done: asyncio.Future[str] | None = None
        self.mic: list[bytes | str] = []  # frames, or a DTMF digit
        self.heard = bytearray()
        self.frames_heard = 0
        self.voice_frames_heard = 0
        self.late_frames = 0
        self.max_gap = 0.0
        self._last_heard: float | None = None
        self._voice_run = 0
        self._silence_run = 0
        self._activity = time.monotonic()
        self._t0 = time.monotonic()
        self.dtmf_sent = 0
        self.robot_hangup = False
        self._waiter: tuple[Callable[[], bool], asyncio.Future[None]] | None = None
        self._stalled = False

    async def run(self, hangup: asyncio.Future[int], redirect: asyncio.Future[tuple[str, str, int]]) -> str:
        loop = asyncio.get_running_loop()
        self.done = loop.create_future()
        host, port = self.addr
        try:
            await asyncio.wait_for(loop.create_connection(lambda: self, host, port), 2.0)
        except (OSError, TimeoutError) as exc:
            return f"connect failed: {exc}"
        assert self.transport is not None
        u = uuidlib.uuid4() if self.scenario.bad_uuid else uuidlib.UUID(self.uuid)
        self.transport.write(_HDR.pack(0x01, 16) + u.bytes)
        self.fake.log("audiosocket_start", uniqueid=self.ch.uniqueid, uuid=str(u))
        if self.scenario.audiosocket_garbage is not None:
            self.transport.write(self.scenario.audiosocket_garbage)
        self.fake._media.add(self)
        steps = asyncio.create_task(self._steps())
        try:
            waits: list[asyncio.Future[Any]] = [self.done, hangup, redirect]
            await asyncio.wait(waits, timeout=self.scenario.max_call_s, return_when=asyncio.FIRST_COMPLETED)
            if self.done.done():
                why = self.done.result()
            elif hangup.done():
                why = "AMI hangup"
            elif redirect.done():
                why = "redirected"
            else:
                why = "max call time"
        finally:
            steps.cancel()
            self.fake._media.discard(self)
            self.close("ended")
        return why

    async def _steps(self) -> None:
        try:
            for step in self.scenario.steps:
                if step.kind in ("speak", "tone"):
                    began = time.monotonic()
                    self._queue_pcm(step.pcm)
                    await self._until(lambda: not self.mic)
                    self.fake.log("spoke", began=began, ended=time.monotonic())
                elif step.kind == "silence":
                    self._queue_pcm(b"\x00" * (FRAME * max(1, round(step.seconds / self.fake.frame_period_s))))
                    await self._until(lambda: not self.mic)
                elif step.kind == "dtmf":
                    self.mic.append(step.digit)
                    await self._until(lambda: not self.mic)
                elif step.kind == "wait_prompt":
                    await self._until(self._prompt_ended(self.voice_frames_heard), within_s=max(step.seconds, 20.0))
                elif step.kind == "hangup":
                    self.close("caller hung up")
                    return
            if self.scenario.after_steps == "hangup":
                self.close("caller hung up")
        except TimeoutError:
            self.close("caller gave up waiting for a prompt")

    def _prompt_ended(self, seen: int) -> Callable[[], bool]:
        return lambda: self.voice_frames_heard > seen and self._silence_run >= 15

    async def _until(self, cond: Callable[[], bool], within_s: float = 60.0) -> None:
        if cond():
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiter = (cond, fut)
        try:
            await asyncio.wait_for(fut, within_s)
        finally:
            self._waiter = None

    def _check(self) -> None:
        if self._waiter is not None:
            cond, fut = self._waiter
            if not fut.done() and cond():
                fut.set_result(None)

    def _queue_pcm(self, pcm: bytes) -> None:
        if len(pcm) % FRAME:
            pcm += b"\x00" * (FRAME - len(pcm) % FRAME)
        self.mic.extend(pcm[i : i + FRAME] for i in range(0, len(pcm), FRAME))

    # -- the channel's timing: one frame per period

    def tick(self) -> None:
        t = self.transport
        if t is None or t.is_closing():
            return
        now = time.monotonic()
        if self.scenario.stall_after_s is not None and now - self._t0 > self.scenario.stall_after_s:
            self._stalled = True
        if now - self._activity > AUDIOSOCKET_TIMEOUT_S:
            self.close(f"Reached timeout after {int(AUDIOSOCKET_TIMEOUT_S * 1000)} ms of no activity")
            return
        if self._stalled:
            return
        if self.scenario.flood:
            t.write((_HDR.pack(0x10, FRAME) + b"\x01\x00" * (FRAME // 2)) * 20)
            return
        while self.mic and isinstance(self.mic[0], str):
            digit = self.mic.pop(0)
            assert isinstance(digit, str)
            t.write(_HDR.pack(0x03, 1) + digit.encode())
            self.dtmf_sent += 1
        frame = self.mic.pop(0) if self.mic else b"\x00" * FRAME
        assert isinstance(frame, bytes)
        t.write(_HDR.pack(0x10, len(frame)) + frame)
        self._activity = now
        self._check()

    # -- asyncio

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        now = time.monotonic()
        self._activity = now
        while len(self.buf) >= 3:
            kind, length = _HDR.unpack_from(self.buf, 0)
            if len(self.buf) < 3 + length:
                break
            payload = bytes(self.buf[3 : 3 + length])
            del self.buf[: 3 + length]
            if kind == 0x00:  # the robot asks to hang up
                self.robot_hangup = True
                self.close("robot hung up")
                return
            if kind != 0x10 or length < 1:
                # ast_audiosocket_receive_frame: anything but audio or hangup is an error; the app ends.
                self.close(f"Received AudioSocket message other than hangup or audio (kind 0x{kind:02x})")
                return
            self._hear(payload, now)
        self._check()

    def _hear(self, pcm: bytes, now: float) -> None:
        self.frames_heard += 1
        if self._last_heard is not None:
            gap = now - self._last_heard
            self.max_gap = max(self.max_gap, gap)
            if gap > 2 * self.fake.frame_period_s:
                self.late_frames += 1
        self._last_heard = now
        if pcm.count(0) == len(pcm):
            self._silence_run += 1
            self._voice_run = 0
        else:
            self.voice_frames_heard += 1
            self._voice_run += 1
            self._silence_run = 0

    def connection_lost(self, exc: Exception | None) -> None:
        self.close("robot closed the socket")

    def close(self, why: str) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_result(why)
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


class FakeAsteriskThread:
    """The fake on its own event loop in a background thread, for tests that run the CLI in a subprocess
    or with asyncio.run() of their own: `with FakeAsteriskThread(...) as pbx:` (pbx.port is its AMI port)."""

    def __init__(self, **kwargs: Any) -> None:
        import threading

        self.kwargs = kwargs
        self.fake: FakeAsterisk | None = None
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="fake-asterisk", daemon=True)

    def __enter__(self) -> FakeAsterisk:
        self._thread.start()

        async def make() -> FakeAsterisk:
            fake = FakeAsterisk(**self.kwargs)
            await fake.start()
            return fake

        self.fake = asyncio.run_coroutine_threadsafe(make(), self.loop).result(10)
        return self.fake

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run `fn` on the fake's loop (its state is not thread-safe) and return its result."""

        async def run() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)

    def __exit__(self, *exc: object) -> None:
        if self.fake is not None:
            asyncio.run_coroutine_threadsafe(self.fake.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


def main(argv: list[str] | None = None) -> None:
    """Run the fake standalone: `python -m tests.fake_asterisk --ami-port 5038 --audiosocket 127.0.0.1:9092`."""
    import argparse
    import sys

    ap = argparse.ArgumentParser(prog="python -m tests.fake_asterisk", description=main.__doc__)
    ap.add_argument("--ami-port", type=int, default=5038)
    ap.add_argument("--audiosocket", default="127.0.0.1:9092", help="the robot's AudioSocket host:port")
    ap.add_argument("--secret", default="s3cret")
    ap.add_argument("--outcome", default="answer", help="scripted outcome of every number (see Scenario)")
    args = ap.parse_args(argv)
    host, _, port = args.audiosocket.rpartition(":")

    async def run() -> None:
        fake = FakeAsterisk(secret=args.secret, audiosocket=(host, int(port)),
                            scenario_for=lambda number: Scenario(args.outcome))
        await fake.start(args.ami_port)
        sys.stderr.write(f"fake Asterisk: AMI on 127.0.0.1:{fake.port}, AudioSocket to {args.audiosocket}\n")
        try:
            await asyncio.Event().wait()
        finally:
            await fake.stop()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
