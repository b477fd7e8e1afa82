"""The risk-rule expression language: tokenizer, parser (errors with columns), evaluator."""

from __future__ import annotations

from typing import Any

import pytest

from dialogs.rules import RuleContext, RuleError, parse_condition, tokenize


def ev(text: str, values: dict[str, Any] | None = None, uncertain: set[str] | None = None, risk: set[str] | None = None) -> bool:
    ctx = RuleContext(values=values or {}, uncertain=frozenset(uncertain or ()), risk_fields=frozenset(risk or ()))
    return parse_condition(text)(ctx)


def test_tokens_and_columns() -> None:
    toks = tokenize('temperature >= 37.3 and place in ["武汉", \'北京\']')
    assert [(t.kind, t.value, t.column) for t in toks] == [
        ("name", "temperature", 1),
        ("op", ">=", 13),
        ("num", 37.3, 16),
        ("name", "and", 21),
        ("name", "place", 25),
        ("name", "in", 31),
        ("op", "[", 34),
        ("str", "武汉", 35),
        ("op", ",", 39),
        ("str", "北京", 41),
        ("op", "]", 45),
        ("end", None, 46),
    ]


@pytest.mark.parametrize(
    ("text", "values", "expected"),
    [
        ("temperature >= 37.3", {"temperature": 37.3}, True),
        ("temperature >= 37.3", {"temperature": 37.2}, False),
        ("temperature >= 37.3", {}, False),  # unanswered: null never satisfies an ordering
        ("temperature >= 37.3", {"temperature": None}, False),
        ("temperature < 37.3", {"temperature": None}, False),
        ("temperature > 36 and temperature < 38", {"temperature": 37}, True),
        ("has_symptoms == true", {"has_symptoms": True}, True),
        ("has_symptoms == true", {"has_symptoms": False}, False),
        ("has_symptoms", {"has_symptoms": True}, True),
        ("not has_symptoms", {}, True),
        ("has_symptoms == 1", {"has_symptoms": True}, False),  # true is not 1
        ("x == null", {}, True),
        ("x != null", {"x": 0}, True),
        ("a or b and c", {"a": False, "b": True, "c": False}, False),
        ("a or b and c", {"a": True, "b": False, "c": False}, True),
        ("(a or b) and c", {"a": True, "b": False, "c": False}, False),
        ("not a == 1", {"a": 2}, True),
        ("place in ['武汉', '北京']", {"place": "北京"}, True),
        ("place not in ['武汉', '北京']", {"place": "上海"}, True),
        ("'武汉' in place", {"place": "湖北武汉"}, True),
        ("'武汉' in place", {}, False),
        ("temperature > 'high'", {"temperature": 39.0}, False),  # mixed types: false, not an error
        ("x == -1.5", {"x": -1.5}, True),
        ("name >= 'b'", {"name": "c"}, True),
        ("n in [1, 2, 3]", {"n": 2}, True),
        ("true", {}, True),
        ("false or null", {}, False),
        ("x == \"a\\\"b\"", {"x": 'a"b'}, True),
    ],
)
def test_evaluate(text: str, values: dict[str, Any], expected: bool) -> None:
    assert ev(text, values) is expected


def test_functions() -> None:
    assert ev("uncertain(a)", {"a": True}, {"a"}) is True
    assert ev("uncertain(a)", {"a": True}, set()) is False
    assert ev("answered(a)", {"a": None}) is True
    assert ev("answered(a)", {}) is False
    assert ev("uncertain_risk()", {"a": True, "b": 1}, {"b"}, {"a"}) is False
    assert ev("uncertain_risk()", {"a": True, "b": 1}, {"a"}, {"a"}) is True
    assert ev("a == false and not uncertain(a)", {"a": False}) is True


def test_fields_lists_every_name_with_column() -> None:
    cond = parse_condition("a > 1 or uncertain(b) or c in [d]")
    assert [(f.name, f.column) for f in cond.fields()] == [("a", 1), ("b", 20), ("c", 26), ("d", 32)]


@pytest.mark.parametrize(
    ("text", "column", "message"),
    [
        ("", 1, "empty expression"),
        ("a >", 4, "unexpected end of expression"),
        ("a = 1", 3, "'=' is not an operator; use '==' to compare"),
        ("a && b", 3, "unexpected '&'; write 'and'"),
        ("a || b", 3, "unexpected '|'; write 'or'"),
        ("!a", 1, "unexpected '!'; write 'not'"),
        ("(a or b", 8, "expected ')' to close '(' at column 1, found end of expression"),
        ("[1, 2", 6, "expected ']' to close '[' at column 1, found end of expression"),
        ("a == 'x", 6, "unterminated string starting with '"),
        ("a b", 3, "unexpected 'b' after a complete expression"),
        ("eval(a)", 1, "unknown function 'eval'; known: uncertain(), answered(), uncertain_risk(), unsure_risk()"),
        ("uncertain(1)", 11, "uncertain() takes field names, found '1'"),
        ("uncertain(a, b)", 1, "uncertain() takes 1 argument(s), got 2"),
        ("a == 3 ; b", 8, "unexpected character ';'"),
        ("a and or", 7, "unexpected 'or'"),
        ("__import__('os')", 1, "unknown function '__import__'; known: uncertain(), answered(), uncertain_risk(), unsure_risk()"),
    ],
)
def test_parse_errors_carry_the_column(text: str, column: int, message: str) -> None:
    with pytest.raises(RuleError) as info:
        parse_condition(text)
    assert (info.value.column, info.value.message) == (column, message)
    assert str(info.value) == f"column {column}: {message}"


def test_attribute_access_is_not_a_thing() -> None:
    with pytest.raises(RuleError) as info:
        parse_condition("a.__class__")
    assert info.value.column == 2
