"""`telephony.backend: asterisk`: calls placed by AMI Originate, answered calls carried by AudioSocket.

One attempt = one Originate with `Async: true`, our uuid as `ChannelId` (so every event of the dialled
channel carries it as `Uniqueid`) and as the `AUDIOSOCKET_UUID` variable (so the robot context's
`AudioSocket(${AUDIOSOCKET_UUID},host:port)` connects back with it), our own `ActionID`, the trunk's
channel pattern, `Timeout` in ms and the caller ID. With an advertised host it also carries
`AUDIOSOCKET_ADDR=<host>:<port>`, the address this process's AudioSocket server listens at, so a
dialplan written `AudioSocket(${AUDIOSOCKET_UUID},${AUDIOSOCKET_ADDR})` connects each answered call
to the worker that placed it: several `outreach run` workers (one per core, each on its own port)
share one Asterisk and the trunks' limits. How it ended comes from `OriginateResponse`
(Reason) and the channel's `Hangup` (Q.850 cause), mapped by `causes.classify`; an AudioSocket
connection carrying the uuid also proves the answer (it arrives even while AMI is cut).

Faults, per dialer/base.py's taxonomy:
- AMI down before the Originate left: `TelephonyUnavailable` (nobody charged, the breaker pauses).
- AMI cut after it left: the result may be lost. We wait for the reconnect, ask `CoreShowChannels`
  whether the channel is still up (then keep following it), and otherwise report
  `TelephonyUnavailable` (not charged). panoramisk never re-sends it (see ami.py); a channel id is
  never dialled twice (`DuplicateChannel`), and Asterisk itself refuses a live duplicate ChannelId.
- Trunk-side causes (SIP 503 -> 34, 38, 41, 42, 44, 47, 102) raise `TrunkCongestion`; a barred or
  misconfigured trunk (50, 52, 57, 58, 65, 66), a refused Originate (unknown context, no permission) or
  an answered call whose AudioSocket never connects raise `TelephonyConfigError`.
"""

from __future__ import annotations

import asyncio
import logging
import uuid as uuidlib
from collections.abc import Callable, Collection, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any

import phonenumbers

from common.masking import mask_phone
from dialer.asterisk.ami import (
    AmiActionError,
    AmiAuthError,
    AmiClient,
    AmiDisconnected,
    AmiError,
    AmiSettings,
    AmiTimeout,
)
from dialer.asterisk.audiosocket import AudioSocketServer, AudioSocketSession, Limits
from dialer.asterisk.causes import OUR_TIMEOUT, CallEnd, classify, parse_int
from dialer.base import (
    CallOutcome,
    DuplicateChannel,
    Health,
    OriginateRequest,
    OriginateResult,
    TelephonyBase,
    TelephonyConfigError,
    TelephonyUnavailable,
    TrunkCongestion,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TrunkRoute:
    """How a trunk is dialled: `channel` is a pattern with {number} (E.164 digits without '+'),
    {e164} (with '+') or {national} (the national significant number), e.g. `PJSIP/{national}@trunk`."""

    name: str
    channel: str
    max_channels: int | None = None  # a hard stop on this backend's side (admission sizes it too)

    def dial_string(self, phone: str) -> str:
        digits = phone.lstrip("+")
        national = digits
        try:
            national = str(phonenumbers.parse(phone if phone.startswith("+") else "+" + digits).national_number)
        except phonenumbers.NumberParseException:
            pass
        try:
            return self.channel.format(number=digits, e164="+" + digits, national=national)
        except (KeyError, IndexError, ValueError) as exc:
            raise TelephonyConfigError(
                f"trunk {self.name!r}: channel pattern {self.channel!r} is not usable ({exc}); "
                "use {number}, {e164} or {national}"
            ) from exc


@dataclass(frozen=True, slots=True)
class AsteriskSettings:
    ami: AmiSettings = field(default_factory=AmiSettings)
    audiosocket_host: str = "127.0.0.1"
    audiosocket_port: int = 9092
    # Where Asterisk reaches our AudioSocket server (its host; the port is the one we listen on): sent
    # with every Originate as AUDIOSOCKET_ADDR. Empty: not sent (the dialplan names a fixed address).
    audiosocket_advertise_host: str = ""
    trunks: Mapping[str, TrunkRoute] = field(
        default_factory=lambda: {"default": TrunkRoute("default", "PJSIP/{number}@trunk")}
    )
    robot_context: str = "outreach-robot"
    robot_exten: str = "s"
    human_context: str = "outreach-human"
    human_exten: str = "s"
    campaign_variable: str = ""  # set on every call as OUTREACH_CAMPAIGN when given
    cause_grace_s: float = 0.5  # a failed OriginateResponse may precede the channel's Hangup
    answer_media_timeout_s: float = 3.0  # answered: AudioSocket must connect within this
    response_margin_s: float = 10.0  # OriginateResponse is due by Timeout + this
    reconnect_wait_s: float = 15.0  # an attempt cut by an AMI drop waits this long for the reconnect
    limits: Limits = field(default_factory=Limits)
    # start() fails when the first login does not come within the AMI connect timeout; False (the
    # service): it logs and goes on reconnecting. A refused secret always fails.
    start_wait: bool = True


class _Call:
    __slots__ = ("req", "trunk", "action_id", "t0", "channel", "cause", "hungup", "response", "ringing",
                 "media", "session", "answered", "ended", "transferred")

    def __init__(self, req: OriginateRequest, trunk: TrunkRoute, media: asyncio.Future[AudioSocketSession]) -> None:
        loop = asyncio.get_running_loop()
        self.req = req
        self.trunk = trunk
        self.action_id = f"outreach-{req.channel_id}"
        self.t0 = loop.time()
        self.channel: str | None = None
        self.cause: int | None = None
        self.hungup = asyncio.Event()
        self.response: asyncio.Future[tuple[bool, int | None]] = loop.create_future()
        self.ringing = False
        self.media = media
        self.session: AudioSocketSession | None = None
        self.answered = False
        self.ended = False
        self.transferred = False


InboundHandler = Callable[[AudioSocketSession, dict[str, str]], None]


class AsteriskTelephony(TelephonyBase):
    """The Asterisk backend (implements dialer.base.Telephony)."""

    name = "asterisk"
    supports_transfer = True

    def __init__(self, settings: AsteriskSettings, *, on_inbound: InboundHandler | None = None) -> None:
        self.settings = settings
        self.on_inbound = on_inbound
        self._ami = AmiClient(settings.ami, on_event=self._on_event, on_state=self._on_ami_state)
        self._server = AudioSocketServer(
            settings.audiosocket_host, settings.audiosocket_port, limits=settings.limits,
            on_unexpected=self._on_unexpected,
        )
        self._calls: dict[str, _Call] = {}  # our channel id -> call, while it is ours
        self._orphans: set[str] = set()  # ours, found up by reconcile() but placed by an earlier process
        self._by_action: dict[str, str] = {}
        self._seen: set[str] = set()  # every channel id ever sent (never dialled twice)
        self._active_per_trunk: dict[str, int] = {}
        self._inbound_meta: dict[str, dict[str, str]] = {}  # AudioSocket uuid -> UserEvent fields
        self._meta_waiters: dict[str, asyncio.Future[None]] = {}
        self._inbound_channels: dict[str, str] = {}  # AudioSocket uuid of an inbound call -> its channel name
        # Inbound calls waiting for the dialer to take them: E.164 phone -> (session, meta, taken)
        self._held: dict[str, tuple[AudioSocketSession, dict[str, str], asyncio.Future[str]]] = {}
        self._state_changed: asyncio.Future[None] | None = None  # resolved (and replaced) on each AMI up/down
        self._started = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self.stats: dict[str, int] = {"originates": 0, "answered": 0, "lost_results": 0, "inbound": 0}

    # ------------------------------------------------------------------ lifecycle

    @property
    def audiosocket_port(self) -> int:
        return self._server.port

    @property
    def audiosocket_address(self) -> str:
        """`host:port` as the dialplan's AudioSocket() takes it (an IPv6 host in brackets)."""
        host = self.settings.audiosocket_advertise_host or self.settings.audiosocket_host
        return f"[{host}]:{self._server.port}" if ":" in host else f"{host}:{self._server.port}"

    @property
    def ami(self) -> AmiClient:
        return self._ami

    async def start(self) -> None:
        if self._started:
            return
        for t in self.settings.trunks.values():
            t.dial_string("+8613800138000")  # a bad pattern is a permanent fault, found now
        try:
            await self._server.start()
        except OSError as exc:
            raise TelephonyConfigError(
                f"cannot listen for AudioSocket on {self.settings.audiosocket_host}:{self.settings.audiosocket_port}: {exc}"
            ) from exc
        try:
            await self._ami.start(wait=True)
        except AmiAuthError as exc:
            await self._shutdown()
            raise TelephonyConfigError(str(exc)) from exc
        except AmiDisconnected as exc:
            if self.settings.start_wait:
                await self._shutdown()
                raise TelephonyUnavailable(str(exc)) from exc
            # A service keeps running: AMI keeps reconnecting, calls meanwhile raise TelephonyUnavailable
            # (the trunk's breaker pauses dialing, nobody is charged).
            log.warning("Asterisk not reachable yet: %s", exc)
        self._started = True

    async def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        for cid in list(self._calls):
            try:
                await self.hangup(cid)
            except TelephonyUnavailable:
                pass
        await self._shutdown()

    async def _shutdown(self) -> None:
        await self._ami.close()
        await self._server.stop()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def health(self) -> Health:
        if not self._ami.connected:
            return Health(False, f"AMI {self.settings.ami.host}:{self.settings.ami.port} not connected: "
                                 f"{self._ami.last_error or 'connecting'}")
        return Health(True, f"AMI connected (session {self._ami.generation}); AudioSocket on port "
                            f"{self._server.port}; {len(self._calls)} calls")

    # ------------------------------------------------------------------ calls

    def _trunk(self, name: str) -> TrunkRoute:
        trunk = self.settings.trunks.get(name)
        if trunk is None and name == "default" and len(self.settings.trunks) == 1:
            trunk = next(iter(self.settings.trunks.values()))
        if trunk is None:
            raise TelephonyConfigError(
                f"no trunk {name!r} in the Asterisk backend (configured: {', '.join(self.settings.trunks) or 'none'})"
            )
        return trunk

    async def originate(self, request: OriginateRequest) -> OriginateResult:
        cid = request.channel_id
        if cid in self._seen:
            raise DuplicateChannel(f"channel id {cid} was already dialled; an attempt is never dialled twice")
        try:
            call_uuid = str(uuidlib.UUID(cid))
        except ValueError as exc:
            raise TelephonyConfigError(f"channel id {cid!r} is not a uuid (AudioSocket needs one)") from exc
        held = self._held.pop(request.phone, None)
        if held is not None and not held[0].closed:
            return self._take_inbound(request, call_uuid, *held)
        trunk = self._trunk(request.trunk)
        if not self._ami.connected:
            raise TelephonyUnavailable(f"AMI not connected ({self._ami.last_error or 'connecting'})")
        active = self._active_per_trunk.get(trunk.name, 0)
        if trunk.max_channels is not None and active >= trunk.max_channels:
            raise TrunkCongestion(f"trunk {trunk.name}: all {trunk.max_channels} channels in use")
        dial = trunk.dial_string(request.phone)
        self._seen.add(cid)
        call = _Call(request, trunk, self._server.expect(call_uuid))
        self._calls[cid] = call
        self._by_action[call.action_id] = cid
        self._active_per_trunk[trunk.name] = active + 1
        variables = [f"AUDIOSOCKET_UUID={call_uuid}", f"OUTREACH_ATTEMPT={cid}"]
        if self.settings.audiosocket_advertise_host:
            variables.append(f"AUDIOSOCKET_ADDR={self.audiosocket_address}")
        if self.settings.campaign_variable:
            variables.append(f"OUTREACH_CAMPAIGN={self.settings.campaign_variable}")
        action = {
            "Action": "Originate", "ActionID": call.action_id, "Channel": dial,
            "Context": self.settings.robot_context, "Exten": self.settings.robot_exten, "Priority": 1,
            "Timeout": int(request.timeout_s * 1000), "CallerID": request.caller_id, "ChannelId": cid,
            "Variable": variables, "Async": "true",
        }
        self.stats["originates"] += 1
        handed_over = False
        try:
            try:
                await self._ami.send(action)
            except AmiActionError as exc:
                raise TelephonyConfigError(f"Asterisk refused the Originate: {exc.reason}") from exc
            except (AmiDisconnected, AmiTimeout) as exc:
                log.warning("call %s: AMI failed while sending the Originate (%s); resolving it after reconnect", cid, exc)
            result = await self._outcome(call)
            handed_over = result.outcome == CallOutcome.answered
            return result
        finally:
            if not handed_over:
                self._release(call)

    def _release(self, call: _Call) -> None:
        cid = call.req.channel_id
        if self._calls.pop(cid, None) is None:
            return
        self._by_action.pop(call.action_id, None)
        n = self._active_per_trunk.get(call.trunk.name, 1) - 1
        self._active_per_trunk[call.trunk.name] = max(n, 0)
        self._server.forget(cid)

    async def _outcome(self, call: _Call) -> OriginateResult:
        loop = asyncio.get_running_loop()
        s = self.settings
        deadline = call.t0 + call.req.timeout_s + s.response_margin_s
        gen = self._ami.generation
        while True:
            waits: list[asyncio.Future[Any]] = [call.response, call.media]
            remaining = deadline - loop.time()
            if remaining <= 0:
                return await self._no_response(call)
            if not self._ami.connected or gen != self._ami.generation:
                return await self._after_drop(call)
            dropped = asyncio.ensure_future(self._wait_drop(gen))
            try:
                await asyncio.wait([*waits, dropped], timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            finally:
                dropped.cancel()
            if call.media.done():
                return self._answered(call)
            if call.response.done():
                ok, reason = call.response.result()
                if ok:
                    return await self._answered_wait_media(call, reason)
                return await self._failed(call, reason)

    def _state_future(self) -> asyncio.Future[None]:
        if self._state_changed is None or self._state_changed.done():
            self._state_changed = asyncio.get_running_loop().create_future()
        return self._state_changed

    async def _wait_drop(self, gen: int) -> None:
        while self._ami.connected and self._ami.generation == gen:
            await asyncio.shield(self._state_future())

    def _elapsed(self, call: _Call) -> float:
        return max(asyncio.get_running_loop().time() - call.t0, 0.0)

    def _answered(self, call: _Call) -> OriginateResult:
        session = call.media.result()
        call.session = session
        call.answered = True
        self.stats["answered"] += 1
        self._spawn(self._follow(call, session))
        return OriginateResult(call.req.channel_id, CallOutcome.answered, self._elapsed(call), cause="已接通",
                               media=session, extra={"channel": call.channel or "", "trunk": call.trunk.name})

    async def _answered_wait_media(self, call: _Call, reason: int | None) -> OriginateResult:
        try:
            await asyncio.wait_for(asyncio.shield(call.media), self.settings.answer_media_timeout_s)
        except TimeoutError:
            await self._ami_hangup(call)
            raise TelephonyConfigError(
                f"call {call.req.channel_id} was answered but Asterisk's AudioSocket never connected to "
                f"port {self._server.port} within {self.settings.answer_media_timeout_s:.0f} s: check "
                f"AudioSocket(${{AUDIOSOCKET_UUID}},${{AUDIOSOCKET_ADDR}}) in context {self.settings.robot_context} "
                f"and that Asterisk reaches {self.audiosocket_address} (telephony.audiosocket.advertise_host)"
            ) from None
        except asyncio.CancelledError:
            if not call.media.cancelled():
                raise
            raise TelephonyUnavailable(f"call {call.req.channel_id}: media server stopped") from None
        return self._answered(call)

    async def _failed(self, call: _Call, reason: int | None) -> OriginateResult:
        if call.cause is None and call.channel is not None and not call.hungup.is_set():
            try:
                await asyncio.wait_for(call.hungup.wait(), self.settings.cause_grace_s)
            except TimeoutError:
                pass
        end = classify(reason, call.cause)
        return self._result(call, end)

    def _result(self, call: _Call, end: CallEnd) -> OriginateResult:
        cid = call.req.channel_id
        log.info("call %s to %s: %s", cid, mask_phone(call.req.phone), end.text)
        if end.fault == "permanent":
            raise TelephonyConfigError(f"trunk {call.trunk.name}: {end.text}")
        if end.fault == "transient":
            if end.outcome == CallOutcome.congestion:
                raise TrunkCongestion(f"trunk {call.trunk.name}: {end.text}")
            raise TelephonyUnavailable(f"trunk {call.trunk.name}: {end.text}")
        extra = {"trunk": call.trunk.name, "reason": "" if end.reason is None else str(end.reason),
                 "q850": "" if end.cause is None else str(end.cause)}
        return OriginateResult(cid, end.outcome, self._elapsed(call), cause=end.text, extra=extra)

    async def _no_response(self, call: _Call) -> OriginateResult:
        """Our own deadline passed without an OriginateResponse: end the call ourselves."""
        await self._ami_hangup(call)
        if call.ringing:
            return self._result(call, OUR_TIMEOUT)
        raise TelephonyUnavailable(
            f"call {call.req.channel_id}: no OriginateResponse from Asterisk within "
            f"{call.req.timeout_s + self.settings.response_margin_s:.0f} s"
        )

    async def _after_drop(self, call: _Call) -> OriginateResult:
        """AMI dropped while the call was being set up: its result may be lost. Resolve it from AMI."""
        loop = asyncio.get_running_loop()
        cid = call.req.channel_id
        until = loop.time() + self.settings.reconnect_wait_s
        while not self._ami.connected and loop.time() < until:
            if call.media.done():
                return self._answered(call)  # the AudioSocket proved the answer without AMI
            waits: list[asyncio.Future[Any]] = [call.media, self._state_future()]
            await asyncio.wait(waits, timeout=until - loop.time(), return_when=asyncio.FIRST_COMPLETED)
        if call.media.done():
            return self._answered(call)
        if not self._ami.connected:
            self.stats["lost_results"] += 1
            raise TelephonyUnavailable(
                f"call {cid}: AMI connection lost during the call and not back within "
                f"{self.settings.reconnect_wait_s:.0f} s; its result is unknown (not charged)"
            )
        try:
            live = await self._live_channels()
        except TelephonyUnavailable:
            live = set()
        if cid in live:
            log.info("call %s: still up after the AMI reconnect; following it", cid)
            return await self._outcome_again(call)
        if call.response.done():
            ok, reason = call.response.result()
            return await (self._answered_wait_media(call, reason) if ok else self._failed(call, reason))
        if call.hungup.is_set():
            return self._result(call, classify(None, call.cause))
        self.stats["lost_results"] += 1
        raise TelephonyUnavailable(
            f"call {cid}: AMI connection lost while the call was set up; the channel is gone and its result "
            "was lost (not charged)"
        )

    async def _outcome_again(self, call: _Call) -> OriginateResult:
        return await self._outcome(call)

    async def _follow(self, call: _Call, session: AudioSocketSession) -> None:
        """An answered call stays ours until its AudioSocket ends and the channel is gone."""
        try:
            await session.ended
        finally:
            if not call.transferred and not call.hungup.is_set() and self._ami.connected:
                try:
                    await asyncio.wait_for(call.hungup.wait(), 2.0)
                except TimeoutError:
                    await self._ami_hangup(call)
            self._release(call)

    # ------------------------------------------------------------------ hang-up, reconcile, transfer

    async def hangup(self, channel_id: str) -> None:
        call = self._calls.get(channel_id)
        if call is None:
            if channel_id in self._orphans:  # a call of a previous run: AMI Hangup by its uniqueid
                self._orphans.discard(channel_id)
                await self._ami_hangup_id(channel_id)
            return
        if call.session is not None and not call.session.closed:
            await call.session.hangup()
        if not call.hungup.is_set():
            await self._ami_hangup(call)

    async def _ami_hangup(self, call: _Call) -> None:
        if call.hungup.is_set() or not self._ami.connected:
            return
        try:
            await self._ami.send({"Action": "Hangup", "Channel": call.channel or call.req.channel_id, "Cause": 16})
        except AmiActionError:
            pass  # "No such channel": it is gone already
        except AmiError as exc:
            log.warning("call %s: AMI hangup failed: %s", call.req.channel_id, exc)

    async def _live_channels(self) -> set[str]:
        try:
            reply = await self._ami.send({"Action": "CoreShowChannels"}, wait_s=10.0)
        except AmiError as exc:
            raise TelephonyUnavailable(f"cannot list Asterisk's channels: {exc}") from exc
        items = reply if isinstance(reply, list) else [reply]
        return {str(m.uniqueid) for m in items if getattr(m, "event", "") == "CoreShowChannel"}

    async def _ami_hangup_id(self, channel_id: str) -> None:
        try:
            await self._ami.send({"Action": "Hangup", "Channel": channel_id, "Cause": 16})
        except AmiActionError:
            pass  # "No such channel": it ended meanwhile
        except AmiError as exc:
            log.warning("call %s: AMI hangup failed: %s", channel_id, exc)

    async def reconcile(self, owned: Collection[str]) -> set[str]:
        """Which of `owned` are still up on Asterisk (CoreShowChannels; our ChannelId is the channel's
        uniqueid). Those a previous process placed can then be ended with `hangup(channel_id)`, which the
        engine does at its start. Raises TelephonyUnavailable when AMI cannot list the channels."""
        live = await self._live_channels() & set(owned)
        self._orphans |= live - set(self._calls)
        return live

    async def hangup_stale(self, owned: Collection[str]) -> set[str]:
        """After a restart: hang up every channel of `owned` still up (AMI Hangup by uniqueid)."""
        stale = await self.reconcile(owned)
        for cid in stale:
            await self.hangup(cid)
        return stale

    async def transfer(self, channel_id: str, target: str) -> None:
        """Redirect an answered call to the human queue's dialplan (`target`: extension in the human
        context, or `context,exten`). The AudioSocket app ends; the channel carries OUTREACH_ATTEMPT."""
        call = self._calls.get(channel_id) or self._by_media_id(channel_id)
        inbound = self._inbound_channels.get(channel_id)
        if call is not None and call.answered and not call.hungup.is_set():
            name = call.channel or call.req.channel_id
        elif inbound is not None:
            name = inbound
        else:
            raise TelephonyUnavailable(f"call {channel_id} is not up; cannot transfer it")
        context, _, exten = target.partition(",") if "," in target else ("", "", target)
        context = context or self.settings.human_context
        exten = exten or self.settings.human_exten
        try:
            await self._ami.send({"Action": "Redirect", "Channel": name, "Context": context,
                                  "Exten": exten, "Priority": 1})
        except AmiActionError as exc:
            raise TelephonyConfigError(f"cannot transfer call {channel_id} to {context},{exten}: {exc.reason}") from exc
        except AmiError as exc:
            raise TelephonyUnavailable(f"cannot transfer call {channel_id}: {exc}") from exc
        if call is not None:
            call.transferred = True
        log.info("call %s transferred to %s,%s", channel_id, context, exten)

    def _by_media_id(self, media_id: str) -> _Call | None:
        for call in self._calls.values():
            if call.session is not None and call.session.call_id == media_id:
                return call
        return None

    # ------------------------------------------------------------------ AMI events

    def _on_ami_state(self, up: bool, why: str) -> None:
        fut = self._state_changed
        if fut is not None and not fut.done():
            fut.set_result(None)  # wakes every waiter; they re-check the state

    def _on_event(self, msg: Any) -> None:
        event = getattr(msg, "event", "")
        if event == "OriginateResponse":
            cid = self._by_action.get(getattr(msg, "actionid", "")) or str(getattr(msg, "uniqueid", ""))
            call = self._calls.get(cid)
            if call is not None and not call.response.done():
                call.response.set_result((getattr(msg, "response", "") == "Success", parse_int(msg.reason)))
            return
        uid = str(getattr(msg, "uniqueid", ""))
        if event == "UserEvent" and getattr(msg, "userevent", "") == "OutreachInbound":
            meta = {"caller": str(msg.callernum), "did": str(msg.did), "channel": str(msg.channel), "uniqueid": uid}
            try:
                key = str(uuidlib.UUID(str(msg.uuid)))
            except ValueError:
                log.warning("inbound UserEvent with a bad Uuid %r; check the outreach-inbound context", msg.uuid)
                return
            self._inbound_meta[key] = meta
            waiter = self._meta_waiters.get(key)
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
            return
        call = self._calls.get(uid)
        if call is None:
            return
        if event == "Newchannel":
            call.channel = str(msg.channel) or call.channel
        elif event == "Newstate":
            state = parse_int(msg.channelstate)
            call.ringing = call.ringing or state in (4, 5, 6)
            call.channel = str(msg.channel) or call.channel
        elif event == "Hangup":
            call.cause = parse_int(msg.cause)
            call.hungup.set()

    # ------------------------------------------------------------------ inbound

    def hold_inbound(self, phone: str, session: AudioSocketSession, meta: dict[str, str]) -> asyncio.Future[str]:
        """Keep a resident's inbound call until the dialer "originates" its open screening: that
        originate gets this call (already answered) instead of dialling. The future resolves with the
        attempt's channel id when taken."""
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        old = self._held.pop(phone, None)
        if old is not None and not old[2].done():
            old[2].cancel()
        self._held[phone] = (session, meta, fut)
        return fut

    def release_inbound(self, phone: str, session: AudioSocketSession) -> bool:
        """Stop holding the call (not taken in time); True when it was still held."""
        held = self._held.get(phone)
        if held is None or held[0] is not session:
            return False
        del self._held[phone]
        if not held[2].done():
            held[2].cancel()
        return True

    def _take_inbound(self, request: OriginateRequest, call_uuid: str, session: AudioSocketSession,
                      meta: dict[str, str], taken: asyncio.Future[str]) -> OriginateResult:
        trunk = self._trunk(request.trunk)
        self._seen.add(request.channel_id)
        call = _Call(request, trunk, asyncio.get_running_loop().create_future())
        call.channel = meta.get("channel") or None
        call.media.set_result(session)
        self._calls[request.channel_id] = call
        self._active_per_trunk[trunk.name] = self._active_per_trunk.get(trunk.name, 0) + 1
        if not taken.done():
            taken.set_result(request.channel_id)
        log.info("call %s: inbound call from %s taken for its open screening", request.channel_id,
                 mask_phone(request.phone))
        result = self._answered(call)
        result.cause = "居民回拨（呼入）"
        result.ring_s = 0.0
        result.extra["direction"] = "inbound"
        return result

    def _on_unexpected(self, session: AudioSocketSession) -> None:
        self._spawn(self._inbound(session))

    async def _inbound(self, session: AudioSocketSession) -> None:
        """An AudioSocket uuid no outbound call waits for: a resident calling in, announced by the inbound
        context's UserEvent (which may arrive just after the socket), or a stranger (refused)."""
        if session.call_id not in self._inbound_meta:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._meta_waiters[session.call_id] = waiter
            try:
                await asyncio.wait_for(waiter, 1.0)
            except TimeoutError:
                pass
            finally:
                self._meta_waiters.pop(session.call_id, None)
        meta = self._inbound_meta.pop(session.call_id, None)
        if meta is None or self.on_inbound is None:
            self._server.refused.append((session.call_id, "unknown uuid"))
            log.warning("AudioSocket: refusing uuid %s (no call of ours, no inbound announcement)", session.call_id)
            await session.hangup()
            return
        self.stats["inbound"] += 1
        self._inbound_channels[session.call_id] = meta.get("channel", "")
        session.ended.add_done_callback(lambda _f: self._inbound_channels.pop(session.call_id, None))
        try:
            self.on_inbound(session, meta)
        except Exception:
            log.exception("inbound call %s: the handler failed", session.call_id)
            await session.hangup()
