"""The conversation seam: the engine's `Understand` step awaited by both drivers, so a slow NLU (Rasa
over HTTP) never blocks the loop, and text and voice drive the engine the same way."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from asr.base import ScriptedRecognizer
from dialer.base import OriginateRequest
from dialer.memory import MemoryCaller, memory_media_pair
from dialer.simulated import SimulatedNetwork
from dialogs.conversation import advance, resolve, run_text_dialog
from dialogs.nlu.builtin import BuiltinNlu
from dialogs.nlu.rasa import RasaNlu
from dialogs.nlu.types import Expectation, NluResult
from dialogs.runner import RunnerSettings, run_dialog
from dialogs.script import Script, load_script
from dialogs.types import Action, DialogSession, Listen, Say, Understand, Utterance
from tests.asr_audio import beep
from tests.conftest import ROOT
from tests.test_rasa import FakeRasa, Reply, fake_rasa
from tests.test_runner import answer_each_prompt, speech

__all__ = ["fake_rasa", "speech"]


@pytest.fixture(scope="module")
def script() -> Script:
    return load_script(ROOT / "dialogs" / "scripts" / "covid_screening.yaml")


class SlowNlu:
    """The built-in NLU behind an awaited delay (a remote NLU), counting the calls."""

    name = "slow"

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.inner = BuiltinNlu()
        self.calls = 0

    def parse(self, text: str, expect: Expectation) -> NluResult:
        raise AssertionError("a live call must not call the NLU synchronously")

    async def understand(self, text: str, expect: Expectation) -> NluResult:
        self.calls += 1
        await asyncio.sleep(self.delay_s)
        return self.inner.parse(text, expect)


def test_a_deferred_session_asks_to_understand_and_continues_with_the_reading(script: Script) -> None:
    s = script.new_session({"name": "张三"}, BuiltinNlu(), defer_nlu=True)
    s.start()
    actions = s.handle(Utterance("是的"))
    assert len(actions) == 1 and isinstance(actions[0], Understand)
    req = actions[0]
    assert (req.text, req.node, req.expect.kind) == ("是的", "greeting", "yes_no")
    inline = script.new_session({"name": "张三"}, BuiltinNlu())
    inline.start()
    expected = inline.handle(Utterance("是的"))
    got = asyncio.run(_understood(s, req))
    assert got == expected and any(isinstance(a, Listen) and a.node == "symptoms" for a in got)


async def _understood(session: DialogSession, req: Understand) -> list[Action]:
    return await resolve(session, [req])


async def test_text_driver_gives_the_same_result_with_a_slow_async_nlu(script: Script) -> None:
    net = SimulatedNetwork(seed=11)
    same = 0
    for i in range(12):
        phone = f"+8613800{i:06d}"
        results = []
        for nlu, defer in ((BuiltinNlu(), False), (SlowNlu(0.01), True)):
            net.force(phone, "answered")
            req = OriginateRequest(str(uuid.uuid4()), phone, "12320", 30)
            res = await net.originate(req)
            assert res.text is not None
            session = script.new_session({"name": "张三"}, nlu, defer_nlu=defer)
            results.append((await run_text_dialog(session, res.text)).as_dict())
        same += results[0] == results[1]
    assert same == 12


async def test_a_slow_rasa_server_does_not_block_the_loop(fake_rasa: FakeRasa) -> None:
    fake_rasa.replies["没有"] = Reply(delay_s=0.6, body=FakeRasa.parse_result("没有", "deny", 0.97).body)
    fake_rasa.replies["是的"] = FakeRasa.parse_result("是的", "affirm", 0.95)
    nlu = RasaNlu(fake_rasa.url, timeout_s=0.3)
    order: list[str] = []
    quick_done = asyncio.Event()

    async def ask(text: str) -> NluResult:
        r = await nlu.understand(text, Expectation("yes_no"))
        order.append(text)
        quick_done.set()
        return r

    async def other_call() -> None:  # another call's work on the same loop while Rasa is slow
        await quick_done.wait()
        order.append("other call ran")

    try:
        slow, quick, _ = await asyncio.gather(ask("没有"), ask("是的"), other_call())
        assert (quick.intent, quick.source) == ("affirm", "rasa")
        assert (slow.intent, slow.source) == ("deny", "builtin")  # timed out: the built-in fallback answered
        assert nlu.fallbacks == 1
        assert order == ["是的", "other call ran", "没有"]  # the slow request never held the loop
    finally:
        await nlu.aclose()


async def test_voice_driver_awaits_the_nlu_while_the_line_keeps_its_frames(script: Script, speech: bytes) -> None:
    period = 0.004
    nlu = SlowNlu(0.05)
    session = script.new_session({"name": "张三"}, nlu, defer_nlu=True)
    media, caller = memory_media_pair("c-1", frame_period_s=period)
    asr = ScriptedRecognizer(["是的", "没有", "没有", "没有", "做了"], delay_s=0.016)

    async def resident(c: MemoryCaller) -> None:
        await answer_each_prompt(c, speech)

    async def prompt_audio(text: str) -> bytes:
        return beep(25 * len(text))

    caller.start()
    talk = asyncio.create_task(resident(caller))
    try:
        async with asyncio.timeout(30):
            report = await run_dialog(session, media, asr, prompt_audio, RunnerSettings(frame_period_s=period))
    finally:
        talk.cancel()
        await caller.stop()
    assert report.result.outcome == "completed"
    assert nlu.calls == 5
    # the player kept sending frames while the NLU was awaited: no gap longer than a few periods
    assert report.frames_out > 0 and caller.heard_frames == report.frames_out


async def test_advance_passes_plain_events_through(script: Script) -> None:
    s = script.new_session({"name": "张三"}, SlowNlu(0), defer_nlu=True)
    s.start()
    actions = await advance(s, Utterance("是的"))
    assert isinstance(actions[0], Say) and isinstance(actions[-1], Listen)
