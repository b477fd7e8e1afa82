"""The pure dialog engine over the default script, driven by a small table-driven NLU double.

The double stands in for the understanding step only (what a reply means is tested with the real
NLU elsewhere); everything the engine does with a meaning is tested here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from dialogs.engine import DialogError, Session, parse_key_temperature
from dialogs.nlu.types import Expectation, NluResult
from dialogs.script import Script, load_script
from dialogs.types import Dtmf, End, Event, HangUp, Listen, NoInput, Say, Utterance

ROOT = Path(__file__).resolve().parent.parent
SCRIPT_PATH = ROOT / "dialogs" / "scripts" / "covid_screening.yaml"
CONTACT = {"name": "张伟", "community": "幸福里社区", "phone": "+8613800138000"}


class TableNlu:
    """Maps exact replies to results; anything else is no_match. Records what it was asked."""

    name = "table"

    TABLE: dict[str, NluResult] = {
        "是的": NluResult("affirm", True, 0.95),
        "有": NluResult("affirm", True, 0.95),
        "做了": NluResult("affirm", True, 0.9),
        "没有": NluResult("deny", False, 0.95),
        "不是": NluResult("deny", False, 0.95),
        "还没": NluResult("deny", False, 0.9),
        "好像有": NluResult("affirm", True, 0.7, uncertain=True),
        "一直在咳": NluResult("affirm", True, 0.85, detail=(("symptoms", ("cough",)),)),
        "说不清": NluResult("unsure", None, 0.8),
        "三十七度五": NluResult("temperature", 37.5, 0.9),
        "三十六度八": NluResult("temperature", 36.8, 0.9),
        "三十八度二": NluResult("temperature", 38.2, 0.9),
        "一百度": NluResult("temperature", 100.0, 0.9),
        "没量过": NluResult("unsure", None, 0.8),
        "你说啥": NluResult("repeat", None, 0.9),
        "我在开车": NluResult("busy", None, 0.9),
        "下午三点再打": NluResult(
            "busy", {"text": "下午三点", "delay_minutes": None, "day_offset": 0, "time": "15:00"}, 0.9
        ),
        "找人工": NluResult("human", None, 0.9),
        "打错了": NluResult("wrong_number", None, 0.95),
        "别再打了": NluResult("opt_out", None, 0.95),
        "我是他亲戚": NluResult("deny", False, 0.8, detail=(("family", "亲戚"),)),
    }

    def __init__(self) -> None:
        self.calls: list[tuple[str, Expectation]] = []

    def parse(self, text: str, expect: Expectation) -> NluResult:
        self.calls.append((text, expect))
        hit = self.TABLE.get(text)
        if hit is not None:
            return NluResult(hit.intent, hit.value, hit.confidence, hit.uncertain, "table", hit.detail)
        if expect.kind == "free_text":
            return NluResult("free_text", text, 1.0, source="table")
        return NluResult("no_match", None, 0.0, source="table")


@pytest.fixture(scope="module")
def script() -> Script:
    return load_script(SCRIPT_PATH)


def new(script: Script, contact: dict[str, Any] | None = None, low: float = 0.6) -> Session:
    s = script.new_session(contact if contact is not None else CONTACT, TableNlu(), low_confidence=low)
    assert isinstance(s, Session)
    return s


def says(actions: list[Any]) -> list[str]:
    return [a.text for a in actions if isinstance(a, Say)]


def listen_node(actions: list[Any]) -> str | None:
    listens = [a for a in actions if isinstance(a, Listen)]
    return listens[-1].node if listens else None


def run(session: Any, events: Sequence[Event]) -> list[Any]:
    out = session.start()
    for e in events:
        out += session.handle(e)
    return out


def U(text: str, confidence: float = 1.0) -> Utterance:
    return Utterance(text, confidence)


ALL_NO = [U("是的"), U("没有"), U("没有"), U("没有"), U("做了")]


# ----------------------------------------------------------------------------- main paths


def test_start_greets_by_name_and_listens_for_yes_no(script: Script) -> None:
    actions: list[Any] = new(script).start()
    assert actions == [
        Say("您好，社区卫生中心随访，请问是张伟吗？", "greeting"),
        actions[1],
    ]
    listen = actions[1]
    assert isinstance(listen, Listen)
    assert (listen.node, listen.expect, listen.field, listen.risk) == ("greeting", "yes_no", "identity_confirmed", False)
    assert listen.dtmf == (("1", "yes"), ("2", "no"))
    assert listen.no_input_s == 6.0
    assert "是的" in listen.hints and "妈妈" in listen.hints and "再说一遍" in listen.hints
    assert "13800138000" not in actions[0].text


def test_all_no_completes_with_no_risk(script: Script) -> None:
    s = new(script)
    actions = run(s, ALL_NO)
    assert s.done and s.node is None
    assert actions[-1] == End("completed")
    assert says(actions)[-1] == "好的，感谢您的配合，祝您身体健康，再见！"
    assert [a for a in actions if isinstance(a, Say)][-1].barge_in is False
    r = s.result
    assert (r.outcome, r.risk, r.reasons, r.reminder_needed, r.escalate_human) == ("completed", "none", [], False, False)
    assert {k: a.value for k, a in r.answers.items()} == {
        "identity_confirmed": True,
        "has_symptoms": False,
        "traveled": False,
        "contact_case": False,
        "second_test_done": True,
    }
    a = r.answers["has_symptoms"]
    assert (a.raw, a.confidence, a.nlu, a.intent, a.uncertain) == ("没有", 0.95, "table", "deny", False)
    assert [t["node"] for t in r.turns] == ["greeting", "symptoms", "travel", "contact", "second_test"]
    assert r.turns[0] == {"node": "greeting", "event": "utterance", "text": "是的", "intent": "affirm", "confidence": 0.95}


def test_fever_and_symptom_are_flagged(script: Script) -> None:
    s = new(script)
    actions = run(s, [U("是的"), U("有"), U("三十七度五"), U("没有"), U("没有"), U("做了")])
    r = s.result
    assert r.outcome == "completed"
    assert r.answers["temperature"].value == 37.5
    assert r.risk == "flagged"
    assert r.reasons == ["体温偏高（≥37.3℃）", "有发烧、咳嗽或乏力等症状"]
    temp_listen = [a for a in actions if isinstance(a, Listen) and a.node == "temperature"][0]
    assert (temp_listen.dtmf_terminator, temp_listen.risk, temp_listen.field) == ("#", True, "temperature")
    assert ("*", ".") in temp_listen.dtmf


def test_normal_temperature_with_symptom_is_flagged_once(script: Script) -> None:
    s = new(script)
    run(s, [U("是的"), U("一直在咳"), U("三十六度八"), U("没有"), U("没有"), U("做了")])
    r = s.result
    assert r.risk == "flagged" and r.reasons == ["有发烧、咳嗽或乏力等症状"]
    assert r.answers["has_symptoms"].detail == {"symptoms": ("cough",)}
    assert r.answers["has_symptoms"].as_dict()["detail"] == {"symptoms": ("cough",)}


def test_contact_with_case_is_high_whatever_else(script: Script) -> None:
    s = new(script)
    run(s, [U("是的"), U("有"), U("三十八度二"), U("没有"), U("有"), U("做了")])
    assert s.result.risk == "high"
    assert s.result.reasons[0] == "接触过确诊或疑似病例"
    assert "体温偏高（≥37.3℃）" in s.result.reasons


def test_second_test_not_done_needs_reminder(script: Script) -> None:
    s = new(script)
    actions = run(s, [U("是的"), U("没有"), U("没有"), U("没有"), U("还没")])
    assert "请您尽快去做第二次核酸检测。" in says(actions)  # no SMS promise: no gateway configured
    assert s.result.reminder_needed is True
    assert s.result.risk == "none"
    assert s.result.outcome == "completed"


def test_travel_place_is_free_text(script: Script) -> None:
    s = new(script)
    actions = s.start() + s.handle(U("是的")) + s.handle(U("没有")) + s.handle(U("有"))
    assert listen_node(actions) == "travel_place"
    s.handle(U("武汉 汉口"))
    a = s.result.answers["travel_place"]
    assert (a.value, a.raw, a.intent) == ("武汉汉口", "武汉 汉口", "free_text")
    assert s.node == "contact"


# ----------------------------------------------------------------------------- family member


def test_family_member_answers_on_behalf(script: Script) -> None:
    s = new(script)
    s.start()
    actions = s.handle(U("我是他妈妈"))
    assert says(actions) == ["好的，麻烦您替张伟回答几个问题。", "最近14天，张伟有没有发烧、咳嗽、乏力？"]
    a = s.result.answers["identity_confirmed"]
    assert (a.value, a.nlu, a.intent) == ("family", "keywords", "family")
    for e in [U("没有"), U("没有"), U("没有"), U("做了")]:
        s.handle(e)
    assert s.result.outcome == "completed"


def test_not_the_person_then_family(script: Script) -> None:
    s = new(script)
    s.start()
    actions = s.handle(U("不是"))
    assert says(actions) == ["请问您是张伟的家里人吗？"]
    assert s.result.answers["identity_confirmed"].value is False
    actions = s.handle(U("是的"))
    assert says(actions)[0] == "好的，麻烦您替张伟回答几个问题。"
    assert s.result.answers["identity_confirmed"].value == "family"


def test_not_the_person_nor_family_is_wrong_number(script: Script) -> None:
    s = new(script)
    actions = run(s, [U("不是"), U("不是")])
    assert actions[-1] == End("wrong_number")
    assert says(actions)[-1] == "不好意思，打扰您了。再见！"
    assert s.result.outcome == "wrong_number"


def test_contact_without_name_uses_script_default(script: Script) -> None:
    actions = new(script, contact={}).start()
    assert "请问是机主吗？" in says(actions)[0]


# ----------------------------------------------------------------------------- global handlers

QUESTION_NODES = ["greeting", "family_check", "symptoms", "temperature", "travel", "travel_place", "contact", "second_test"]
REACH = {
    "greeting": [],
    "family_check": [U("不是")],
    "symptoms": [U("是的")],
    "temperature": [U("是的"), U("有")],
    "travel": [U("是的"), U("没有")],
    "travel_place": [U("是的"), U("没有"), U("有")],
    "contact": [U("是的"), U("没有"), U("没有")],
    "second_test": [U("是的"), U("没有"), U("没有"), U("没有")],
}


def reach(script: Script, node: str) -> Session:
    s = new(script)
    run(s, REACH[node])
    assert s.node == node
    return s


@pytest.mark.parametrize("node", QUESTION_NODES)
def test_repeat_says_the_question_again(script: Script, node: str) -> None:
    s = reach(script, node)
    prompt = script.render(script.nodes[node].say or "", CONTACT)
    actions = s.handle(U("你说啥"))
    assert says(actions) == ["好的，我再说一遍。", prompt]
    assert listen_node(actions) == node
    assert not s.done


def test_repeat_repeats_the_last_reprompt(script: Script) -> None:
    s = reach(script, "symptoms")
    reprompt = s.handle(NoInput())
    actions = s.handle(U("你说啥"))
    assert says(actions) == ["好的，我再说一遍。", says(reprompt)[0]]


def test_repeat_is_bounded(script: Script) -> None:
    s = reach(script, "symptoms")
    for _ in range(script.max_repeats):
        assert says(s.handle(U("你说啥")))[0] == "好的，我再说一遍。"
    actions = s.handle(U("你说啥"))
    assert says(actions) == ["有还是没有？有请按1，没有请按2。"]


@pytest.mark.parametrize("node", QUESTION_NODES)
@pytest.mark.parametrize(
    ("reply", "outcome", "goodbye"),
    [
        ("我在开车", "callback_requested", "好的，不打扰您了，我们稍后再给您打过来。再见！"),
        ("找人工", "human_requested", "好的，稍后工作人员会给您回电话。再见！"),
        ("打错了", "wrong_number", "不好意思，打扰您了。再见！"),
        ("别再打了", "opted_out", "好的，以后不再打扰您了。再见！"),
    ],
)
def test_global_endings_work_in_every_question(script: Script, node: str, reply: str, outcome: str, goodbye: str) -> None:
    s = reach(script, node)
    before = dict(s.result.answers)
    actions = s.handle(U(reply))
    assert says(actions) == [goodbye]
    assert actions[-1] == End(outcome)
    assert s.done and s.result.outcome == outcome
    assert s.result.answers == before  # what was recorded is kept
    assert s.result.opt_out is (outcome == "opted_out")
    assert s.result.turns[-1]["node"] == node


def test_busy_keeps_the_callback_hint(script: Script) -> None:
    s = reach(script, "travel")
    s.handle(U("下午三点再打"))
    assert s.result.outcome == "callback_requested"
    assert s.result.callback_hint == {"text": "下午三点", "delay_minutes": None, "day_offset": 0, "time": "15:00"}
    s2 = reach(script, "travel")
    s2.handle(U("我在开车"))
    assert s2.result.callback_hint is None


@pytest.mark.parametrize("node", QUESTION_NODES)
def test_hang_up_at_each_node_keeps_partial_record(script: Script, node: str) -> None:
    s = reach(script, node)
    before = {k: a.value for k, a in s.result.answers.items()}
    actions = s.handle(HangUp())
    assert actions == [End("hung_up")]
    assert s.done and s.result.outcome == "hung_up"
    assert {k: a.value for k, a in s.result.answers.items()} == before
    assert s.result.turns[-1] == {"node": node, "event": "hang_up", "text": None, "intent": None, "confidence": None}
    assert s.handle(HangUp()) == []  # the socket closing afterwards changes nothing


def test_hang_up_after_fever_keeps_risk(script: Script) -> None:
    s = new(script)
    run(s, [U("是的"), U("有"), U("三十八度二"), HangUp()])
    assert s.result.outcome == "hung_up"
    assert s.result.risk == "flagged"


# ----------------------------------------------------------------------------- re-prompts


def test_no_input_reprompts_then_dtmf_only_then_no_response(script: Script) -> None:
    s = reach(script, "symptoms")
    a1 = s.handle(NoInput())
    a2 = s.handle(NoInput())
    a3 = s.handle(NoInput())
    a4 = s.handle(NoInput())
    assert says(a1) == ["有没有发烧、咳嗽、乏力？有请按1，没有请按2。"]
    assert says(a2) == ["有这些症状请按1，没有请按2。"]
    assert says(a3) == ["请按键回答：是或有请按1，不是或没有请按2。"]
    assert [listen_node(a) for a in (a1, a2, a3)] == ["symptoms"] * 3
    assert says(a4) == ["我们稍后再联系您，再见！"]
    assert a4[-1] == End("no_response")
    assert s.result.outcome == "no_response"
    assert [t["event"] for t in s.result.turns[-4:]] == ["no_input"] * 4


def test_no_match_reprompts_then_not_understood(script: Script) -> None:
    s = reach(script, "contact")
    texts = [says(s.handle(U("嗯那个什么"))) for _ in range(4)]
    assert texts[0] == ["接触过确诊或疑似病例吗？有请按1，没有请按2。"]
    assert texts[1] == ["接触过请按1，没有请按2。"]
    assert texts[2] == ["请按键回答：是或有请按1，不是或没有请按2。"]
    assert texts[3] == ["抱歉没能听明白，稍后会有工作人员联系您。再见！"]
    assert s.result.outcome == "not_understood"
    assert s.result.turns[-1]["intent"] == "no_match"


def test_key_after_dtmf_only_prompt_continues(script: Script) -> None:
    s = reach(script, "contact")
    for _ in range(3):
        s.handle(NoInput())
    actions = s.handle(Dtmf("2"))
    assert listen_node(actions) == "second_test"
    a = s.result.answers["contact_case"]
    assert (a.value, a.nlu, a.raw, a.intent) == (False, "dtmf", "2", "deny")


def test_empty_utterance_counts_as_no_input(script: Script) -> None:
    s = reach(script, "symptoms")
    assert says(s.handle(U("  "))) == ["有没有发烧、咳嗽、乏力？有请按1，没有请按2。"]


def test_counters_reset_per_node(script: Script) -> None:
    s = reach(script, "symptoms")
    s.handle(NoInput())
    s.handle(NoInput())
    s.handle(U("没有"))
    assert says(s.handle(NoInput())) == ["离开过本市吗？离开过请按1，没有请按2。"]


def test_default_reprompt_repeats_prompt_after_apology(script: Script) -> None:
    # the script's 'family_check' has one no_input re-prompt; max_tries is 2: the 2nd uses it again
    s = reach(script, "family_check")
    a1 = s.handle(NoInput())
    a2 = s.handle(NoInput())
    assert says(a1) == says(a2) == ["您是张伟家里人吗？是请按1，不是请按2。"]


# ----------------------------------------------------------------------------- keys


def test_key_during_greeting_prompt(script: Script) -> None:
    s = new(script)
    s.start()  # prompt still playing: keys are accepted right away
    actions = s.handle(Dtmf("1"))
    assert says(actions) == ["好的，问您几个简单的问题，一两分钟就好。", "最近14天，您有没有发烧、咳嗽、乏力？"]
    a = s.result.answers["identity_confirmed"]
    assert (a.value, a.nlu, a.confidence, a.uncertain) == (True, "dtmf", 1.0, False)


def test_whole_call_by_keys(script: Script) -> None:
    s = new(script)
    keys = ["1", "1", *"37*5#", "2", "2", "2"]
    actions = run(s, [Dtmf(k) for k in keys])
    assert actions[-1] == End("completed")
    r = s.result
    assert r.answers["temperature"].value == 37.5
    assert r.answers["temperature"].raw == "37*5#"
    assert r.answers["second_test_done"].value is False
    assert r.risk == "flagged" and r.reminder_needed
    assert all(a.nlu == "dtmf" for a in r.answers.values())


def test_temperature_keys_collect_until_hash(script: Script) -> None:
    s = reach(script, "temperature")
    for k in "37*5":
        assert s.handle(Dtmf(k)) == []
    actions = s.handle(Dtmf("#"))
    assert listen_node(actions) == "travel"
    assert s.result.turns[-1] == {"node": "temperature", "event": "dtmf", "text": "37*5#", "intent": "temperature", "confidence": 1.0}


@pytest.mark.parametrize(("keys", "value"), [("37*5", 37.5), ("375", 37.5), ("36", 36.0), ("38*", 38.0), ("3*5", None), ("45*1", None), ("3", None), ("37**5", None), ("", None), ("37*55", None)])
def test_parse_key_temperature(keys: str, value: float | None) -> None:
    assert parse_key_temperature(keys) == value


def test_bad_temperature_keys_reprompt(script: Script) -> None:
    s = reach(script, "temperature")
    for k in "3*5#":
        actions = s.handle(Dtmf(k))
    assert says(actions) == ["请说体温的度数，比如三十六度八。"]
    assert s.node == "temperature"
    for k in "38*2#":
        actions = s.handle(Dtmf(k))
    assert s.result.answers["temperature"].value == 38.2


def test_implausible_spoken_temperature_is_no_match(script: Script) -> None:
    s = reach(script, "temperature")
    assert says(s.handle(U("一百度"))) == ["请说体温的度数，比如三十六度八。"]


def test_unmapped_key_is_no_match(script: Script) -> None:
    s = reach(script, "symptoms")
    assert says(s.handle(Dtmf("5"))) == ["有还是没有？有请按1，没有请按2。"]
    assert s.result.turns[-1]["intent"] == "no_match"


# ----------------------------------------------------------------------------- uncertain answers


def test_hedged_risk_answer_is_uncertain_and_escalates(script: Script) -> None:
    s = new(script)
    run(s, [U("是的"), U("好像有"), U("三十六度八"), U("没有"), U("没有"), U("做了")])
    r = s.result
    assert r.answers["has_symptoms"].uncertain is True
    assert r.uncertain == ["has_symptoms"]
    # a hedge leaning one way (好像有) is that answer, marked uncertain; only an answer without a usable
    # value (unsure_risk()) goes to a person in the default script
    assert r.escalate_human is False and r.risk == "flagged"
    assert r.as_dict()["uncertain"] == ["has_symptoms"]
    s = new(script)
    run(s, [U("是的"), U("说不清"), U("没量过"), U("没有"), U("没有"), U("做了")])
    assert s.result.escalate_human is True
    assert "风险问题回答不确定，需人工回访" in s.result.reasons


def test_low_recognizer_confidence_is_uncertain(script: Script) -> None:
    s = new(script)
    run(s, [U("是的"), U("没有"), U("没有"), U("没有", confidence=0.4), U("做了")])
    a = s.result.answers["contact_case"]
    assert (a.value, a.confidence, a.uncertain) == (False, 0.4, True)
    assert s.result.uncertain == ["contact_case"]


def test_unsure_answer_is_recorded_as_null(script: Script) -> None:
    s = new(script)
    actions = run(s, [U("是的"), U("说不清")])
    assert listen_node(actions) == "temperature"  # unsure about symptoms: ask the temperature
    a = s.result.answers["has_symptoms"]
    assert (a.value, a.intent, a.uncertain) == (None, "unsure", True)
    s.handle(U("没量过"))
    assert s.result.answers["temperature"].value is None
    assert s.result.uncertain == ["has_symptoms", "temperature"]


def test_uncertain_non_risk_answer_does_not_escalate(script: Script) -> None:
    s = new(script)
    run(s, [U("是的"), U("没有"), U("没有"), U("没有"), U("说不清")])
    assert s.result.uncertain == ["second_test_done"]
    assert s.result.escalate_human is False
    assert s.result.reminder_needed is True


# ----------------------------------------------------------------------------- properties


CONVERSATIONS: list[Sequence[Event]] = [
    ALL_NO,
    [U("是的"), U("有"), U("三十七度五"), U("有"), U("北京"), U("有"), U("还没")],
    [U("我是他妈妈"), U("好像有"), NoInput(), Dtmf("3"), Dtmf("8"), Dtmf("#"), U("你说啥"), U("没有"), U("没有"), U("做了")],
    [NoInput(), NoInput(), NoInput(), Dtmf("1"), U("没有"), U("我在开车")],
    [U("不是"), U("是的"), HangUp()],
    [U("嗯那个"), U("是的"), U("没有"), U("没有"), U("下午三点再打")],
]


@pytest.mark.parametrize("events", CONVERSATIONS)
def test_deterministic(script: Script, events: Sequence[Event]) -> None:
    runs = []
    for _ in range(2):
        s = new(script)
        actions = run(s, events)
        runs.append((actions, s.result.as_dict(), s.result.turns, s.result.callback_hint))
    assert runs[0] == runs[1]


@pytest.mark.parametrize("events", CONVERSATIONS)
def test_everything_said_is_a_prerenderable_prompt(script: Script, events: Sequence[Event]) -> None:
    s = new(script)
    prompts = set(script.render_prompts(CONTACT))
    for text in says(run(s, events)):
        assert text in prompts


def test_nlu_gets_the_expectation(script: Script) -> None:
    nlu = TableNlu()
    s = script.new_session(CONTACT, nlu)
    run(s, [U("是的"), U("有"), U("三十七度五")])
    assert [(t, e.kind) for t, e in nlu.calls] == [("是的", "yes_no"), ("有", "yes_no"), ("三十七度五", "temperature")]


def test_misuse_is_reported(script: Script) -> None:
    s = new(script)
    with pytest.raises(DialogError, match="before start"):
        s.handle(NoInput())
    s.start()
    with pytest.raises(DialogError, match="already"):
        s.start()


def test_events_after_the_end_do_nothing(script: Script) -> None:
    s = new(script)
    run(s, ALL_NO)
    assert s.handle(U("是的")) == [] and s.handle(Dtmf("1")) == [] and s.handle(NoInput()) == []
    assert s.result.outcome == "completed"


# ----------------------------------------------------------------------------- other node kinds

CHOICE_SCRIPT = """
name: choice_demo
start: ask
nodes:
  ask:
    say: 您是在家隔离，还是集中隔离？在家请按1，集中请按2。
    expect: choice
    field: isolation
    options:
      home: [在家, 居家]
      central: [集中, 酒店]
    dtmf: {"1": home, "2": central}
    next:
      home: bye
      central: intro
  intro:
    say: 好的。
    next: bye
  bye:
    say: 再见。
    end: completed
"""


def test_choice_by_phrase_and_by_key(tmp_path: Path) -> None:
    p = tmp_path / "choice.yaml"
    p.write_text(CHOICE_SCRIPT, encoding="utf-8")
    sc = load_script(p)
    s = sc.new_session({}, TableNlu())
    actions = run(s, [U("在 酒店 呢")])
    assert says(actions)[-2:] == ["好的。", "再见。"]
    assert s.result.answers["isolation"].value == "central"
    listen = [a for a in actions if isinstance(a, Listen)][0]
    assert listen.dtmf == (("1", "home"), ("2", "central")) and "居家" in listen.hints
    s2 = sc.new_session({}, TableNlu())
    run(s2, [Dtmf("1")])
    a = s2.result.answers["isolation"]
    assert (a.value, a.nlu, a.intent) == ("home", "dtmf", "home")
    assert s2.result.outcome == "completed"


def test_family_noticed_by_the_nlu(script: Script) -> None:
    s = new(script)
    s.start()
    actions = s.handle(U("我是他亲戚"))
    assert says(actions)[0] == "好的，麻烦您替张伟回答几个问题。"
    a = s.result.answers["identity_confirmed"]
    assert (a.value, a.nlu, a.intent) == ("family", "table", "family")


# ----------------------------------------------------------------------------- with the real NLU


@pytest.fixture(scope="module")
def builtin() -> Any:
    from dialogs.nlu.builtin import BuiltinNlu

    return BuiltinNlu()


def talk(script: Script, nlu: Any, replies: list[str]) -> Session:
    s = script.new_session(CONTACT, nlu)
    assert isinstance(s, Session)
    s.start()
    for r in replies:
        if s.done:
            break
        s.handle(NoInput() if r == "" else Dtmf(r[1:]) if r.startswith("#") else U(r))
    return s


def test_real_nlu_natural_no_answers(script: Script, builtin: Any) -> None:
    s = talk(script, builtin, ["喂，是我", "没有不舒服", "没 出去 过", "没有没有", "做过了"])
    r = s.result
    assert r.outcome == "completed" and r.risk == "none" and not r.escalate_human and not r.reminder_needed
    assert {k: a.value for k, a in r.answers.items()} == {
        "identity_confirmed": True,
        "has_symptoms": False,
        "traveled": False,
        "contact_case": False,
        "second_test_done": True,
    }
    assert {a.nlu for a in r.answers.values()} == {"builtin"}


def test_real_nlu_hedged_cough_and_spoken_temperature(script: Script, builtin: Any) -> None:
    s = talk(script, builtin, ["对", "好像有点咳", "37度5", "去过", "武汉", "没接触过", "还没做"])
    r = s.result
    assert r.outcome == "completed"
    assert r.answers["has_symptoms"].value is True and r.answers["has_symptoms"].uncertain
    assert r.answers["has_symptoms"].detail["symptoms"] == ("cough",)
    assert r.answers["temperature"].value == 37.5
    assert r.answers["travel_place"].value == "武汉"
    assert r.risk == "flagged" and not r.escalate_human and r.reminder_needed


def test_real_nlu_family_member(script: Script, builtin: Any) -> None:
    s = talk(script, builtin, ["我是他妈妈", "没有", "没有", "没有", "做了"])
    assert s.result.answers["identity_confirmed"].value == "family"
    assert s.result.outcome == "completed"


def test_real_nlu_global_intents(script: Script, builtin: Any) -> None:
    s = talk(script, builtin, ["是的", "我在开会，下午三点再打吧"])
    assert s.result.outcome == "callback_requested"
    assert s.result.callback_hint is not None and s.result.callback_hint["time"] == "15:00"
    assert talk(script, builtin, ["你打错了"]).result.outcome == "wrong_number"
    assert talk(script, builtin, ["是的", "找人工"]).result.outcome == "human_requested"
    s = talk(script, builtin, ["是的", "以后别再给我打电话了"])
    assert s.result.outcome == "opted_out" and s.result.opt_out
    s = talk(script, builtin, ["是的", "你说啥", "没有"])
    assert s.node == "travel"


def test_stop_calling_wins_over_a_family_keyword(script: Script, builtin: Any) -> None:
    # regression: the greeting's family keywords used to be matched before the NLU's global intents,
    # so an opt-out that mentions a family member was taken as "a family member answers"
    s = talk(script, builtin, ["别再打了，我老公说了不接受调查"])
    assert s.result.outcome == "opted_out" and s.result.opt_out
    assert "identity_confirmed" not in s.result.answers
    assert talk(script, builtin, ["你打错了吧，我没有儿子"]).result.outcome == "wrong_number"
    assert talk(script, builtin, ["我要找你们领导，我是他爸爸"]).result.outcome == "human_requested"
    # busy and repeat do not override: the mother can answer for her son who is at work
    s = talk(script, builtin, ["我是他妈妈，他在上班", "没有"])
    assert s.result.answers["identity_confirmed"].value == "family"
    assert s.node == "travel"
