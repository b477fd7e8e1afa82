"""The Asterisk backend over the fake Asterisk: the telephony contract suite, then what is Asterisk-specific
(outcomes with Q.850 words, AMI cut mid-call, trunk limits, transfer, reconcile)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable

import pytest

from common.audio import FRAME_BYTES
from dialer.asterisk.ami import AmiSettings
from dialer.asterisk.audiosocket import Limits
from dialer.asterisk.backend import AsteriskSettings, AsteriskTelephony, TrunkRoute
from dialer.base import (
    CallOutcome,
    OriginateRequest,
    OriginateResult,
    Telephony,
    TelephonyConfigError,
    TelephonyUnavailable,
    TrunkCongestion,
)
from dialer.media import AudioFrame, DtmfEvent, HangupEvent
from tests.fake_asterisk import FakeAsterisk, Scenario, dtmf, header, pause, speak, wait_prompt
from tests.telephony_contract import Harness, TelephonyContract

VOICE = b"\x00\x10" * (FRAME_BYTES // 2)  # a loud square-ish frame: not silence
BEHAVIOURS = {
    "answered": lambda: Scenario("answer", ring_s=0.05, steps=[wait_prompt(), speak(VOICE * 10)]),
    "stuck": lambda: Scenario("answer", ring_s=0.05),
    "busy": lambda: Scenario("busy", ring_s=0.05),
    "no_answer": lambda: Scenario("no_answer"),
    "invalid_number": lambda: Scenario("invalid"),
    "switched_off": lambda: Scenario("switched_off"),
    "unanswered": lambda: Scenario("unanswered", ring_s=0.1),
    "barred": lambda: Scenario("barred"),
    "no_channel": lambda: Scenario("no_channel"),
}


def fast_settings(pbx: FakeAsterisk, **kw: object) -> AsteriskSettings:
    ami = AmiSettings(host="127.0.0.1", port=pbx.port, username="outreach", secret="s3cret", connect_timeout_s=3.0,
                      action_timeout_s=2.0, ping_interval_s=0.3, ping_timeout_s=0.5, backoff_initial_s=0.05,
                      backoff_max_s=0.2)
    base: dict[str, object] = dict(ami=ami, audiosocket_port=0, trunks={"default": TrunkRoute("default", "PJSIP/{number}@trunk")},
                                   reconnect_wait_s=5.0, response_margin_s=3.0, limits=Limits(stall_s=3.0))
    base.update(kw)
    return AsteriskSettings(**base)  # type: ignore[arg-type]


async def until(cond: Callable[[], bool], within_s: float = 5.0) -> bool:
    loop = asyncio.get_running_loop()
    end = loop.time() + within_s
    while not cond():
        if loop.time() > end:
            return False
        await asyncio.sleep(0.02)
    return True


class AsteriskHarness:
    def __init__(self, pbx: FakeAsterisk) -> None:
        self.pbx = pbx
        self.numbers: dict[str, Scenario] = {}
        self._backend: AsteriskTelephony | None = None
        pbx.scenario_for = lambda number: self.numbers.get(number, Scenario("invalid"))
        pbx.audiosocket = lambda: ("127.0.0.1", self._backend.audiosocket_port if self._backend else 0)

    def backend(self) -> Telephony:
        self._backend = AsteriskTelephony(fast_settings(self.pbx))
        return self._backend

    def phone(self, behaviour: str) -> str:
        number = f"+86139{len(self.numbers):08d}"
        self.numbers[number.lstrip("+")] = BEHAVIOURS[behaviour]()
        return number

    async def break_peer(self, backend: Telephony) -> None:
        self.pbx.refuse(True)
        self.pbx.drop_connections()
        assert await until(lambda: not backend.health().ok)

    async def restore_peer(self, backend: Telephony) -> None:
        self.pbx.refuse(False)
        assert await until(lambda: backend.health().ok)

    async def congest_trunk(self, backend: Telephony, on: bool) -> None:
        self.pbx.trunks["trunk"].max_channels = 0 if on else 1000

    async def exchange(self, result: OriginateResult) -> None:
        media = result.media
        assert media is not None
        for _ in range(10):
            await media.send_audio(VOICE)  # a short prompt
        for _ in range(10):
            await media.send_audio(b"\x00" * FRAME_BYTES)
        while True:
            ev = await media.receive()
            if isinstance(ev, HangupEvent) or isinstance(ev, DtmfEvent):
                return
            if isinstance(ev, AudioFrame) and ev.pcm != b"\x00" * FRAME_BYTES:
                return

    async def far_end_up(self, result: OriginateResult) -> bool:
        return not await until(lambda: result.channel_id not in self.pbx.channels, 3.0)


@pytest.fixture
async def pbx() -> AsyncIterator[FakeAsterisk]:
    async with FakeAsterisk(auth_delay_s=0.05) as fake:
        yield fake


class TestAsteriskContract(TelephonyContract):
    @pytest.fixture
    def harness(self, pbx: FakeAsterisk) -> Harness:
        return AsteriskHarness(pbx)


# ----------------------------------------------------------------------------- Asterisk specifics


def req(phone: str, timeout_s: float = 1.0) -> OriginateRequest:
    return OriginateRequest(channel_id=str(uuid.uuid4()), phone=phone, caller_id="12320", timeout_s=timeout_s)


async def test_originate_carries_our_ids_variables_and_the_trunk_pattern(pbx: FakeAsterisk) -> None:
    h = AsteriskHarness(pbx)
    async with h.backend() as b:
        r = req(h.phone("busy"), timeout_s=7)
        res = await b.originate(r)
        orig = next(a for a in pbx.actions if header(a, "Action") == "Originate")
        assert header(orig, "ChannelId") == r.channel_id
        assert header(orig, "ActionID") == f"outreach-{r.channel_id}"
        assert header(orig, "Async") == "true" and header(orig, "Timeout") == "7000"
        assert header(orig, "Channel") == f"PJSIP/{r.phone.lstrip('+')}@trunk"
        assert header(orig, "Context") == "outreach-robot" and header(orig, "CallerID") == "12320"
        assert f"AUDIOSOCKET_UUID={r.channel_id}" in orig["Variable"]
        assert res.outcome is CallOutcome.busy and res.cause == "用户忙（Q.850 17，Reason 5）"


@pytest.mark.parametrize(
    ("behaviour", "outcome", "words"),
    [
        ("invalid_number", CallOutcome.invalid_number, "空号"),
        ("switched_off", CallOutcome.congestion, "关机或不在服务区"),
        ("unanswered", CallOutcome.no_answer, "无人接听"),
        ("no_answer", CallOutcome.no_answer, "无人接听"),
    ],
)
async def test_outcomes_keep_the_cause_in_words(pbx: FakeAsterisk, behaviour: str, outcome: CallOutcome, words: str) -> None:
    h = AsteriskHarness(pbx)
    async with h.backend() as b:
        res = await b.originate(req(h.phone(behaviour), timeout_s=0.5))
        assert res.outcome is outcome and res.cause is not None and res.cause.startswith(words)


async def test_system_faults_raise_instead_of_charging_the_resident(pbx: FakeAsterisk) -> None:
    h = AsteriskHarness(pbx)
    async with h.backend() as b:
        with pytest.raises(TelephonyConfigError, match="中继禁止呼出"):
            await b.originate(req(h.phone("barred")))
        with pytest.raises(TelephonyUnavailable, match="原因不明"):
            await b.originate(req(h.phone("no_channel")))
        pbx.contexts.pop("outreach-robot")
        with pytest.raises(TelephonyConfigError, match="Extension does not exist"):
            await b.originate(req(h.phone("busy")))


async def test_answered_but_audiosocket_never_connects_is_a_config_fault(pbx: FakeAsterisk) -> None:
    h = AsteriskHarness(pbx)
    pbx.audiosocket = ("127.0.0.1", 1)  # the dialplan points at the wrong port
    async with AsteriskTelephony(fast_settings(pbx, answer_media_timeout_s=1.0)) as b:
        with pytest.raises(TelephonyConfigError, match="AudioSocket never connected"):
            await b.originate(req(h.phone("answered")))


async def test_ami_cut_while_ringing_reconnects_and_never_redials(pbx: FakeAsterisk) -> None:
    h = AsteriskHarness(pbx)
    async with h.backend() as b:
        ringing = {n: Scenario("busy", ring_s=0.8) for n in range(3)}
        phones = []
        for sc in ringing.values():
            p = h.phone("busy")
            h.numbers[p.lstrip("+")] = sc
            phones.append(p)
        tasks = [asyncio.ensure_future(b.originate(req(p))) for p in phones]
        await until(lambda: len(pbx.of("dial")) == 3)
        pbx.drop_connections()  # the events of these calls are lost while we reconnect
        results = await asyncio.gather(*tasks, return_exceptions=True)
        # Still up after the reconnect: followed to their real end; gone meanwhile: not charged.
        for r in results:
            assert (isinstance(r, OriginateResult) and r.outcome is CallOutcome.busy) or isinstance(r, TelephonyUnavailable)
        assert all(n == 1 for n in pbx.dials_per_channel_id().values())
        assert sum(header(a, "Action") == "Originate" for a in pbx.actions) == 3
        assert b.health().ok


async def test_an_originate_cut_before_its_ack_is_not_resent(pbx: FakeAsterisk) -> None:
    h = AsteriskHarness(pbx)
    async with h.backend() as b:
        pbx.delays["originate"] = 0.3
        phone = h.phone("busy")
        task = asyncio.ensure_future(b.originate(req(phone)))
        await until(lambda: any(header(a, "Action") == "Originate" for a in pbx.actions))
        pbx.drop_connections()  # before the (delayed) ack: panoramisk would re-send it after FullyBooted
        with pytest.raises(TelephonyUnavailable):
            await task
        await asyncio.sleep(0.5)
        assert sum(header(a, "Action") == "Originate" for a in pbx.actions) == 1
        assert pbx.of("dial") == []


async def test_backend_line_limit_and_the_fakes_log_agree(pbx: FakeAsterisk) -> None:
    h = AsteriskHarness(pbx)
    trunks = {"default": TrunkRoute("default", "PJSIP/{number}@trunk", max_channels=2)}
    async with AsteriskTelephony(fast_settings(pbx, trunks=trunks)) as b:
        pbx.audiosocket = ("127.0.0.1", b.audiosocket_port)
        p1, p2, p3 = h.phone("stuck"), h.phone("stuck"), h.phone("busy")
        r1, r2 = await asyncio.gather(b.originate(req(p1)), b.originate(req(p2)))
        with pytest.raises(TrunkCongestion, match="all 2 channels in use"):
            await b.originate(req(p3))
        await b.hangup(r1.channel_id)
        assert await until(lambda: pbx.trunks["trunk"].active == 1)
        await until(lambda: r1.channel_id not in b._calls)
        assert (await b.originate(req(p3))).outcome is CallOutcome.busy
        await b.hangup(r2.channel_id)
        assert pbx.peak_channels("trunk") == 2


async def test_dtmf_and_audio_reach_the_media_session(pbx: FakeAsterisk) -> None:
    h = AsteriskHarness(pbx)
    async with h.backend() as b:
        phone = h.phone("answered")
        h.numbers[phone.lstrip("+")] = Scenario("answer", ring_s=0.05, steps=[pause(0.1), dtmf("1"), dtmf("#"), speak(VOICE * 3)],
                                                after_steps="hangup")
        res = await b.originate(req(phone))
        media = res.media
        assert media is not None
        got: list[object] = []
        while True:
            ev = await asyncio.wait_for(media.receive(), 5)
            if isinstance(ev, HangupEvent):
                break
            if not isinstance(ev, AudioFrame) or ev.pcm != b"\x00" * FRAME_BYTES:
                got.append(ev)
        assert got[:2] == [DtmfEvent("1"), DtmfEvent("#")] and got[2:] == [AudioFrame(VOICE)] * 3
        assert await until(lambda: res.channel_id not in pbx.channels)


async def test_transfer_redirects_to_the_human_queue(pbx: FakeAsterisk) -> None:
    h = AsteriskHarness(pbx)
    async with h.backend() as b:
        res = await b.originate(req(h.phone("stuck")))
        await b.transfer(res.channel_id, "s")
        red = pbx.of("redirect")
        assert red == [{"uniqueid": res.channel_id, "context": "outreach-human", "exten": "s"}]
        assert res.media is not None
        assert isinstance(await asyncio.wait_for(_until_hangup(res), 3), HangupEvent)  # the AudioSocket app ended
        assert await until(lambda: pbx.of("in_queue") != [])
        with pytest.raises(TelephonyUnavailable):
            await b.transfer("not-a-call", "s")


async def _until_hangup(res: OriginateResult) -> object:
    assert res.media is not None
    while True:
        ev = await res.media.receive()
        if isinstance(ev, HangupEvent):
            return ev


async def test_restart_reconcile_hangs_up_channels_left_by_a_dead_process(pbx: FakeAsterisk) -> None:
    h = AsteriskHarness(pbx)
    first = AsteriskTelephony(fast_settings(pbx))
    await first.start()
    h._backend = first
    ringing = asyncio.ensure_future(first.originate(req(h.phone("no_answer"), timeout_s=30)))
    await until(lambda: len(pbx.channels) == 1)
    cid = next(iter(pbx.channels))
    # The process dies: no hang-up, no Logoff; the channel stays up on Asterisk.
    ringing.cancel()
    first._ami._closing = True
    first._ami._manager.closing = True  # type: ignore[union-attr]
    first._ami._manager.protocol.transport.abort()  # type: ignore[union-attr]
    await first._server.stop()
    second = AsteriskTelephony(fast_settings(pbx))
    async with second:
        assert await second.reconcile([cid, str(uuid.uuid4())]) == {cid}
        assert await second.hangup_stale([cid]) == {cid}
        assert await until(lambda: cid not in pbx.channels)
        assert await second.reconcile([cid]) == set()
    assert pbx.dials_per_channel_id() == {cid: 1}


async def test_a_service_start_survives_asterisk_being_down_and_dials_once_it_is_back(pbx: FakeAsterisk) -> None:
    h = AsteriskHarness(pbx)
    pbx.refuse(True)
    b = AsteriskTelephony(fast_settings(pbx, start_wait=False, ami=AmiSettings(
        port=pbx.port, secret="s3cret", connect_timeout_s=0.5, backoff_initial_s=0.05, backoff_max_s=0.2)))
    await b.start()  # no exception: the service keeps going
    try:
        assert not b.health().ok
        with pytest.raises(TelephonyUnavailable):
            await b.originate(req(h.phone("busy")))
        pbx.refuse(False)
        assert await until(lambda: b.health().ok)
        assert (await b.originate(req(h.phone("busy")))).outcome is CallOutcome.busy
    finally:
        await b.stop()
    with pytest.raises(TelephonyConfigError, match="Authentication failed"):
        await AsteriskTelephony(fast_settings(pbx, start_wait=False, ami=AmiSettings(port=pbx.port, secret="bad"))).start()


async def test_two_workers_share_one_asterisk_and_each_call_reaches_the_worker_that_placed_it() -> None:
    """The sample dialplan's AudioSocket(${AUDIOSOCKET_UUID},${AUDIOSOCKET_ADDR}): each Originate says where
    its audio goes, so workers on their own ports (one per core) share one Asterisk."""
    async with FakeAsterisk(auth_delay_s=0.05, per_call_address=True) as pbx:
        h = AsteriskHarness(pbx)
        pbx.audiosocket = None  # no fixed address in this dialplan
        s = fast_settings(pbx, audiosocket_advertise_host="127.0.0.1")
        async with AsteriskTelephony(s) as w1, AsteriskTelephony(s) as w2:
            assert w1.audiosocket_port != w2.audiosocket_port
            calls = [(w, h.phone("answered")) for w in (w1, w2, w1, w2)]
            results = await asyncio.gather(*(w.originate(req(p)) for w, p in calls))
            assert all(r.outcome is CallOutcome.answered and r.media is not None for r in results)
            # Each worker's media session is its own call's: the audio the far end streams arrives there.
            for (w, _), r in zip(calls, results, strict=True):
                assert r.channel_id in w._calls
                await h.exchange(r)
            for (w, _), r in zip(calls, results, strict=True):
                await w.hangup(r.channel_id)
            origs = [a for a in pbx.actions if header(a, "Action") == "Originate"]
            addrs = {v for a in origs for v in a["Variable"] if v.startswith("AUDIOSOCKET_ADDR=")}
            assert addrs == {f"AUDIOSOCKET_ADDR=127.0.0.1:{w.audiosocket_port}" for w in (w1, w2)}
            starts = pbx.of("audiosocket_start")
            assert len(starts) == 4


async def test_a_missing_per_call_address_fails_that_call_as_a_configuration_fault() -> None:
    async with FakeAsterisk(auth_delay_s=0.05, per_call_address=True) as pbx:
        h = AsteriskHarness(pbx)
        # No advertised host: no AUDIOSOCKET_ADDR, so Asterisk's AudioSocket() has no address to connect to.
        async with AsteriskTelephony(fast_settings(pbx, answer_media_timeout_s=1.0)) as b:
            with pytest.raises(TelephonyConfigError, match="AudioSocket never connected"):
                await b.originate(req(h.phone("answered")))
        assert any("bad AudioSocket address" in str(e.get("why")) for e in pbx.of("audiosocket_end"))


async def test_the_advertised_address_brackets_an_ipv6_host() -> None:
    b = AsteriskTelephony(AsteriskSettings(audiosocket_port=9093, audiosocket_advertise_host="fd00::20"))
    assert b.audiosocket_address == "[fd00::20]:9093"
    assert AsteriskTelephony(AsteriskSettings(audiosocket_port=9093)).audiosocket_address == "127.0.0.1:9093"
