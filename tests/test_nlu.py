"""The built-in Chinese NLU: accuracy per category over the labelled set, and focused unit tests."""

from __future__ import annotations

from collections import defaultdict

import pytest

from dialogs.nlu import BuiltinNlu, make_nlu
from dialogs.nlu.builtin import normalize
from dialogs.nlu.rasa import RasaNlu
from dialogs.nlu.temperature import find_temperature, normalize_numbers, parse_temperature
from dialogs.nlu.timeparse import is_time_only, parse_callback_time
from dialogs.nlu.types import NOT_ANSWER_INTENTS, TEMPERATURE_INTENTS, YES_NO_INTENTS, Expectation, NluResult
from outreach.config import NluConfig
from tests.nlu_sets import DATA_DIR, Row, load_rows

DATA = DATA_DIR / "nlu_labelled.tsv"
YES_NO = Expectation("yes_no")
TEMP = Expectation("temperature")




ROWS = load_rows(DATA)
NLU = BuiltinNlu()


def cli_intent(res: NluResult) -> str:
    """What `outreach nlu` prints: a reply that fits nothing is reported as unsure."""
    return "unsure" if res.intent == "no_match" else res.intent


def correct(row: Row) -> bool:
    res = NLU.parse(row.text, Expectation(row.expect))
    if cli_intent(res) != row.intent:
        return False
    if row.intent in ("affirm", "deny"):
        return res.value is (row.value == "true")
    if row.intent == "temperature":
        return res.value is not None and abs(res.value - float(row.value)) < 0.01
    return True


def test_labelled_set_is_large_well_formed_and_covers_every_intent() -> None:
    assert len(ROWS) >= 500
    assert all(r.category for r in ROWS)
    for r in ROWS:
        allowed = YES_NO_INTENTS if r.expect == "yes_no" else TEMPERATURE_INTENTS
        assert r.expect in ("yes_no", "temperature"), f"line {r.line}"
        assert r.intent in allowed, f"line {r.line}: {r.intent}"
        if r.intent in ("affirm", "deny"):
            assert r.value == ("true" if r.intent == "affirm" else "false"), f"line {r.line}"
        elif r.intent == "temperature":
            assert 34.0 <= float(r.value) <= 43.0, f"line {r.line}"
        else:
            assert r.value == "", f"line {r.line}"
    # the "not an answer" kinds need the question's topic: they are covered by tests/data/nlu_dev.tsv
    assert {r.intent for r in ROWS if r.expect == "yes_no"} == set(YES_NO_INTENTS) - set(NOT_ANSWER_INTENTS)
    assert {r.intent for r in ROWS if r.expect == "temperature"} == set(TEMPERATURE_INTENTS) - set(NOT_ANSWER_INTENTS)
    texts = [(r.expect, r.text) for r in ROWS]
    assert len(texts) == len(set(texts)), "duplicate rows"


def test_accuracy_per_category_and_overall() -> None:
    per: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    by_expect: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    failures: list[str] = []
    for r in ROWS:
        ok = correct(r)
        per[r.category][0] += ok
        per[r.category][1] += 1
        by_expect[r.expect][0] += ok
        by_expect[r.expect][1] += 1
        if not ok:
            res = NLU.parse(r.text, Expectation(r.expect))
            failures.append(f"line {r.line} [{r.category}] {r.text!r}: want {r.intent} {r.value}, got {res}")
    report = "\n".join(f"{c:28s} {ok}/{n} = {ok / n:.3f}" for c, (ok, n) in sorted(per.items()))
    print("\n" + report)
    assert len(per) >= 12
    for category, (good, n) in per.items():
        assert good / n >= 0.95, f"{category}: {good}/{n}\n" + "\n".join(failures)
    yn_ok, yn_n = by_expect["yes_no"]
    t_ok, t_n = by_expect["temperature"]
    assert yn_ok / yn_n >= 0.97, "\n".join(failures)
    assert t_ok / t_n >= 0.95, "\n".join(failures)


# --------------------------------------------------------------------------- yes/no details


def test_symptom_named_instead_of_yes_is_affirm_with_symptoms() -> None:
    res = NLU.parse("一直在咳", YES_NO)
    assert (res.intent, res.value, res.uncertain) == ("affirm", True, False)
    assert dict(res.detail)["symptoms"] == ("cough",)


def test_negation_scope_separates_denied_and_named_symptoms() -> None:
    res = NLU.parse("没有发烧但是咳嗽", YES_NO)
    assert res.intent == "affirm"
    assert dict(res.detail) == {"symptoms": ("cough",), "denied_symptoms": ("fever",)}
    res = NLU.parse("发烧咳嗽都没有", YES_NO)
    assert res.intent == "deny"
    assert dict(res.detail) == {"denied_symptoms": ("fever", "cough")}


def test_negative_looking_symptom_word_is_one_token() -> None:
    assert NLU.parse("没有不舒服", YES_NO).intent == "deny"
    assert NLU.parse("有点不舒服", YES_NO).intent == "affirm"
    assert NLU.parse("浑身没劲", YES_NO).intent == "affirm"


def test_double_negation_affirms_and_repetition_does_not_count_twice() -> None:
    res = NLU.parse("不是没有", YES_NO)
    assert (res.intent, res.value) == ("affirm", True)
    assert res.confidence <= 0.8
    assert NLU.parse("没有没有", YES_NO).intent == "deny"
    assert NLU.parse("不不不", YES_NO).intent == "deny"


@pytest.mark.parametrize(
    ("text", "intent"),
    [("好像有", "affirm"), ("可能吧", "affirm"), ("应该没有?", "deny"), ("大概没有吧", "deny")],
)
def test_hedges_are_uncertain(text: str, intent: str) -> None:
    res = NLU.parse(text, YES_NO)
    assert (res.intent, res.uncertain) == (intent, True)
    assert res.confidence < 0.6
    assert ("hedged", True) in res.detail


def test_plain_answers_are_certain_and_lone_um_is_a_weaker_yes() -> None:
    plain = NLU.parse("没有", YES_NO)
    assert (plain.intent, plain.uncertain, plain.confidence) == ("deny", False, 0.95)
    um = NLU.parse("嗯", YES_NO)
    assert um.intent == "affirm" and um.confidence < plain.confidence
    assert NLU.parse("嗯嗯，没有", YES_NO).intent == "deny"  # 嗯嗯 as a filler before the answer
    assert NLU.parse("嗯？", YES_NO).intent == "repeat"


def test_low_confidence_threshold_marks_uncertain() -> None:
    strict = BuiltinNlu(low_confidence=0.8)
    assert strict.parse("嗯", YES_NO).uncertain is True
    assert BuiltinNlu(low_confidence=0.6).parse("嗯", YES_NO).uncertain is False


def test_dont_know_is_its_own_answer() -> None:
    for text in ("说不清", "不知道", "不清楚", "记不得了", "有没有我也不知道"):
        res = NLU.parse(text, YES_NO)
        assert (res.intent, res.value) == ("unsure", None), text


def test_vosk_spaces_full_width_and_dialect_are_normalized() -> None:
    assert normalize("没有 发烧") == "没有发烧"
    assert normalize("ＹＥＳ！") == "yes"
    assert normalize("冇") == "没有"
    assert normalize("唔係") == "不是"
    assert NLU.parse("没有 发烧", YES_NO).intent == "deny"
    assert NLU.parse("不 是 没 有", YES_NO).intent == "affirm"


def test_temperature_stated_on_a_yes_no_question() -> None:
    res = NLU.parse("三十八度五", YES_NO)
    assert (res.intent, dict(res.detail)["temperature"], dict(res.detail)["symptoms"]) == (
        "affirm",
        38.5,
        ("fever",),
    )
    assert NLU.parse("三十六度五", YES_NO).intent == "deny"


def test_someone_else_answering_is_deny_with_detail() -> None:
    res = NLU.parse("我是他妈妈", YES_NO)
    assert res.intent == "deny"
    assert dict(res.detail)["family"] == "妈妈"
    assert NLU.parse("他不在", YES_NO).detail == (("other_person", True),)
    assert NLU.parse("我不是他", YES_NO).intent == "wrong_number"


def test_not_yet_but_planned_is_deny_planned() -> None:
    res = NLU.parse("还没，明天去", YES_NO)
    assert res.intent == "deny"
    assert ("planned", True) in res.detail


def test_nothing_understood_is_no_match() -> None:
    for text in ("", "   ", "，。", "让我想想"):
        res = NLU.parse(text, YES_NO)
        assert (res.intent, res.confidence) == ("no_match", 0.0), text


def test_unknown_expectation_kind_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown expectation kind 'date'"):
        NLU.parse("没有", Expectation("date"))


# --------------------------------------------------------------------------- global intents


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("你说啥", "repeat"),
        ("再说一遍", "repeat"),
        ("没听清", "repeat"),
        ("啥", "repeat"),
        ("我在开车", "busy"),
        ("忙着呢", "busy"),
        ("转人工", "human"),
        ("我要跟人说", "human"),
        ("打错了", "wrong_number"),
        ("没这个人", "wrong_number"),
        ("别再打了", "opt_out"),
        ("骚扰电话", "opt_out"),
    ],
)
@pytest.mark.parametrize("kind", ["yes_no", "temperature", "choice", "free_text"])
def test_global_intents_win_in_every_expectation(text: str, intent: str, kind: str) -> None:
    expect = Expectation(kind, (("beijing", ("北京",)),) if kind == "choice" else ())
    assert NLU.parse(text, expect).intent == intent


def test_busy_carries_the_callback_time() -> None:
    res = NLU.parse("下午三点打过来", YES_NO)
    assert res.intent == "busy"
    assert res.value == {"text": "下午三点", "delay_minutes": None, "day_offset": 0, "time": "15:00"}
    assert NLU.parse("我在开车", YES_NO).value is None
    assert NLU.parse("半小时后再打", TEMP).value == {
        "text": "半小时后",
        "delay_minutes": 30,
        "day_offset": 0,
        "time": None,
    }


def test_busy_right_now_is_not_an_opt_out() -> None:
    assert NLU.parse("现在别打，我在开会", YES_NO).intent == "busy"
    assert NLU.parse("以后别打了", YES_NO).intent == "opt_out"


# --------------------------------------------------------------------------- temperature


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("三十七度二", 37.2),
        ("37度2", 37.2),
        ("三十八点五", 38.5),
        ("37.5", 37.5),
        ("卅七度半", 37.5),
        ("三十七度五", 37.5),
        ("37度5", 37.5),
        ("三七度二", 37.2),
        ("叁拾陆度伍", 36.5),
        ("３６．８℃", 36.8),
        ("三十七 度 二", 37.2),
        ("三十七都五", 37.5),
        ("昨天三十八度五，今天三十八度", 38.0),
        ("昨天三十六度八，今天三十六度五", 36.5),
    ],
)
def test_temperatures_in_words_and_digits(text: str, value: float) -> None:
    res = NLU.parse(text, TEMP)
    assert (res.intent, res.value) == ("temperature", value)
    assert parse_temperature(text) == value


def test_approximate_temperatures_are_uncertain() -> None:
    for text, value in (("三十六度五左右", 36.5), ("大概三十六度八", 36.8)):
        res = NLU.parse(text, TEMP)
        assert (res.intent, res.value, res.uncertain) == ("temperature", value, True), text


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("三十七度多", "vague"),
        ("三十七八度", "vague"),
        ("三十六到三十七度", "vague"),
        ("三十六度九到三十七度四", "conflicting"),
        ("昨天三十八度，今天三十七度二", "conflicting"),
        ("三十六度五还是三十六度八来着", "range"),
        ("大概三十七度，没看清", "doubtful"),
    ],
)
def test_vague_ranges_and_conflicting_temperatures_are_unsure_with_what_was_heard(text: str, why: str) -> None:
    res = NLU.parse(text, TEMP)
    assert (res.intent, res.value, res.uncertain) == ("unsure", None, True), text
    detail = dict(res.detail)
    assert detail[why] is True and detail["heard"]


@pytest.mark.parametrize("text", ["二十度", "一百度", "45度", "三十三度", "375"])
def test_implausible_temperatures_are_unsure(text: str) -> None:
    res = NLU.parse(text, TEMP)
    assert (res.intent, res.value) == ("unsure", None)
    assert dict(res.detail)["implausible"] is not None


def test_plausibility_range_is_inclusive() -> None:
    assert NLU.parse("三十四度", TEMP).value == 34.0
    assert NLU.parse("四十三度", TEMP).value == 43.0


def test_temperature_without_a_number() -> None:
    res = NLU.parse("体温正常", TEMP)
    assert (res.intent, res.detail) == ("unsure", (("normal", True),))
    assert NLU.parse("没量过", TEMP).intent == "unsure"
    assert find_temperature("没有量") is None


def test_normalize_numbers() -> None:
    assert normalize_numbers("三十七度五") == "37度5"
    assert normalize_numbers("三十7度") == "37度"
    assert normalize_numbers("36到37度") == "36~37度"
    assert normalize_numbers("一百零二") == "102"  # through cn2an


# --------------------------------------------------------------------------- choice and free text


def test_choice_picks_the_option_named() -> None:
    expect = Expectation(
        "choice", (("wuhan", ("武汉", "湖北")), ("beijing", ("北京",)), ("other", ("别的地方", "其他")))
    )
    assert NLU.parse("去了 武汉", expect) == NluResult("choice", "wuhan", 0.9)
    assert NLU.parse("北京", expect).value == "beijing"
    assert NLU.parse("第二个", expect).value == "beijing"
    assert NLU.parse("武汉和北京都去了", expect).intent == "no_match"
    assert NLU.parse("上海", expect).intent == "no_match"


def test_free_text_is_cleaned_but_globals_still_win() -> None:
    res = NLU.parse("嗯 那个 去了 杭州 啊", Expectation("free_text"))
    assert (res.intent, res.value) == ("free_text", "去了杭州")
    assert NLU.parse("你说啥", Expectation("free_text")).intent == "repeat"
    assert NLU.parse("明天", Expectation("free_text")).intent == "free_text"


# --------------------------------------------------------------------------- callback time parser


@pytest.mark.parametrize(
    ("text", "delay", "day", "time"),
    [
        ("半小时后再打", 30, 0, None),
        ("一个小时以后", 60, 0, None),
        ("一个半小时以后", 90, 0, None),
        ("过十分钟", 10, 0, None),
        ("下午三点打过来", None, 0, "15:00"),
        ("三点半", None, 0, "15:30"),
        ("十点一刻", None, 0, "10:15"),
        ("明天上午", None, 1, "09:00"),
        ("后天下午两点", None, 2, "14:00"),
        ("晚上再说", None, 0, "19:00"),
        ("晚上八点", None, 0, "20:00"),
        ("晚点再打", None, 0, None),
    ],
)
def test_parse_callback_time(text: str, delay: int | None, day: int, time: str | None) -> None:
    got = parse_callback_time(text)
    assert got is not None
    assert (got["delay_minutes"], got["day_offset"], got["time"]) == (delay, day, time)
    assert got["text"] and got["text"] in text.replace(" ", "")


def test_time_only_replies() -> None:
    assert parse_callback_time("我在开车") is None
    assert parse_callback_time("有一点发烧") is None  # 一点 is not one o'clock
    assert is_time_only("明天上午吧")
    assert not is_time_only("明天去做")


# --------------------------------------------------------------------------- factory


def test_make_nlu_builds_the_configured_engine() -> None:
    nlu = make_nlu(NluConfig())
    assert isinstance(nlu, BuiltinNlu) and nlu.name == "builtin"
    rasa = make_nlu(
        NluConfig(engine="rasa", rasa_url="http://127.0.0.1:9/", timeout_s=0.3, low_confidence=0.7)
    )
    assert isinstance(rasa, RasaNlu)
    assert rasa.url == "http://127.0.0.1:9/model/parse" and rasa.timeout_s == 0.3
    assert isinstance(rasa.fallback, BuiltinNlu) and rasa.fallback.low_confidence == 0.7
    rasa.close()


# ----------------------------------------------------------------------------- review regressions


@pytest.mark.parametrize(
    "text",
    ["没有 没有 都 挺 好 的", "没有 身体 好 着 呢", "没有 都 正常", "没有没有挺好的"],
)
def test_no_then_wellbeing_without_a_comma_is_deny(text: str) -> None:
    # regression: ASR text has no comma, and 没有 used to negate 挺好 into an "unwell" symptom
    res = NLU.parse(text, YES_NO)
    assert (res.intent, res.value) == ("deny", False)
    assert "symptoms" not in dict(res.detail)


def test_not_well_is_still_a_symptom() -> None:
    for text in ("不太好", "身体不太好", "不正常"):
        res = NLU.parse(text, YES_NO)
        assert (res.intent, dict(res.detail)["symptoms"]) == ("affirm", ("unwell",)), text


def test_answer_then_another_topic_in_spaced_asr_text() -> None:
    # regression: without the comma, 结果 made the whole reply say nothing
    for text in ("做了 结果 还没 出来", "做了，结果还没出"):
        res = NLU.parse(text, YES_NO)
        assert (res.intent, res.value) == ("affirm", True), text
    assert NLU.parse("结果 还没 出来", YES_NO).intent == "no_match"


@pytest.mark.parametrize("text", ["没空去", "工作忙还没去", "太忙了 还没 去 做", "没时间去做核酸"])
def test_busy_as_the_reason_for_not_done_is_deny(text: str) -> None:
    # regression: 忙/没空 ended the call as "call me later" although the reply answers "not done"
    res = NLU.parse(text, YES_NO)
    assert (res.intent, res.value) == ("deny", False)


@pytest.mark.parametrize("text", ["我在忙", "我在忙，没时间做调查", "我 在 忙 等会 去", "我现在没时间"])
def test_busy_right_now_stays_busy(text: str) -> None:
    assert NLU.parse(text, YES_NO).intent == "busy"


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("号码不对", "wrong_number"),
        ("你 找 他 干嘛", "repeat"),
        ("我 不 会 说 普通话", "human"),
        ("听不懂普通话", "human"),
        ("出 过 差", "affirm"),
        ("出门买菜算吗", "deny"),
        ("就 去 超市 买 东西", "deny"),
    ],
)
def test_review_replies(text: str, intent: str) -> None:
    assert NLU.parse(text, YES_NO).intent == intent


def test_point_something_is_a_vague_temperature() -> None:
    res = NLU.parse("三十六点几", TEMP)
    assert (res.intent, res.value, res.uncertain) == ("unsure", None, True)
    t = find_temperature("三十七点多")
    assert t is not None and (t.value, t.approximate, t.plausible, t.vague) == (37.5, True, True, True)
