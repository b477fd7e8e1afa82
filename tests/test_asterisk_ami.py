"""The AMI client (panoramisk + guards) against the fake Asterisk over TCP: login, keep-alive, faults."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest

from dialer.asterisk.ami import (
    AmiActionError,
    AmiAuthError,
    AmiClient,
    AmiDisconnected,
    AmiSettings,
    AmiTimeout,
)
from tests.fake_asterisk import FakeAsterisk, Scenario, header


def settings(port: int, **kw: object) -> AmiSettings:
    base: dict[str, object] = dict(host="127.0.0.1", port=port, username="outreach", secret="s3cret",
                                   connect_timeout_s=3.0, action_timeout_s=2.0, ping_interval_s=0.2,
                                   ping_timeout_s=0.3, backoff_initial_s=0.05, backoff_max_s=0.2)
    base.update(kw)
    return AmiSettings(**base)  # type: ignore[arg-type]


async def wait_until(cond: Callable[[], bool], within_s: float = 5.0) -> None:
    async with asyncio.timeout(within_s):
        while not cond():  # noqa: ASYNC110 - polling a plain condition of the client under test
            await asyncio.sleep(0.02)


async def test_login_ping_and_events_for_the_call_class() -> None:
    async with FakeAsterisk(scenario_for=lambda n: Scenario("busy", ring_s=0.05)) as pbx:
        events: list[str] = []
        client = AmiClient(settings(pbx.port), on_event=lambda m: events.append(m.event))
        await client.start()
        assert client.connected and client.generation == 1
        pong = await client.send({"Action": "Ping"})
        assert pong.ping == "Pong"
        login = next(a for a in pbx.actions if header(a, "Action") == "Login")
        assert header(login, "Events") == "call,system,user"
        ack = await client.send({"Action": "Originate", "Channel": "PJSIP/10086@trunk", "Context": "outreach-robot",
                                 "Exten": "s", "Priority": 1, "ChannelId": "c-1", "Timeout": 1000})
        assert ack.message == "Originate successfully queued"
        orig = next(a for a in pbx.actions if header(a, "Action") == "Originate")
        assert header(orig, "Async") == "true"  # always set: panoramisk's KeyError 'async' guard
        await wait_until(lambda: "OriginateResponse" in events)
        assert events.index("Newchannel") < events.index("Hangup") < events.index("OriginateResponse")
        await client.close()
        assert any(header(a, "Action") == "Logoff" for a in pbx.actions)


async def test_a_refused_secret_is_a_permanent_error() -> None:
    async with FakeAsterisk(auth_delay_s=0.05) as pbx:
        client = AmiClient(settings(pbx.port, secret="wrong"))
        with pytest.raises(AmiAuthError, match="refused user 'outreach'.*Authentication failed"):
            await client.start()
        await client.close()


async def test_an_unreachable_manager_is_transient_and_sending_fails_fast() -> None:
    async with FakeAsterisk() as pbx:
        port = pbx.port
    client = AmiClient(settings(port, connect_timeout_s=0.5))
    with pytest.raises(AmiDisconnected, match="cannot log in"):
        await client.start()
    with pytest.raises(AmiDisconnected):
        await client.send({"Action": "Ping"})
    await client.close()


async def test_reconnects_after_a_drop_and_fails_waiting_actions_at_once() -> None:
    async with FakeAsterisk() as pbx:
        states: list[tuple[bool, str]] = []
        client = AmiClient(settings(pbx.port, ping_interval_s=30), on_state=lambda up, why: states.append((up, why)))
        await client.start()
        pbx.ignore.add("coreshowchannels")
        waiting = asyncio.create_task(client.send({"Action": "CoreShowChannels"}, wait_s=10))
        await asyncio.sleep(0.1)
        pbx.drop_connections()
        with pytest.raises(AmiDisconnected):
            await asyncio.wait_for(waiting, 2)  # not left hanging until its timeout
        await wait_until(lambda: client.generation == 2)
        assert [up for up, _ in states] == [True, False, True]
        pbx.ignore.clear()
        listing = await client.send({"Action": "CoreShowChannels"})
        assert listing[-1].event == "CoreShowChannelsComplete"
        # Nothing was re-sent by panoramisk after the reconnect.
        assert sum(header(a, "Action") == "CoreShowChannels" for a in pbx.actions) == 2
        await client.close()


async def test_half_open_connection_is_detected_by_our_ping() -> None:
    async with FakeAsterisk() as pbx:
        client = AmiClient(settings(pbx.port))
        await client.start()
        pbx.mute(True)  # the connection stays open but nothing comes back
        await wait_until(lambda: client.disconnects >= 1, 5)
        pbx.mute(False)
        await wait_until(lambda: client.connected and client.generation >= 2, 5)
        await client.close()


async def test_missing_reply_times_out_and_errors_carry_asterisks_message() -> None:
    async with FakeAsterisk() as pbx:
        client = AmiClient(settings(pbx.port, ping_interval_s=30))
        await client.start()
        pbx.ignore.add("status")
        with pytest.raises(AmiTimeout, match="Status: no reply"):
            await client.send({"Action": "Status"}, wait_s=0.3)
        with pytest.raises(AmiActionError, match="Extension does not exist"):
            await client.send({"Action": "Originate", "Channel": "PJSIP/1@trunk", "Context": "nowhere",
                               "Exten": "s", "Priority": 1})
        with pytest.raises(AmiActionError, match="Invalid/unknown command"):
            await client.send({"Action": "NoSuchThing"})
        assert client.connected
        await client.close()


async def test_a_failing_event_handler_does_not_drop_the_connection(caplog: pytest.LogCaptureFixture) -> None:
    def boom(msg: object) -> None:
        raise RuntimeError("handler bug")

    async with FakeAsterisk(scenario_for=lambda n: Scenario("invalid")) as pbx:
        client = AmiClient(settings(pbx.port, ping_interval_s=30), on_event=boom)
        await client.start()
        with caplog.at_level(logging.ERROR):
            await client.send({"Action": "Originate", "Channel": "PJSIP/1@trunk", "Context": "outreach-robot",
                               "Exten": "s", "Priority": 1, "ChannelId": "x"})
            await wait_until(lambda: "handler bug" in caplog.text)
        await asyncio.sleep(0.1)
        assert client.connected and client.disconnects == 0
        await client.close()


async def test_reconnects_back_off_with_the_shared_retry_policy(caplog: pytest.LogCaptureFixture) -> None:
    """A manager that accepts and drops every connection: the client retries with the project's one
    backoff (common.retry: jittered, growing, capped), not in a tight loop, and logs in once it is back."""
    caplog.set_level(logging.INFO, logger="dialer.asterisk.ami")
    async with FakeAsterisk() as pbx:
        client = AmiClient(settings(pbx.port, ping_interval_s=30, backoff_initial_s=0.01, backoff_max_s=0.16))
        await client.start()
        pbx.refuse(True)
        pbx.drop_connections()
        await wait_until(lambda: pbx.connections_accepted >= 10)
        pbx.refuse(False)
        await wait_until(lambda: client.connected and client.generation == 2)
        await client.close()
    waits = [float(r.getMessage().split("reconnecting in ")[1].split(" s")[0])
             for r in caplog.records if "reconnecting in" in r.getMessage()]
    assert len(waits) >= 8
    assert all(0.0 <= w <= 0.16 for w in waits)  # capped at backoff_max_s
    assert max(waits) > 0.01  # grows past the first step
