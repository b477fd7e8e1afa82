"""Script validation: every broken script gives the right message at the right YAML line."""

from __future__ import annotations

from pathlib import Path

import pytest

from dialogs.script import CONTACT_FIELDS, ScriptError, ScriptIssue, check_script, load_script

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = ROOT / "dialogs" / "scripts" / "covid_screening.yaml"

GOOD = """\
name: mini
start: ask
nodes:
  ask:
    say: 请问是{name}吗？
    expect: yes_no
    field: confirmed
    risk: true
    next:
      yes: fever
      no: bye
  fever:
    say: 体温多少度？
    expect: temperature
    field: temperature
    next: bye
  bye:
    say: 再见。
    end: completed
rules:
  - when: temperature >= 37.3
    risk: flagged
    reason: 发烧
"""


def check(tmp_path: Path, text: str) -> list[tuple[int, str]]:
    p = tmp_path / "s.yaml"
    p.write_text(text, encoding="utf-8")
    issues = check_script(p)
    assert all(i.file == str(p) for i in issues)
    return [(i.line, i.message) for i in issues]


def test_good_script_has_no_issues(tmp_path: Path) -> None:
    assert check(tmp_path, GOOD) == []


def test_default_script_passes() -> None:
    assert check_script(DEFAULT) == []
    s = load_script(DEFAULT)
    assert s.name == "covid_screening"
    assert s.fields == (
        "identity_confirmed", "has_symptoms", "temperature", "traveled", "travel_place", "contact_case", "second_test_done",
    )
    assert s.risk_fields == ("has_symptoms", "temperature", "traveled", "contact_case")
    import hashlib

    assert s.sha256 == hashlib.sha256(DEFAULT.read_bytes()).hexdigest()


def test_default_script_prompts_are_short_chinese_and_never_speak_numbers() -> None:
    s = load_script(DEFAULT)
    for template in s.all_prompts():
        assert "{phone}" not in template and "{national_id}" not in template
        assert len(template) <= 60, template
    rendered = s.render_prompts({"name": "李娜", "phone": "+8613800138000", "national_id": "110101199003077777"})
    assert any("李娜" in t for t in rendered)
    assert not any("138" in t or "1101" in t for t in rendered)
    # key-press hints only in re-prompts: every yes/no question's re-prompts mention the keys, no first prompt does
    for node in s.nodes.values():
        assert "按1" not in (node.say or "") and "按键" not in (node.say or ""), node.name
    for node in s.nodes.values():
        if node.expect == "yes_no":
            assert all("按1" in t for t in node.reprompt_no_input + node.reprompt_no_match), node.name


BROKEN: list[tuple[str, str, str, int, str]] = [
    # (id, old, new, line, message)
    ("unknown target", "      no: bye\n", "      no: byebye\n", 11, "node 'ask': 'no' goes to unknown node 'byebye'"),
    ("unknown statement target", "    next: bye\n  bye:", "    next: nowhere\n  bye:", 16, "node 'fever': 'next' goes to unknown node 'nowhere'"),
    (
        "unreachable node",
        "  bye:\n",
        "  orphan:\n    say: 你好。\n    next: bye\n  bye:\n",
        17,
        "node 'orphan' is unreachable from the start node 'ask'",
    ),
    ("missing prompt", "    say: 体温多少度？\n", "", 12, "question node 'fever' has no prompt ('say')"),
    (
        "unknown expect type",
        "    expect: temperature\n",
        "    expect: number\n",
        14,
        "node 'fever': unknown expect type 'number'; expected one of: yes_no, temperature, choice, free_text",
    ),
    (
        "unknown template variable",
        "请问是{name}吗？",
        "请问是{full_name}吗？",
        5,
        f"unknown template variable {{full_name}}; contacts have: {', '.join(CONTACT_FIELDS)}",
    ),
    ("phone is never spoken", "请问是{name}吗？", "您的号码是{phone}吗？", 5, "template variable {phone}: the phone must never be spoken"),
    (
        "rule names unknown field",
        "temperature >= 37.3",
        "temp >= 37.3",
        21,
        "rule 1: unknown field 'temp' (column 1); recorded fields: confirmed, temperature",
    ),
    (
        "rule syntax error with column",
        "temperature >= 37.3",
        "temperature >= 37.3 and",
        21,
        "rule 1: bad condition at column 24: unexpected end of expression",
    ),
    ("rule unknown risk level", "risk: flagged", "risk: severe", 22, "rule 1: unknown risk level 'severe'; levels: none, flagged, high"),
    ("unknown outcome", "end: completed", "end: finished", 19, "node 'bye': unknown outcome 'finished'; outcomes: completed, callback_requested, human_requested, wrong_number, opted_out, no_response, not_understood, hung_up"),
    ("unknown node key", "    field: temperature\n", "    feild: temperature\n", 15, "unknown key 'feild' in node 'fever'; valid keys: say, expect, field, options, dtmf, keywords, values, next, reprompt, risk, hints, end, no_input_s, max_tries, topic, say_proxy, reprompt_proxy, say_when"),
    ("answer with no target", "      no: bye\n", "", 9, "node 'ask': no target for answer 'no' (add it or 'default' under 'next')"),
    ("transition for an answer that cannot happen", "      no: bye\n", "      no: bye\n      maybe: bye\n", 12, "node 'ask': 'next' has 'maybe', which is not an answer here (answers: yes, no, unsure, default)"),
    ("bad dtmf key", "    risk: true\n", "    risk: true\n    dtmf: {\"A\": yes}\n", 9, "node 'ask': 'A' is not a phone key (0-9, *, #)"),
    ("unknown start", "start: ask", "start: begin", 2, "'start' names unknown node 'begin' (nodes: ask, fever, bye)"),
    ("unknown top-level key", "name: mini\n", "name: mini\nlanguage: zh\n", 2, "unknown key 'language' in the script; valid keys: name, description, version, start, vars, settings, globals, keywords, nodes, rules"),
    ("choice without options", "    expect: temperature\n", "    expect: choice\n", 14, "choice node 'fever' needs 'options': a mapping of value -> phrases"),
    ("bad setting", "start: ask\n", "start: ask\nsettings:\n  max_tries: 50\n", 4, "'settings.max_tries' must be a number from 0 to 10, got 50"),
    ("global prompt unknown variable", "start: ask\n", "start: ask\nglobals:\n  busy: 好的{center}再见\n", 4, "unknown template variable {center}; contacts have: name, community, address, arrival_date"),
]


@pytest.mark.parametrize(("old", "new", "line", "message"), [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN])
def test_broken_script(tmp_path: Path, old: str, new: str, line: int, message: str) -> None:
    assert old in GOOD
    issues = check(tmp_path, GOOD.replace(old, new, 1))
    assert (line, message) in issues, issues


def test_loop_without_end(tmp_path: Path) -> None:
    text = GOOD.replace("      no: bye\n", "      no: again\n").replace(
        "  bye:\n", "  again:\n    say: 再问一次。\n    next: again2\n  again2:\n    say: 还是问。\n    next: again\n  bye:\n"
    )
    issues = check(tmp_path, text)
    assert (17, "node 'again' has no way to an end node (it loops forever)") in issues
    assert (20, "node 'again2' has no way to an end node (it loops forever)") in issues


def test_no_end_node_at_all(tmp_path: Path) -> None:
    text = "nodes:\n  a:\n    say: 你好\n    next: b\n  b:\n    say: 再见\n    next: a\n"
    assert (1, "the script has no end node (a node with 'end: <outcome>')") in check(tmp_path, text)


def test_yaml_syntax_error(tmp_path: Path) -> None:
    text = GOOD.replace("    expect: yes_no\n", "    expect: [yes_no\n")
    issues = check(tmp_path, text)
    assert len(issues) == 1
    line, message = issues[0]
    assert (line, message) == (7, "YAML syntax error (column 10): expected ',' or ']', but got ':'")


def test_not_a_mapping(tmp_path: Path) -> None:
    assert check(tmp_path, "- a\n- b\n") == [(1, "a script must be a YAML mapping with 'nodes'")]


def test_yes_no_keys_are_words_not_booleans(tmp_path: Path) -> None:
    # YAML 1.1 would read `yes:`/`no:` as booleans; scripts use YAML 1.2 booleans (true/false only).
    p = tmp_path / "s.yaml"
    p.write_text(GOOD, encoding="utf-8")
    assert dict(load_script(p).nodes["ask"].next) == {"yes": "fever", "no": "bye"}


def test_missing_file_and_bad_encoding(tmp_path: Path) -> None:
    assert [str(i) for i in check_script(tmp_path / "nope.yaml")] == [f"{tmp_path / 'nope.yaml'}:0: script file not found"]
    p = tmp_path / "latin.yaml"
    p.write_bytes(b"name: x\nsay: \xff\n")
    assert [(i.line, i.message) for i in check_script(p)] == [(2, "not UTF-8 text (invalid start byte at byte 13)")]


def test_load_script_raises_with_all_issues(tmp_path: Path) -> None:
    p = tmp_path / "s.yaml"
    p.write_text(GOOD.replace("      no: bye\n", "      no: byebye\n").replace("temp", "tmp"), encoding="utf-8")
    with pytest.raises(ScriptError) as info:
        load_script(p)
    err = info.value
    assert all(isinstance(i, ScriptIssue) for i in err.issues)
    assert len(err.issues) >= 2
    assert str(err).splitlines()[0] == f"{p}:11: node 'ask': 'no' goes to unknown node 'byebye'"


def test_issues_are_sorted_by_line(tmp_path: Path) -> None:
    text = GOOD.replace("temperature >= 37.3", "temp >= 37.3").replace("      no: bye\n", "      no: byebye\n")
    lines = [line for line, _ in check(tmp_path, text)]
    assert lines == sorted(lines)


def test_all_prompts_and_render(tmp_path: Path) -> None:
    p = tmp_path / "s.yaml"
    p.write_text(GOOD, encoding="utf-8")
    s = load_script(p)
    prompts = s.all_prompts()
    assert "请问是{name}吗？" in prompts and "再见。" in prompts and "好的，我再说一遍。" in prompts
    assert len(prompts) == len(set(prompts))
    import datetime as dt

    assert s.render("请问是{name}吗？{arrival_date}", {"name": "王芳", "arrival_date": dt.date(2022, 3, 5)}) == "请问是王芳吗？3月5日"
    assert "请问是王芳吗？" in s.render_prompts({"name": "王芳"})


def test_duplicate_node_is_reported_not_silently_replaced(tmp_path: Path) -> None:
    # regression: a node pasted twice silently replaced the first (YAML keeps the last key)
    text = GOOD.replace("  bye:\n", "  fever:\n    say: 又一个。\n    next: bye\n  bye:\n")
    assert check(tmp_path, text) == [(17, "duplicate key 'fever' in nodes (first at line 12)")]
    text = GOOD.replace("      no: bye\n", "      no: bye\n      yes: bye\n")
    assert check(tmp_path, text) == [(12, "duplicate key 'yes' in nodes > ask > next (first at line 10)")]


def test_recursive_alias_is_an_issue_not_a_crash(tmp_path: Path) -> None:
    # regression: a self-referencing alias crashed `dialog check` with a RecursionError
    assert check(tmp_path, "nodes: &a\n  x: *a\n") == [(1, "YAML alias refers to itself (a recursive '*' alias)")]
    # a plain (non-recursive) alias still works
    text = GOOD.replace("    say: 体温多少度？\n", "    say: &q 体温多少度？\n").replace("    say: 再见。\n", "    say: *q\n")
    assert check(tmp_path, text) == []


def test_dialog_check_warns_about_long_prompts(tmp_path: Path) -> None:
    """`dialog check` renders every prompt with espeak-ng: the default script's greeting is short; a long
    prompt is reported with its line and length, and the exit status stays 0 (a warning)."""
    from typer.testing import CliRunner

    from outreach.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["dialog", "check", str(DEFAULT)])
    assert res.exit_code == 0, res.output
    assert "long prompt" not in res.stdout and "warning:" not in res.stderr
    script = load_script(DEFAULT)
    long_text = "您好，" + "这是一段特别特别长的健康提示，请您耐心听完，" * 4 + "请问是{name}本人吗？"
    raw = DEFAULT.read_text(encoding="utf-8").replace(
        "say: 您好，{center}随访，请问是{name}吗？", f"say: {long_text}"
    )
    path = tmp_path / "long.yaml"
    path.write_text(raw, encoding="utf-8")
    res = runner.invoke(app, ["dialog", "check", str(path), "--max-prompt-s", "12"])
    assert res.exit_code == 0, res.output
    line = raw.splitlines().index(f"    say: {long_text}") + 1
    assert f"long.yaml:{script.nodes['greeting'].line}: warning: node 'greeting': the prompt takes" in res.stderr
    assert "(limit 12 s)" in res.stderr and "1 long prompt(s)" in res.stdout
    assert line > 0


def test_default_greeting_is_under_six_seconds_and_names_the_center() -> None:
    import asyncio

    from outreach.config import Config, script_vars
    from tts.audio import duration_s
    from tts.espeak import EspeakEngine

    script = load_script(DEFAULT).with_vars(script_vars(Config()))
    greeting = script.render(script.nodes["greeting"].say or "", {"name": "张伟"})
    assert greeting.startswith("您好，社区卫生中心") and greeting.count("？") == 1
    assert duration_s(asyncio.run(EspeakEngine().synthesize(greeting))) < 6.0
