"""`outreach purge --older-than DAYS [--dry-run]`: delete kept answer audio (the place retention rules go)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import typer

from outreach.context import fail, get_ctx

log = logging.getLogger(__name__)

AUDIO_SUFFIXES = (".wav", ".wav.part")


@dataclass(frozen=True, slots=True)
class PurgeReport:
    files: int
    bytes: int
    dirs_removed: int


def purge_answer_audio(audio_dir: Path, older_than_days: float, *, dry_run: bool = False, now: float | None = None) -> PurgeReport:
    """Delete answer audio files under `audio_dir` last modified more than `older_than_days` ago.

    Only `*.wav` files (and interrupted `*.wav.part` writes) are touched; empty day folders left behind
    are removed. Records that referenced a deleted file keep their text answers.
    """
    if older_than_days < 0:
        raise ValueError(f"--older-than must be >= 0 days, got {older_than_days}")
    cutoff = (time.time() if now is None else now) - older_than_days * 86400
    files = size = dirs = 0
    if not audio_dir.is_dir():
        return PurgeReport(0, 0, 0)
    for path in sorted(audio_dir.rglob("*")):
        if not path.is_file() or not path.name.endswith(AUDIO_SUFFIXES):
            continue
        st = path.stat()
        if st.st_mtime >= cutoff:
            continue
        files += 1
        size += st.st_size
        if not dry_run:
            path.unlink()
    if not dry_run:
        for d in sorted((p for p in audio_dir.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
            if not any(d.iterdir()):
                d.rmdir()
                dirs += 1
    return PurgeReport(files, size, dirs)


def register(app: typer.Typer) -> None:
    @app.command("purge")
    def purge(
        ctx: typer.Context,
        older_than: float = typer.Option(..., "--older-than", help="Delete kept answer audio older than DAYS.", metavar="DAYS"),
        dry_run: bool = typer.Option(False, "--dry-run", help="Only report what would be deleted."),
    ) -> None:
        """Delete kept answer audio (config turn.audio_dir) older than DAYS."""
        if older_than < 0:
            fail(f"--older-than must be 0 or more days, got {older_than}")
        audio_dir = Path(get_ctx(ctx).config().turn.audio_dir)
        try:
            report = purge_answer_audio(audio_dir, older_than, dry_run=dry_run)
        except OSError as exc:
            fail(f"cannot purge {audio_dir}: {exc}", code=1)
            return
        verb = "would delete" if dry_run else "deleted"
        mb = report.bytes / 1_000_000
        print(f"{verb} {report.files} answer audio file(s), {mb:.1f} MB, older than {older_than:g} day(s) in {audio_dir}")
        log.info("purge: %s %d files (%d bytes) under %s", verb, report.files, report.bytes, audio_dir)
