"""Engine behaviours for replies that are not an answer, with the built-in NLU reading them in the
question's context (tests/test_calls_frozen.py runs whole calls; these pin the individual steps)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dialogs.engine import Session
from dialogs.nlu import BuiltinNlu
from dialogs.nlu.types import Expectation, NluResult
from dialogs.script import Script, load_script
from dialogs.types import Dtmf, End, Listen, NoInput, Say, Utterance

ROOT = Path(__file__).resolve().parent.parent
CONTACT = {"name": "张伟"}


@pytest.fixture(scope="module")
def script() -> Script:
    return load_script(ROOT / "dialogs" / "scripts" / "covid_screening.yaml")


def new(script: Script) -> Session:
    s = script.new_session(CONTACT, BuiltinNlu())
    assert isinstance(s, Session)
    s.start()
    return s


def says(actions: list[Any]) -> list[str]:
    return [a.text for a in actions if isinstance(a, Say)]


def listen(actions: list[Any]) -> Listen:
    return [a for a in actions if isinstance(a, Listen)][-1]


def test_hold_on_waits_twenty_seconds_with_one_short_prompt_then_greets_again(script: Script) -> None:
    s = new(script)
    actions = s.handle(Utterance("你等一下，我去叫他"))
    assert says(actions) == [script.globals["hold_on"]]
    assert listen(actions).no_input_s == script.hold_wait_s == 20.0
    actions = s.handle(NoInput())  # nobody came within 20 s: greet again, normal listening
    assert says(actions) == ["您好，社区卫生中心随访，请问是张伟吗？"]
    assert listen(actions).no_input_s == 6.0 and s.node == "greeting"
    s.handle(Utterance("喂，我是张伟"))
    assert s.node == "symptoms" and s.result.answers["identity_confirmed"].value is True


def test_a_relative_is_recognised_at_the_family_question_too(script: Script) -> None:
    s = new(script)
    s.handle(Utterance("不是"))
    assert s.node == "family_check"
    actions = s.handle(Utterance("对，我是他女儿"))
    a = s.result.answers["identity_confirmed"]
    assert (a.value, a.detail["relation"]) == ("family", "女儿")
    assert says(actions)[-1] == "最近14天，张伟有没有发烧、咳嗽、乏力？"  # third person from now on


def test_ack_and_other_answers_are_asked_again_not_recorded(script: Script) -> None:
    s = new(script)
    s.handle(Utterance("是的"))
    actions = s.handle(Utterance("嗯"))
    assert s.node == "symptoms" and "has_symptoms" not in s.result.answers
    assert says(actions) == [script.globals["reask"], "最近14天，您有没有发烧、咳嗽、乏力？"]
    s.handle(Utterance("没有"))
    actions = s.handle(Utterance("三十六度五"))  # a temperature at the travel question
    assert s.node == "travel" and "traveled" not in s.result.answers


def test_bot_question_is_answered_honestly_and_the_call_goes_on(script: Script) -> None:
    s = new(script)
    actions = s.handle(Utterance("你是机器人吗"))
    assert says(actions)[0] == "我是社区卫生中心的语音助手，只问几个问题。"
    assert s.node == "greeting" and not s.done


def test_scam_suspicion_is_reassured_then_a_second_one_ends_politely_as_a_refusal(script: Script) -> None:
    s = new(script)
    actions = s.handle(Utterance("你们是骗子吧"))
    assert "社区卫生中心" in says(actions)[0] and "12320" in says(actions)[0]
    assert s.result.scam_suspected and not s.done
    actions = s.handle(Utterance("我不信，骗人的"))
    assert s.done and isinstance(actions[-1], End) and actions[-1].outcome == "opted_out"


def test_typed_keys_are_real_key_presses(script: Script) -> None:
    spoken, pressed = new(script), new(script)
    for s in (spoken, pressed):
        s.handle(Utterance("是的"))
        s.handle(Utterance("有点咳"))
    spoken.handle(Utterance("37*5#"))
    for k in "37*5#":
        pressed.handle(Dtmf(k))
    assert spoken.result.answers["temperature"].value == pressed.result.answers["temperature"].value == 37.5
    assert spoken.node == pressed.node == "travel"
    spoken.handle(Utterance("2"))
    assert spoken.result.answers["traveled"].value is False


def test_an_uncertain_value_near_the_threshold_neither_sets_nor_clears_the_flag(script: Script) -> None:
    class Hedged:
        name = "hedged"

        def parse(self, text: str, expect: Expectation) -> NluResult:
            if expect.kind == "temperature":
                return NluResult("temperature", float(text), 0.75, True, "hedged")
            return BuiltinNlu().parse(text, expect)

    for said, value, flagged in (("37.1", None, False), ("37.5", None, False), ("36.2", 36.2, False)):
        s = script.new_session(CONTACT, Hedged())
        s.start()
        for reply in ("是的", "说不清", said, "没有", "没有", "做了"):
            s.handle(Utterance(reply))
        a = s.result.answers["temperature"]
        assert a.value == value, said
        assert (s.result.risk == "flagged") is flagged
        if value is None:
            assert a.detail["uncertain_value"] == float(said) and s.result.escalate_human


def test_closing_depends_on_the_answers(script: Script) -> None:
    def closing(replies: list[str]) -> str:
        s = script.new_session(CONTACT, BuiltinNlu())
        actions = s.start()
        for r in replies:
            actions = s.handle(Utterance(r))
        return says(actions)[-1]

    assert "发热门诊" in closing(["是的", "有点发烧", "三十八度二", "没有", "没有", "做了"])
    assert "居家" in closing(["是的", "没有", "没有", "接触过", "做了"])
    assert closing(["是的", "没有", "没有", "没有", "做了"]) == "好的，感谢您的配合，祝您身体健康，再见！"
