"""`outreach nlu` as a real subprocess: one JSON object per input line, flushed line by line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_rasa import FakeRasa
from tests.test_rasa import fake_rasa as fake_rasa  # the fixture, shared

ROOT = Path(__file__).resolve().parent.parent
OUTREACH = str(Path(sys.executable).parent / "outreach")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTREACH_")}
    env.update(extra)
    return env


def run_nlu(args: list[str], stdin: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [OUTREACH, "nlu", *args],
        input=stdin,
        capture_output=True,
        text=True,
        encoding="utf-8",
        cwd=ROOT,
        env=clean_env(**env),
        timeout=60,
    )


def test_yes_no_prints_one_exact_json_object_per_line() -> None:
    lines = [
        "没有",
        "嗯",
        "好像有",
        "说不清",
        "你说啥",
        "我在开车",
        "转人工",
        "打错了",
        "别再打了",
        "今天天气怎么样",
        "一直在咳",
        "明天上午",
    ]
    proc = run_nlu(["--expect", "yes_no"], "\n".join(lines) + "\n")
    assert proc.returncode == 0, proc.stderr
    out = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [o["text"] for o in out] == lines
    assert all(list(o) == ["text", "intent", "value", "confidence"] for o in out)
    assert [o["intent"] for o in out] == [
        "deny",
        "affirm",
        "affirm",
        "unsure",
        "repeat",
        "busy",
        "human",
        "wrong_number",
        "opt_out",
        "unsure",
        "affirm",
        "busy",
    ]
    assert [o["value"] for o in out[:4]] == [False, True, True, None]
    assert out[0]["confidence"] == 0.95
    assert out[9]["confidence"] == 0.0
    assert all(0.0 <= o["confidence"] <= 1.0 for o in out)
    assert "没有" in proc.stdout  # ensure_ascii=False
    # busy carries the callback time
    assert out[11] == {
        "text": "明天上午",
        "intent": "busy",
        "value": {"text": "明天上午", "delay_minutes": None, "day_offset": 1, "time": "09:00"},
        "confidence": 0.85,
    }


def test_temperature_values_are_float_celsius() -> None:
    proc = run_nlu(["--expect", "temperature"], "三十七度二\n37度5\n三十八点五\n二十度\n不知道\n你说啥\n")
    assert proc.returncode == 0, proc.stderr
    out = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [(o["intent"], o["value"]) for o in out] == [
        ("temperature", 37.2),
        ("temperature", 37.5),
        ("temperature", 38.5),
        ("unsure", None),
        ("unsure", None),
        ("repeat", None),
    ]
    assert isinstance(out[0]["value"], float)


def test_each_line_is_flushed_before_the_next_is_read() -> None:
    proc = subprocess.Popen(
        [OUTREACH, "nlu", "--expect", "yes_no"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        cwd=ROOT,
        env=clean_env(),
    )
    try:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write("没有\n")
        proc.stdin.flush()
        first = json.loads(proc.stdout.readline())  # would block forever without a per-line flush
        assert first["intent"] == "deny"
        proc.stdin.write("有\n")
        proc.stdin.flush()
        assert json.loads(proc.stdout.readline())["intent"] == "affirm"
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_choice_with_options() -> None:
    proc = run_nlu(
        ["--expect", "choice", "--option", "wuhan=武汉,湖北", "--option", "beijing=北京"],
        "去了武汉\n北京\n上海\n",
    )
    assert proc.returncode == 0, proc.stderr
    assert [json.loads(line)["value"] for line in proc.stdout.splitlines()] == ["wuhan", "beijing", None]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--expect", "yesno"], "--expect 'yesno': expected one of yes_no, temperature, choice, free_text"),
        (["--expect", "choice", "--option", "beijing"], "--option 'beijing': expected KEY=phrase1,phrase2"),
    ],
)
def test_bad_arguments_exit_2_with_a_clear_message(args: list[str], message: str) -> None:
    proc = run_nlu(args, "没有\n")
    assert proc.returncode == 2
    assert message in proc.stderr
    assert proc.stdout == ""


def test_bad_nlu_config_exits_2_naming_the_key() -> None:
    proc = run_nlu(["--expect", "yes_no"], "没有\n", OUTREACH_NLU__ENGINE="watson")
    assert proc.returncode == 2
    assert "nlu.engine" in proc.stderr


def test_uses_the_configured_rasa_engine(fake_rasa: FakeRasa, tmp_path: Path) -> None:
    fake_rasa.replies["嗯"] = FakeRasa.parse_result(
        "嗯", "deny", 0.66
    )  # Rasa's (odd) answer proves it was asked
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"nlu:\n  engine: rasa\n  rasa_url: {fake_rasa.url}\n  timeout_s: 2\n", encoding="utf-8")
    proc = run_nlu(["--expect", "yes_no"], "嗯\n没有\n", OUTREACH_CONFIG=str(cfg))
    assert proc.returncode == 0, proc.stderr
    out = [json.loads(line) for line in proc.stdout.splitlines()]
    assert out[0] == {"text": "嗯", "intent": "deny", "value": False, "confidence": 0.66}
    assert out[1]["intent"] == "deny"  # no scripted reply: Rasa answers 500, the built-in NLU answers
    assert "rasa NLU failed" in proc.stderr
    assert [r["json"] for r in fake_rasa.requests] == [{"text": "嗯"}, {"text": "没有"}]


def test_topic_gives_the_not_an_answer_intents() -> None:
    from typer.testing import CliRunner

    from outreach.cli import app

    res = CliRunner().invoke(app, ["nlu", "--expect", "yes_no", "--topic", "identity"],
                             input="我是他女儿\n稍等，我去叫他\n是我\n你是机器人吗\n")
    assert res.exit_code == 0, res.output
    got = [(j["intent"], j["value"]) for j in map(json.loads, res.stdout.splitlines())]
    assert got == [("self_relative", "女儿"), ("hold_on", None), ("self_resident", None), ("ask_bot", None)]
    res = CliRunner().invoke(app, ["nlu", "--expect", "yes_no", "--topic", "weather"], input="是\n")
    assert res.exit_code == 2 and "--topic 'weather'" in res.output
