"""Residents calling back over the fake Asterisk: the inbound context's UserEvent + AudioSocket reach the
robot; a resident with an open screening gets it through the dialer's pipeline (recorded, 居民回拨);
an unknown caller hears the explanation and presses 0 for the (staffed) human queue; a resident whose
outbound call is in progress is never taken into a second call."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from sqlalchemy import select

from asr.base import ScriptedRecognizer
from campaigns.clock import WallClock
from campaigns.engine import CampaignEngine
from campaigns.inbound import InboundDesk
from campaigns.service import serve
from campaigns.synthetic import synthetic_residents
from dialer.asterisk.audiosocket import Limits
from dialer.asterisk.backend import AsteriskTelephony
from dialogs.nlu.builtin import BuiltinNlu
from dialogs.script import load_script
from outreach.commands.campaign import INBOUND_UNKNOWN_SCRIPT, build_sessions
from results.models import CallAttempt, CampaignContact, Resident
from results.store import Store
from tests.conftest import ROOT
from tests.fake_asterisk import FakeAsterisk, Scenario, dtmf, wait_prompt
from tests.test_asterisk_backend import fast_settings
from tests.test_asterisk_campaign import (
    CFG,
    KEY_REPLIES,
    PERIOD,
    engine_settings,
    media_runner,
    setup_campaign,
)


@pytest.fixture
async def pbx() -> AsyncIterator[FakeAsterisk]:
    async with FakeAsterisk(auth_delay_s=0.05, frame_period_s=PERIOD) as fake:
        yield fake


def keys_scenario() -> Scenario:
    steps = []
    for k in KEY_REPLIES:
        steps += [wait_prompt(), dtmf(k)]
    return Scenario("answer", ring_s=0.05, steps=steps)


async def until(cond: Callable[[], bool], within_s: float = 20.0) -> None:
    async with asyncio.timeout(within_s):
        while not cond():  # noqa: ASYNC110 - polling what the fake and the store show
            await asyncio.sleep(0.05)


async def test_residents_calling_back(pbx: FakeAsterisk, sqlite_url: str, tmp_path: Path) -> None:
    store = Store(sqlite_url)
    residents = synthetic_residents(3, seed=21)
    missed, busy_now, other = (r["phone"] for r in residents)
    outbound = {missed: Scenario("no_answer"), busy_now: Scenario("answer", ring_s=0.05, max_call_s=6.0),
                other: Scenario("no_answer")}
    pbx.scenario_for = lambda number: outbound["+" + number]
    setup_campaign(store, residents, 3)
    telephony = AsteriskTelephony(fast_settings(pbx, limits=Limits(frame_period_s=PERIOD, stall_s=3.0)))
    pbx.audiosocket = lambda: ("127.0.0.1", telephony.audiosocket_port)
    runner = media_runner(ScriptedRecognizer([]), tmp_path / "answers", telephony)
    unknown = load_script(str(ROOT / INBOUND_UNKNOWN_SCRIPT))
    nlu = BuiltinNlu()
    desk = InboundDesk(store, telephony, lambda: unknown.new_session({}, nlu), runner, take_within_s=5.0)
    telephony.on_inbound = desk
    engine = CampaignEngine(store, telephony, WallClock(), build_sessions(CFG),
                            settings=engine_settings(3, originate_timeout_s=0.4), media_runner=runner)
    stop = asyncio.Event()

    def rows() -> list[CallAttempt]:
        with store.session() as s:
            return list(s.scalars(select(CallAttempt).order_by(CallAttempt.id)))

    async with telephony:
        service = asyncio.create_task(serve(engine, stop=stop, tick_s=0.2, lease_sweep_s=3600))
        try:
            # Everyone was called once; the missed resident did not answer, busy_now is still on the line.
            await until(lambda: len(pbx.of("dial")) == 3 and len(pbx.of("answer")) == 1)
            await until(lambda: sum(a.outcome == "no_answer" for a in rows()) == 2)
            # The missed resident calls back the number they saw (national format from the carrier).
            await pbx.inbound_call(missed.removeprefix("+86"), keys_scenario())
            # busy_now calls in while the robot's call to them is up: never a second call to them.
            await pbx.inbound_call(busy_now.removeprefix("+86"), Scenario("answer", steps=[wait_prompt(), dtmf("1")]))
            # A stranger calls and asks for a person.
            await pbx.inbound_call("13700001111", Scenario("answer", steps=[wait_prompt(), dtmf("0")], queue_s=0.2))
            await until(lambda: desk.taken == 1 and desk.explained == 2 and len(pbx.of("in_queue")) >= 1, 40)
            await until(lambda: any(a.hangup_cause == "居民回拨（呼入）" and a.outcome == "answered"
                                    and a.dialog_outcome is not None for a in rows()), 40)
        finally:
            stop.set()
            await asyncio.wait_for(service, 30)
    with store.session() as s:
        contacts = {c.resident_id: c for c in s.scalars(select(CampaignContact))}
        busy_id = s.scalar(select(Resident.id).where(Resident.phone == busy_now))
    all_rows = rows()
    store.close()
    inbound = [a for a in all_rows if a.hangup_cause == "居民回拨（呼入）"]
    assert len(inbound) == 1 and inbound[0].dialog_outcome == "completed"
    assert contacts[inbound[0].resident_id].final_outcome == "completed"
    # The inbound call was not dialled: Asterisk saw 3 outbound dials only, each once.
    assert len(pbx.of("dial")) == 3 and all(n == 1 for n in pbx.dials_per_channel_id().values())
    # One resident, one call: the resident already on the line got no second attempt.
    assert len([a for a in all_rows if a.resident_id == busy_id]) == 1
    # The stranger pressed 0: redirected to the human queue (staffed in this test).
    assert len(pbx.of("redirect")) == 1 and pbx.of("redirect")[0]["context"] == "outreach-human"
