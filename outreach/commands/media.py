"""`outreach purge --older-than DAYS [--dry-run]`: delete kept answer audio (the place retention rules go)."""

from __future__ import annotations

import errno
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import typer

from outreach.context import fail, get_ctx

log = logging.getLogger(__name__)

AUDIO_SUFFIXES = (".wav",)


def _is_audio(name: str) -> bool:
    """A WAV file, or the hidden part of an interrupted WAV write (common.atomic: `.NAME.wav.PID.TOKEN.part`)."""
    return name.endswith(AUDIO_SUFFIXES) or (name.startswith(".") and name.endswith(".part") and ".wav." in name)

# An empty folder touched this recently may be one a call just created for the file it is writing.
FRESH_DIR_S = 300.0


@dataclass(frozen=True, slots=True)
class PurgeReport:
    files: int
    bytes: int
    dirs_removed: int
    refs: tuple[str, ...] = ()  # the purged files as records reference them (relative to audio_dir)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return math.inf


def purge_answer_audio(audio_dir: Path, older_than_days: float, *, dry_run: bool = False, now: float | None = None) -> PurgeReport:
    """Delete answer audio files under `audio_dir` last modified more than `older_than_days` ago.

    Only `*.wav` files (and the hidden parts of interrupted WAV writes) are touched; empty folders left behind are
    removed if they were older than the cutoff and than `FRESH_DIR_S` seconds before the purge began (a
    call may have just created one for the file it is about to write). The report lists the files as
    records reference them, so the caller can mark those answers purged first (results.audio.forget_audio).
    """
    if not math.isfinite(older_than_days) or older_than_days < 0:
        raise ValueError(f"--older-than must be a number of days >= 0, got {older_than_days}")
    t_now = time.time() if now is None else now
    cutoff = t_now - older_than_days * 86400
    dir_cutoff = min(cutoff, t_now - FRESH_DIR_S)
    files = size = dirs = 0
    refs: list[str] = []
    if not audio_dir.is_dir():
        return PurgeReport(0, 0, 0)
    entries = sorted(audio_dir.rglob("*"))
    # Folders that were already old before this purge touched them (deleting files updates a folder's mtime).
    old_dirs = [d for d in entries if _mtime(d) < dir_cutoff and d.is_dir()]
    for path in entries:
        if not _is_audio(path.name) or not path.is_file():
            continue
        try:
            st = path.stat()
        except FileNotFoundError:
            continue  # renamed or deleted meanwhile (a .part file that became its .wav)
        if st.st_mtime >= cutoff:
            continue
        files += 1
        size += st.st_size
        refs.append(path.relative_to(audio_dir).as_posix())
        if not dry_run:
            path.unlink(missing_ok=True)
    if not dry_run:
        for d in sorted(old_dirs, key=lambda p: len(p.parts), reverse=True):
            try:
                if any(d.iterdir()):
                    continue
                d.rmdir()
            except FileNotFoundError:
                continue  # gone meanwhile
            except OSError as exc:
                if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                    continue  # a call wrote a file into it meanwhile
                raise
            dirs += 1
    return PurgeReport(files, size, dirs, tuple(refs))


def register(app: typer.Typer) -> None:
    @app.command("purge")
    def purge(
        ctx: typer.Context,
        older_than: float = typer.Option(..., "--older-than", help="Delete kept answer audio older than DAYS.", metavar="DAYS"),
        dry_run: bool = typer.Option(False, "--dry-run", help="Only report what would be deleted."),
    ) -> None:
        """Delete kept answer audio (config turn.audio_dir) older than DAYS."""
        if not math.isfinite(older_than) or older_than < 0:
            fail(f"--older-than must be a number of days, 0 or more, got {older_than}")
        app_ctx = get_ctx(ctx)
        audio_dir = Path(app_ctx.config().turn.audio_dir)
        now = time.time()
        try:
            report = purge_answer_audio(audio_dir, older_than, dry_run=True, now=now)
            marked = 0
            if not dry_run and report.refs:
                from results.audio import forget_audio

                # Records first: a crash between the two steps leaves files nobody references, which the
                # next purge deletes, never a record naming a file that is gone.
                marked = forget_audio(app_ctx.store(), report.refs) if app_ctx.store_exists() else 0
                report = purge_answer_audio(audio_dir, older_than, now=now)
        except OSError as exc:
            fail(f"cannot purge {audio_dir}: {exc}", code=1)
            return
        verb = "would delete" if dry_run else "deleted"
        mb = report.bytes / 1_000_000
        print(f"{verb} {report.files} answer audio file(s), {mb:.1f} MB, older than {older_than:g} day(s) in {audio_dir}")
        if not dry_run and report.files:
            print(f"marked the audio of {marked} screening record(s) as purged")
        log.info("purge: %s %d files (%d bytes) under %s", verb, report.files, report.bytes, audio_dir)
