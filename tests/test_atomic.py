"""The one atomic write (common/atomic.py): a file appears complete or not at all, nothing is left behind on a
failure or a kill -9, and every writer of published files (exports, prompt audio, call recordings) uses it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from common.atomic import atomic_file, atomic_write_bytes, sweep_stale_parts
from dialogs.runner import write_wav as write_answer_wav
from results import exports
from tts.audio import read_wav
from tts.audio import write_wav as write_prompt_wav

ROOT = Path(__file__).resolve().parent.parent


def test_write_replaces_the_file_and_leaves_nothing_else(tmp_path: Path) -> None:
    target = tmp_path / "a.bin"
    target.write_bytes(b"old")
    atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin"]


def test_a_failing_block_keeps_the_old_file_and_leaves_no_part(tmp_path: Path) -> None:
    target = tmp_path / "a.csv"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="disk gone"), atomic_file(target) as f:
        f.write(b"half")
        raise RuntimeError("disk gone")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv"]


def test_before_publish_can_veto_the_file(tmp_path: Path) -> None:
    def veto() -> None:
        raise PermissionError("audit failed")

    with pytest.raises(PermissionError), atomic_file(tmp_path / "new.xlsx", before_publish=veto) as f:
        f.write(b"data")
    assert list(tmp_path.iterdir()) == []


def test_missing_folder_is_an_error_unless_parents_is_asked_for(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        atomic_write_bytes(tmp_path / "nosuch" / "a.bin", b"x")
    assert list(tmp_path.iterdir()) == []
    atomic_write_bytes(tmp_path / "made" / "a.bin", b"x", parents=True)
    assert (tmp_path / "made" / "a.bin").read_bytes() == b"x"


def test_a_killed_writer_leaves_nothing_behind(tmp_path: Path) -> None:
    target = tmp_path / "export.csv"
    code = textwrap.dedent(f"""
        import sys, time
        from common.atomic import atomic_file
        with atomic_file({str(target)!r}) as f:
            f.write(b"x" * 100000)
            f.flush()
            print("writing", flush=True)
            time.sleep(600)
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, env=env, cwd=tmp_path)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"writing"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    left = list(tmp_path.iterdir())
    # O_TMPFILE: nothing at all; on a file system without it the hidden part goes on the next write (below)
    atomic_write_bytes(target, b"done")
    assert [p.name for p in tmp_path.iterdir()] == ["export.csv"], left


def test_parts_of_dead_writers_are_swept_and_live_ones_kept(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    target = tmp_path / "a.wav"
    stale = tmp_path / f".a.wav.{dead.pid}.0badc0de.part"
    mine = tmp_path / f".a.wav.{os.getpid()}.0badc0de.part"
    other = tmp_path / f".b.wav.{dead.pid}.0badc0de.part"
    for p in (stale, mine, other):
        p.write_bytes(b"partial")
    sweep_stale_parts(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([mine.name, other.name])


def test_every_published_file_goes_through_it(tmp_path: Path) -> None:
    """Prompt audio, answer recordings and exports: complete files, no hidden leftovers."""
    pcm = b"\x01\x00" * 1600
    write_prompt_wav(tmp_path / "prompts" / "p.wav", pcm)
    write_answer_wav(tmp_path / "answers" / "a.wav", pcm)
    table = exports.Table("尝试", ["姓名", "备注"], [["=HYPERLINK(1)", "家属 13800138000"]], mask_free_text=True)
    exports.write_csv(tmp_path / "e.csv", table)
    exports.write_xlsx(tmp_path / "e.xlsx", [table])
    assert read_wav(tmp_path / "prompts" / "p.wav") == pcm
    assert read_wav(tmp_path / "answers" / "a.wav") == pcm
    names = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert names == ["answers/a.wav", "e.csv", "e.xlsx", "prompts/p.wav"]
    assert "13800138000" not in (tmp_path / "e.csv").read_text(encoding="utf-8-sig")
