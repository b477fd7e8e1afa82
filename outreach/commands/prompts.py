"""`outreach prompts render|check|play`: pre-render voice prompts into the TTS cache and listen to them."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import typer

from common.audio import TELEPHONE_RATE
from outreach.config import script_vars
from outreach.context import fail, get_ctx
from tts.audio import AudioFormatError, duration_s, write_wav
from tts.base import TtsEngine, TtsError
from tts.cache import (
    PromptCache,
    RenderReport,
    make_engine,
    missing_prompts,
    render_all,
    static_prompts,
    template_prompts,
)

app = typer.Typer(help="Voice prompts: render them into the TTS cache before a campaign, listen to one.")

ENGINES = ("espeak", "edge")


def _engine(ctx: typer.Context, engine: str | None) -> tuple[TtsEngine, PromptCache]:
    cfg = get_ctx(ctx).config().tts
    if engine is not None and engine not in ENGINES:
        fail(f"--engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if engine is not None:
        cfg = cfg.model_copy(update={"engine": engine})
    try:
        eng = make_engine(cfg)
    except TtsError as exc:
        fail(f"tts settings: {exc}")
        raise  # unreachable, fail() exits
    return eng, PromptCache(cfg.cache_dir)


def _script_texts(script: Path, variables: dict[str, str] | None = None) -> tuple[list[str], int]:
    """(static prompts to render, number of per-contact templates) of a script file."""
    try:
        from dialogs.script import ScriptError, load_script
    except ImportError as exc:  # pragma: no cover - only in a build without dialogs
        fail(f"scripts cannot be loaded in this build: {exc}")
        raise
    try:
        loaded = load_script(script)
    except ScriptError as exc:
        fail(str(exc))
        raise
    if variables:
        loaded = loaded.with_vars(variables)
    return static_prompts(loaded), len(template_prompts(loaded))


def _collect(ctx: typer.Context, script: Path | None, texts: list[str]) -> tuple[list[str], int]:
    if script is None and not texts:
        fail("give --script FILE or at least one --text TEXT")
    prompts: list[str] = []
    templated = 0
    if script is not None:
        prompts, templated = _script_texts(script, script_vars(get_ctx(ctx).config()))
    prompts.extend(texts)
    return prompts, templated


def _run_render(
    prompts: list[str], eng: TtsEngine, cache: PromptCache, concurrency: int | None, force: bool, bar: bool
) -> RenderReport:
    if not bar:
        return asyncio.run(render_all(prompts, eng, cache, concurrency=concurrency, force=force))
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("[bold]rendering[/bold]"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[last]}", style="dim"),
    ) as progress:
        task = progress.add_task("render", total=len(set(prompts)), last="")

        def tick(done: int, total: int, text: str, ok: bool) -> None:
            short = text if len(text) <= 24 else text[:23] + "…"
            progress.update(task, completed=done, total=total, last=("" if ok else "FAILED ") + short)

        return asyncio.run(render_all(prompts, eng, cache, tick, concurrency=concurrency, force=force))


@app.command("render")
def render(
    ctx: typer.Context,
    script: Path | None = typer.Option(None, "--script", help="Screening script whose prompts to render."),
    text: list[str] = typer.Option([], "--text", help="A prompt text to render (repeatable)."),
    engine: str | None = typer.Option(None, "--engine", help="espeak or edge (default: tts.engine)."),
    concurrency: int | None = typer.Option(None, "--concurrency", min=1, help="Renders at once (default: per engine)."),
    force: bool = typer.Option(False, "--force", help="Re-render prompts that are already cached."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Render every static prompt of a script (and/or given texts) into the prompt cache.

    Prompts that use a contact's fields (e.g. {name}) are rendered per contact before their calls.
    Exit status 1 if any prompt failed.
    """
    prompts, templated = _collect(ctx, script, text)
    eng, cache = _engine(ctx, engine)
    bar = not as_json and sys.stdout.isatty()
    report = _run_render(prompts, eng, cache, concurrency, force, bar)
    if as_json:
        data: dict[str, Any] = report.as_dict()
        data["cache_dir"] = str(cache.root)
        data["templated"] = templated
        print(json.dumps(data, ensure_ascii=False, indent=2))
    else:
        print(
            f"{eng.name}/{eng.voice}: {report.total} prompt(s): {report.rendered} rendered, "
            f"{report.cached} already cached, {len(report.failures)} failed -> {cache.root}"
        )
        if templated:
            print(f"{templated} prompt template(s) use contact fields; they are rendered per contact before calls")
        for f in report.failures:
            typer.echo(f"failed: {f.text!r}: {f.error}", err=True)
    if not report.ok:
        raise typer.Exit(1)


@app.command("check")
def check(
    ctx: typer.Context,
    script: Path | None = typer.Option(None, "--script", help="Screening script whose prompts to check."),
    text: list[str] = typer.Option([], "--text", help="A prompt text to check (repeatable)."),
    engine: str | None = typer.Option(None, "--engine", help="espeak or edge (default: tts.engine)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """List the static prompts that are not in the cache yet. Exit status 1 if any is missing."""
    prompts, _ = _collect(ctx, script, text)
    eng, cache = _engine(ctx, engine)
    missing = missing_prompts(prompts, eng, cache)
    if as_json:
        print(json.dumps({"engine": eng.name, "voice": eng.voice, "missing": missing}, ensure_ascii=False, indent=2))
    elif missing:
        print(f"{len(missing)} prompt(s) not rendered for {eng.name}/{eng.voice}:")
        for t in missing:
            print(f"  {t}")
    else:
        print(f"all prompts rendered for {eng.name}/{eng.voice}")
    if missing:
        raise typer.Exit(1)


@app.command("play")
def play(
    ctx: typer.Context,
    text: str = typer.Argument(..., help="The text to speak."),
    out: Path = typer.Option(..., "--out", help="WAV file to write (8 kHz mono, as callers hear it)."),
    engine: str | None = typer.Option(None, "--engine", help="espeak or edge (default: tts.engine)."),
) -> None:
    """Render one text (from the cache when it is there) into a WAV file for staff to listen to."""
    if not text.strip():
        fail("TEXT is empty")
    if not out.expanduser().parent.is_dir():
        fail(f"--out {out}: the folder {out.expanduser().parent} does not exist; create it first")
    eng, cache = _engine(ctx, engine)
    pcm = cache.get(eng, text)
    source = "cache"
    if pcm is None:
        source = eng.name
        try:
            pcm = asyncio.run(eng.synthesize(text))
        except TtsError as exc:
            fail(str(exc), code=1)
            raise
        try:
            cache.put(eng, text, pcm)
        except OSError as exc:  # the cache is a convenience here: still give staff their file
            typer.echo(f"warning: not stored in the prompt cache {cache.root}: {exc}", err=True)
    try:
        write_wav(out, pcm)
    except (OSError, AudioFormatError) as exc:
        fail(f"cannot write {out}: {exc}", code=1)
    print(f"wrote {out} ({duration_s(pcm):.2f} s, {TELEPHONE_RATE} Hz mono, from {source})")
