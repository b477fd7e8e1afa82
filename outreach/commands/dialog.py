"""`outreach dialog check FILE` and `outreach dialog try FILE`: validate and try screening scripts."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, TextIO

import typer

from dialogs.script import Script, ScriptError, check_script, load_script
from dialogs.types import Action, Dtmf, End, Event, HangUp, Listen, NoInput, Say, ScreeningResult, Utterance
from outreach.config import script_vars
from outreach.context import fail, get_ctx

app = typer.Typer(help="Check and try screening scripts.", no_args_is_help=True)

DEFAULT_CONTACT: dict[str, Any] = {"name": "张伟", "community": "幸福里社区", "address": "幸福里3号楼2单元", "arrival_date": "3月5日"}
_DTMF_KEYS = set("0123456789*#")


@app.command("check")
def check(
    ctx: typer.Context,
    file: Path = typer.Argument(..., help="Script YAML file."),
    max_prompt_s: float | None = typer.Option(
        None, "--max-prompt-s", min=1.0, help="Warn about prompts longer than this (default: the script's settings.max_prompt_s, 8 s)."
    ),
    no_audio: bool = typer.Option(False, "--no-audio", help="Skip rendering the prompts to check their length."),
) -> None:
    """Validate a script: prints one 'file:line: message' per problem; exit 0 if sound, 2 if not.

    Also renders every prompt with the offline voice (at the configured rate) and warns about prompts
    whose audio is longer than the limit (warnings do not change the exit status).
    """
    issues = check_script(file)
    if issues:
        for issue in issues:
            typer.echo(str(issue), err=True)
        typer.echo(f"{len(issues)} problem(s) in {file}", err=True)
        raise typer.Exit(2)
    script = load_script(file).with_vars(script_vars(get_ctx(ctx).config()))
    warnings = [] if no_audio else _prompt_length_warnings(ctx, script, max_prompt_s)
    for w in warnings:
        typer.echo(str(w), err=True)
    print(f"ok: {file}: {len(script.nodes)} nodes, fields: {', '.join(script.fields)}, {len(script.rules)} rules"
          + (f"; {len(warnings)} long prompt(s)" if warnings else ""))


def _prompt_length_warnings(ctx: typer.Context, script: Script, limit_s: float | None) -> list[Any]:
    """Render each prompt once (for the example contact) with espeak-ng and measure it."""
    import asyncio

    from tts.audio import duration_s
    from tts.base import TtsError
    from tts.espeak import EspeakEngine

    cfg = get_ctx(ctx).config().tts
    engine = EspeakEngine(voice=cfg.espeak_voice, rate=cfg.rate, pitch=cfg.pitch)
    texts = sorted({script.render(t, DEFAULT_CONTACT) for _, _, t in script.prompt_sources()})

    async def measure() -> dict[str, float]:
        sem = asyncio.Semaphore(4)

        async def one(text: str) -> tuple[str, float | None]:
            async with sem:
                try:
                    return text, duration_s(await engine.synthesize(text))
                except TtsError as exc:
                    typer.echo(f"warning: prompt lengths not checked for {text!r}: {exc}", err=True)
                    return text, None

        done = await asyncio.gather(*(one(t) for t in texts))
        return {t: d for t, d in done if d is not None}

    return script.long_prompts(DEFAULT_CONTACT, asyncio.run(measure()), limit_s)


def parse_reply(line: str) -> list[Event]:
    """One typed line -> events: '#1' = key 1, '#37*5#' = keys 3 7 * 5 #, '' = silence, else speech."""
    text = line.strip()
    if not text:
        return [NoInput()]
    if text.startswith("#"):
        keys = text[1:] or "#"
        if set(keys) <= _DTMF_KEYS:
            return [Dtmf(k) for k in keys]
    return [Utterance(text)]


def _contact(raw: str | None) -> dict[str, Any]:
    if raw is None:
        return dict(DEFAULT_CONTACT)
    source = "--contact"
    text = raw
    path = Path(raw)
    if path.is_file():
        source = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            fail(f"{source}: cannot read the contact: {exc}")
    elif raw.endswith(".json") or "/" in raw:
        fail(f"--contact: contact file not found: {raw}")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        fail(f"{source}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}")
    if not isinstance(data, dict):
        fail(f"{source}: the contact must be a JSON object, got {type(data).__name__}")
    return data


def _show(actions: list[Action], out: TextIO) -> None:
    for a in actions:
        if isinstance(a, Say):
            print(f"bot> {a.text}", file=out)
        elif isinstance(a, Listen):
            keys = " ".join(f"{k}={v}" for k, v in a.dtmf) if a.expect != "temperature" else "digits, * = point, # = end"
            field = f" -> {a.field}" if a.field else ""
            print(f"     [listen {a.node}: {a.expect}{field}; keys: {keys or 'none'}]", file=out)
        elif isinstance(a, End):
            print(f"     [end: {a.outcome}]", file=out)


def _print_record(result: ScreeningResult, out: TextIO) -> None:
    print("--- record", file=out)
    print(f"outcome: {result.outcome}", file=out)
    print(f"risk: {result.risk}" + (f" ({'; '.join(result.reasons)})" if result.reasons else ""), file=out)
    print(f"reminder_needed: {'yes' if result.reminder_needed else 'no'}", file=out)
    print(f"escalate_human: {'yes' if result.escalate_human else 'no'}", file=out)
    if result.opt_out:
        print("opt_out: yes (do not call again)", file=out)
    if result.callback_hint:
        print(f"callback: {json.dumps(result.callback_hint, ensure_ascii=False)}", file=out)
    print("answers:", file=out)
    for name, a in result.answers.items():
        flag = "  UNCERTAIN" if a.uncertain else ""
        print(f"  {name} = {json.dumps(a.value, ensure_ascii=False)}  (said {a.raw!r}, {a.nlu}/{a.intent}, confidence {a.confidence:.2f}){flag}", file=out)


def summary(result: ScreeningResult) -> dict[str, Any]:
    """The one-line JSON of `dialog try --json`."""
    return {
        "outcome": result.outcome,
        "risk": result.risk,
        "reasons": list(result.reasons),
        "answers": {k: a.value for k, a in result.answers.items()},
        "uncertain": result.uncertain,
    }


def converse(script: Script, session: Any, lines: TextIO, out: TextIO, *, interactive: bool) -> ScreeningResult:
    """Drive a session from typed lines until it ends; EOF is a hang-up."""
    _show(session.start(), out)
    while not session.done:
        if interactive:
            print("you> ", end="", file=out, flush=True)
        line = lines.readline()
        if line == "":
            if interactive:
                print(file=out)
            events: list[Event] = [HangUp()]
        else:
            if not interactive:
                print(f"you> {line.rstrip()}", file=out)
            events = parse_reply(line)
        for event in events:
            _show(session.handle(event), out)
            if session.done:
                break
    result: ScreeningResult = session.result
    return result


@app.command("try")
def try_script(
    ctx: typer.Context,
    file: Path = typer.Argument(..., help="Script YAML file."),
    contact: str | None = typer.Option(None, "--contact", help="Contact as a JSON object, or a JSON file."),
    as_json: bool = typer.Option(False, "--json", help="End with one JSON line: outcome, risk, reasons, answers, uncertain."),
) -> None:
    """Talk to a script in the terminal: type replies, '#1' presses key 1, an empty line is silence, EOF hangs up.

    Replies can also be piped in, one per line.
    """
    try:
        script = load_script(file)
    except ScriptError as exc:
        for issue in exc.issues:
            typer.echo(str(issue), err=True)
        raise typer.Exit(2) from None
    person = _contact(contact)
    cfg = get_ctx(ctx).config()
    script = script.with_vars(script_vars(cfg))
    from dialogs.nlu import make_nlu

    nlu = make_nlu(cfg.nlu)
    session = script.new_session(person, nlu, low_confidence=cfg.nlu.low_confidence)
    result = converse(script, session, sys.stdin, sys.stdout, interactive=sys.stdin.isatty())
    _print_record(result, sys.stdout)
    if as_json:
        print(json.dumps(summary(result), ensure_ascii=False))
