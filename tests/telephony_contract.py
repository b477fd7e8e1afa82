"""The telephony contract suite (dialer/base.py), written once and run against every backend.

A backend plugs in with a `Harness` and a subclass of `TelephonyContract` providing the `harness`
fixture (tests/test_telephony_contract.py does so for the simulated network):

    class TestAsterisk(TelephonyContract):
        @pytest.fixture
        def harness(self, fake_asterisk) -> Harness:
            return AsteriskHarness(fake_asterisk)

The harness knows how to make the far end behave (a number that answers, is busy, ...) and how to
break the backend's peer; the tests only use the contract's methods on the backend.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Protocol

import pytest

from dialer.base import (
    CallOutcome,
    DuplicateChannel,
    OriginateRequest,
    OriginateResult,
    Telephony,
    TelephonyError,
    TelephonyUnavailable,
    TransferUnsupported,
    TrunkCongestion,
    outcome_for_cause,
)


class Harness(Protocol):
    """What the contract tests need from one backend's test setup."""

    def backend(self) -> Telephony:
        """A fresh backend, not started yet."""
        ...

    def phone(self, behaviour: str) -> str:
        """A number whose calls end with `behaviour`: answered, busy, no_answer, invalid_number, stuck."""
        ...

    async def break_peer(self, backend: Telephony) -> None:
        """Make the PBX unreachable (the backend must report it; calls raise TelephonyUnavailable)."""
        ...

    async def restore_peer(self, backend: Telephony) -> None: ...

    async def congest_trunk(self, backend: Telephony, on: bool) -> None:
        """Make the trunk refuse new calls for lack of capacity (SIP 503)."""
        ...

    async def exchange(self, result: OriginateResult) -> None:
        """On an answered call, play one prompt and wait for one reply (text or media)."""
        ...

    async def far_end_up(self, result: OriginateResult) -> bool:
        """Whether the far end still has the call up."""
        ...


def request(phone: str, *, timeout_s: float = 2.0, channel_id: str | None = None) -> OriginateRequest:
    return OriginateRequest(channel_id=channel_id or str(uuid.uuid4()), phone=phone, caller_id="12320",
                            timeout_s=timeout_s)


class TelephonyContract:
    """Every backend passes these. Subclasses provide the `harness` fixture."""

    @pytest.fixture
    def harness(self) -> Harness:
        raise TypeError("a TelephonyContract subclass must provide the harness fixture")

    async def test_start_and_stop_as_context_manager(self, harness: Harness) -> None:
        backend = harness.backend()
        async with backend as b:
            assert b is backend
            assert b.health().ok, b.health()
        await backend.close()  # idempotent after stop

    @pytest.mark.parametrize("behaviour", ["busy", "no_answer", "invalid_number"])
    async def test_resident_outcomes_are_returned_not_raised(self, harness: Harness, behaviour: str) -> None:
        async with harness.backend() as b:
            req = request(harness.phone(behaviour))
            res = await b.originate(req)
            assert res.channel_id == req.channel_id
            assert res.outcome == CallOutcome(behaviour)
            assert res.ring_s >= 0 and res.text is None and res.media is None
            assert res.cause

    async def test_answered_call_converses_and_hangs_up_by_channel_id(self, harness: Harness) -> None:
        async with harness.backend() as b:
            req = request(harness.phone("answered"))
            res = await b.originate(req)
            assert res.outcome == CallOutcome.answered
            assert (res.text is None) != (res.media is None), "exactly one conversation channel"
            await harness.exchange(res)
            assert await b.reconcile([req.channel_id, "not-ours"]) == {req.channel_id}
            await b.hangup(req.channel_id)
            assert not await harness.far_end_up(res)
            assert await b.reconcile([req.channel_id]) == set()
            await b.hangup(req.channel_id)  # idempotent
            await b.hangup("never-dialled")  # unknown: a no-op

    async def test_a_channel_id_is_never_dialled_twice(self, harness: Harness) -> None:
        async with harness.backend() as b:
            req = request(harness.phone("busy"))
            await b.originate(req)
            with pytest.raises(DuplicateChannel):
                await b.originate(req)

    async def test_stuck_call_is_ended_by_our_hangup(self, harness: Harness) -> None:
        async with harness.backend() as b:
            req = request(harness.phone("stuck"))
            res = await b.originate(req)
            assert res.outcome == CallOutcome.answered
            talk = asyncio.ensure_future(harness.exchange(res))
            await asyncio.sleep(0.05)
            assert not talk.done()
            await b.hangup(req.channel_id)
            await asyncio.wait_for(talk, 5)
            assert not await harness.far_end_up(res)

    async def test_peer_down_is_a_transient_fault_and_health_says_so(self, harness: Harness) -> None:
        async with harness.backend() as b:
            await harness.break_peer(b)
            assert not b.health().ok
            with pytest.raises(TelephonyUnavailable) as info:
                await b.originate(request(harness.phone("answered")))
            assert info.value.transient
            await harness.restore_peer(b)
            assert b.health().ok
            res = await b.originate(request(harness.phone("busy")))
            assert res.outcome == CallOutcome.busy

    async def test_trunk_congestion_is_a_transient_fault(self, harness: Harness) -> None:
        async with harness.backend() as b:
            await harness.congest_trunk(b, True)
            with pytest.raises(TrunkCongestion) as info:
                await b.originate(request(harness.phone("answered")))
            assert isinstance(info.value, TelephonyUnavailable) and info.value.transient
            await harness.congest_trunk(b, False)
            assert (await b.originate(request(harness.phone("busy")))).outcome == CallOutcome.busy

    async def test_many_calls_at_once_each_get_their_own_result(self, harness: Harness) -> None:
        async with harness.backend() as b:
            kinds = ["busy", "no_answer", "invalid_number", "answered"] * 5
            reqs = [request(harness.phone(k)) for k in kinds]
            results = await asyncio.gather(*(b.originate(r) for r in reqs))
            assert [r.channel_id for r in results] == [r.channel_id for r in reqs]
            assert [r.outcome.value for r in results] == kinds
            for r in results:
                await b.hangup(r.channel_id)

    async def test_stop_hangs_up_what_is_still_ours(self, harness: Harness) -> None:
        b = harness.backend()
        await b.start()
        res = await b.originate(request(harness.phone("answered")))
        await b.stop()
        assert not await harness.far_end_up(res)

    async def test_transfer_is_optional_but_declared(self, harness: Harness) -> None:
        async with harness.backend() as b:
            if not b.supports_transfer:
                with pytest.raises(TransferUnsupported):
                    await b.transfer("x", "8000")


def test_causes_map_onto_the_taxonomy() -> None:
    assert outcome_for_cause(17) == CallOutcome.busy
    assert outcome_for_cause(19) == CallOutcome.no_answer
    assert outcome_for_cause(1) == CallOutcome.invalid_number
    assert outcome_for_cause(20) == CallOutcome.congestion
    assert outcome_for_cause(999) == CallOutcome.failed
    for trunk_cause in (34, 38, 41, 42):
        with pytest.raises(TrunkCongestion):
            outcome_for_cause(trunk_cause, "circuit congestion")
    assert not TelephonyError("x").transient
