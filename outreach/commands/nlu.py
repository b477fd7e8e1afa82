"""`outreach nlu`: understand replies read from stdin, one JSON object per line on stdout."""

from __future__ import annotations

import json
import sys
from typing import Any

import typer

from outreach.context import fail, get_ctx

_EXPECT_CHOICES = ("yes_no", "temperature", "choice", "free_text")


def _parse_options(raw: list[str]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    out: list[tuple[str, tuple[str, ...]]] = []
    for item in raw:
        key, sep, phrases = item.partition("=")
        if not sep or not key.strip():
            fail(f"--option {item!r}: expected KEY=phrase1,phrase2")
        out.append((key.strip(), tuple(p.strip() for p in phrases.split(",") if p.strip())))
    return tuple(out)


def _json_line(text: str, intent: str, value: Any, confidence: float) -> str:
    return json.dumps(
        {"text": text, "intent": intent, "value": value, "confidence": round(confidence, 3)},
        ensure_ascii=False,
    )


def nlu_command(
    ctx: typer.Context,
    expect: str = typer.Option(
        ..., "--expect", help="What the question expects: yes_no, temperature, choice or free_text."
    ),
    option: list[str] = typer.Option(
        [], "--option", help="For --expect choice: KEY=phrase1,phrase2 (repeat for each option)."
    ),
    topic: str = typer.Option(
        "", "--topic",
        help="What the question is about: identity, symptoms, temperature, travel, contact, second_test, generic "
        "(enables the 'not an answer' intents: hold_on, ack, other_answer, self_resident, self_relative, ask_bot, scam).",
    ),
) -> None:
    """Read one reply per line from stdin; print {"text","intent","value","confidence"} per line.

    Intents for yes_no: affirm (value true), deny (false), unsure, repeat, busy (value: callback time or
    null), human, wrong_number, opt_out. For temperature: temperature (value °C) or unsure, or a global
    intent. With --topic, also the "not an answer" intents (self_relative: value is the relation word).
    A reply that fits nothing is reported as unsure with confidence 0. Uses nlu.engine from the config
    (builtin unless configured otherwise).
    """
    if expect not in _EXPECT_CHOICES:
        fail(f"--expect {expect!r}: expected one of {', '.join(_EXPECT_CHOICES)}")
    from dialogs.nlu import make_nlu
    from dialogs.nlu.types import TOPICS, Expectation

    if topic and topic not in TOPICS:
        fail(f"--topic {topic!r}: expected one of {', '.join(TOPICS)}")

    options = _parse_options(option)
    if expect == "choice" and not options:
        fail("--expect choice needs at least one --option KEY=phrase1,phrase2")
    engine = make_nlu(get_ctx(ctx).config().nlu)
    expectation = Expectation(expect, options, topic=topic)
    out = sys.stdout
    for line in sys.stdin:
        text = line.rstrip("\r\n")
        res = engine.parse(text, expectation)
        intent, value, confidence = res.intent, res.value, res.confidence
        if intent == "no_match":
            intent, value = "unsure", None
        out.write(_json_line(text, intent, value, confidence) + "\n")
        out.flush()
    close = getattr(engine, "close", None)
    if callable(close):
        close()


def register(app: typer.Typer) -> None:
    """Add the top-level `outreach nlu` command."""
    app.command("nlu")(nlu_command)
