"""The telephony contract suite (tests/telephony_contract.py) over the simulated network."""

from __future__ import annotations

import pytest

from dialer.base import ListenSpec, OriginateResult, Telephony
from dialer.simulated import SimulatedNetwork
from tests.telephony_contract import Harness, TelephonyContract, test_causes_map_onto_the_taxonomy

__all__ = ["test_causes_map_onto_the_taxonomy"]


class SimulatedHarness:
    def __init__(self) -> None:
        self._n = 0
        self._net: SimulatedNetwork | None = None

    def backend(self) -> Telephony:
        self._net = SimulatedNetwork(seed=5)
        return self._net

    def phone(self, behaviour: str) -> str:
        assert self._net is not None
        self._n += 1
        number = f"+8613900{self._n:06d}"
        self._net.force(number, behaviour)
        return number

    async def break_peer(self, backend: Telephony) -> None:
        assert isinstance(backend, SimulatedNetwork)
        backend.go_down("carrier link lost")

    async def restore_peer(self, backend: Telephony) -> None:
        assert isinstance(backend, SimulatedNetwork)
        backend.come_up()

    async def congest_trunk(self, backend: Telephony, on: bool) -> None:
        assert isinstance(backend, SimulatedNetwork)
        backend.congested = on

    async def exchange(self, result: OriginateResult) -> None:
        assert result.text is not None
        await result.text.say("您好，请问是张伟本人吗？", "greet")
        await result.text.listen(ListenSpec(node="greet", expect="yes_no", field="identity_confirmed"))

    async def far_end_up(self, result: OriginateResult) -> bool:
        assert result.text is not None
        return not result.text.hung_up


class TestSimulatedNetwork(TelephonyContract):
    @pytest.fixture
    def harness(self) -> Harness:
        return SimulatedHarness()
