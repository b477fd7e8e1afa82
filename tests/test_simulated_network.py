"""The simulated phone network: seeded personas, the default outcome mix, text conversations that run
the real dialog engine with the real built-in NLU, and the behaviours residents show on the phone."""

from __future__ import annotations

import uuid
from collections import Counter
from pathlib import Path

import pytest

from dialer.base import CallOutcome, DuplicateChannel, OriginateRequest
from dialer.simulated import SimulatedCall, SimulatedNetwork, temperature_phrases
from dialogs.conversation import run_text_dialog
from dialogs.nlu.builtin import BuiltinNlu
from dialogs.script import Script, load_script
from tests.conftest import ROOT

SCRIPT = ROOT / "dialogs" / "scripts" / "covid_screening.yaml"
CONTACT = {"name": "张伟", "community": "东湖社区"}


@pytest.fixture(scope="module")
def script() -> Script:
    return load_script(SCRIPT)


def phone(i: int) -> str:
    return f"+86138{i:08d}"


def request(i: int, attempt: int = 1) -> OriginateRequest:
    return OriginateRequest(channel_id=str(uuid.uuid4()), phone=phone(i), caller_id="12320", timeout_s=30,
                            attempt_no=attempt)


async def test_first_attempt_outcomes_follow_the_default_mix() -> None:
    net = SimulatedNetwork(seed=7)
    n = 6000
    counts = Counter([(await net.originate(request(i))).outcome for i in range(n)])
    share = {k: v / n for k, v in counts.items()}
    assert abs(share[CallOutcome.answered] - 0.55) < 0.03
    assert abs(share[CallOutcome.no_answer] - 0.30) < 0.03
    assert abs(share[CallOutcome.busy] - 0.06) < 0.015
    assert abs(share[CallOutcome.congestion] - 0.05) < 0.015
    assert abs(share[CallOutcome.invalid_number] - 0.03) < 0.01


async def test_outcomes_are_seeded_per_number_and_attempt_and_invalid_numbers_stay_invalid() -> None:
    a, b, other = SimulatedNetwork(seed=1), SimulatedNetwork(seed=1), SimulatedNetwork(seed=2)
    seq_a = [(await a.originate(request(i, k))).outcome for i in range(200) for k in (1, 2)]
    seq_b = [(await b.originate(request(i, k))).outcome for i in range(200) for k in (1, 2)]
    seq_o = [(await other.originate(request(i, k))).outcome for i in range(200) for k in (1, 2)]
    assert seq_a == seq_b
    assert seq_a != seq_o
    invalid = [i for i in range(200) if a.persona(phone(i)).invalid]
    assert invalid
    for i in invalid:
        for k in (1, 2, 3):
            assert (await a.originate(request(i, k))).outcome == CallOutcome.invalid_number


async def test_timing_is_realistic() -> None:
    net = SimulatedNetwork(seed=3)
    for i in range(300):
        res = await net.originate(request(i))
        if res.outcome == CallOutcome.no_answer:
            assert res.ring_s == 30
        elif res.outcome == CallOutcome.answered:
            assert 4 <= res.ring_s <= 27
        else:
            assert 0.5 <= res.ring_s <= 6


async def test_a_channel_is_never_dialled_twice_and_every_dial_is_logged(tmp_path: Path) -> None:
    log = tmp_path / "carrier.log"
    net = SimulatedNetwork(seed=1, dial_log=log)
    req = request(1)
    await net.originate(req)
    with pytest.raises(DuplicateChannel, match="already dialled"):
        await net.originate(req)
    await net.originate(request(2))
    await net.close()
    lines = log.read_text(encoding="utf-8").splitlines()
    assert lines == [f"{req.channel_id}\t{phone(1)}\t1", lines[1]]
    assert lines[1].split("\t")[1] == phone(2)


def test_temperature_phrases_cover_words_and_digits() -> None:
    phrases = temperature_phrases(37.2)
    assert "三十七度二" in phrases and "37度2" in phrases and "37.2" in phrases
    assert "三十六度" in temperature_phrases(36.0)


async def _answered_calls(net: SimulatedNetwork, count: int, start: int = 0) -> list[tuple[int, SimulatedCall]]:
    out: list[tuple[int, SimulatedCall]] = []
    i = start
    while len(out) < count:
        res = await net.originate(request(i))
        if res.outcome == CallOutcome.answered:
            assert isinstance(res.text, SimulatedCall)
            out.append((i, res.text))
        i += 1
    return out


async def test_conversations_run_the_real_engine_and_nlu_and_record_the_truth(script: Script) -> None:
    net = SimulatedNetwork(seed=11)
    nlu = BuiltinNlu()
    outcomes: Counter[str] = Counter()
    checked = 0
    for _i, call in await _answered_calls(net, 400):
        result = await run_text_dialog(script.new_session(CONTACT, nlu), call)
        outcomes[result.outcome or "none"] += 1
        assert call.hung_up
        assert 5 < call.elapsed_s < 400
        if result.outcome != "completed":
            continue
        p = call.persona
        ans = result.answers
        for name in ("has_symptoms", "traveled", "contact_case", "second_test_done"):
            a = ans.get(name)
            if a is not None and not a.uncertain and a.value in (True, False):
                assert a.value == getattr(p, name), (name, a.raw)
                checked += 1
        if "temperature" in ans and ans["temperature"].value is not None:
            assert abs(ans["temperature"].value - p.temperature) < 0.05, ans["temperature"].raw
        if p.traveled and "travel_place" in ans and not ans["traveled"].uncertain:
            assert p.travel_place in str(ans["travel_place"].value)
        assert result.reminder_needed == (not p.second_test_done) or ans["second_test_done"].uncertain
    assert checked > 800
    assert outcomes["completed"] / sum(outcomes.values()) > 0.75
    for rare in ("hung_up", "callback_requested", "human_requested", "opted_out"):
        assert outcomes[rare] > 0, (rare, outcomes)


@pytest.mark.parametrize(
    ("behaviour", "outcome"),
    [
        ("human", "human_requested"),
        ("opt_out", "opted_out"),
        ("callback", "callback_requested"),
        ("wrong_number", "wrong_number"),
        ("silent", "no_response"),
        ("hang_up_early", "hung_up"),
    ],
)
async def test_each_behaviour_reaches_its_dialog_outcome(script: Script, behaviour: str, outcome: str) -> None:
    net = SimulatedNetwork(seed=5)
    nlu = BuiltinNlu()
    seen = 0
    i = 0
    while seen < 3 and i < 20000:
        res = await net.originate(request(i))
        i += 1
        if res.outcome != CallOutcome.answered or not isinstance(res.text, SimulatedCall):
            continue
        if res.text.plan.behaviour != behaviour:
            continue
        result = await run_text_dialog(script.new_session(CONTACT, nlu), res.text)
        assert result.outcome == outcome, [t for t in res.text.transcript]
        if outcome == "callback_requested":
            assert result.callback_hint is not None
        if outcome == "opted_out":
            assert result.opt_out
        seen += 1
    assert seen == 3


async def test_key_pressers_answer_with_dtmf(script: Script) -> None:
    net = SimulatedNetwork(seed=9)
    nlu = BuiltinNlu()
    pressed = 0
    for _i, call in await _answered_calls(net, 300):
        if not call.persona.key_presser or call.plan.behaviour != "normal":
            continue
        result = await run_text_dialog(script.new_session(CONTACT, nlu), call)
        keys = [a for a in result.answers.values() if a.nlu == "dtmf"]
        if keys:
            pressed += 1
            assert result.outcome == "completed"
    assert pressed >= 5
