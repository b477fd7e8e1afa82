"""The one atomic file write: a file appears under its name only once it is complete, or not at all.

The data goes to an anonymous file in the target's folder (Linux ``O_TMPFILE``), fsynced and linked in under a
hidden name that is then renamed over the target, so a crash or ``kill -9`` while writing leaves nothing behind.
Where the file system has no ``O_TMPFILE`` (or refuses it), the data goes to a hidden
``.NAME.PID.TOKEN.part`` in the same folder; a failed write removes it, and the next write to the same name
removes those whose writer process is gone. Readers see the old file or the complete new one.

Every writer of files the tool publishes (exports, prompt audio and its metadata, call recordings) uses this.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from common.process import pid_alive


def part_name(path: Path) -> Path:
    """The hidden name a write to `path` uses before it is renamed into place."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.part")


def _glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


def sweep_stale_parts(path: Path) -> None:
    """Remove the hidden partial files that killed writers of `path` left behind (their process is gone)."""
    prefix = f".{path.name}."
    for part in path.parent.glob(f"{_glob_escape(prefix)}*.part"):
        pid = part.name[len(prefix) : -len(".part")].split(".", 1)[0]
        if pid.isdigit() and not pid_alive(int(pid)):
            part.unlink(missing_ok=True)


def _materialize(f: BinaryIO, part: Path) -> None:
    """Give the anonymous file `f` the name `part`: a hard link where the kernel allows it, else a copy."""
    part.unlink(missing_ok=True)
    try:
        os.link(f"/proc/self/fd/{f.fileno()}", part)
        return
    except OSError:  # no /proc, or a sandbox that refuses links across its mounts: copy (briefly visible)
        pass
    f.seek(0)
    with part.open("xb") as dst:
        shutil.copyfileobj(f, dst, 1 << 20)
        dst.flush()
        os.fsync(dst.fileno())


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on a directory; the rename itself is still atomic
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_file(path: str | os.PathLike[str], *, parents: bool = False,
                before_publish: Callable[[], None] | None = None) -> Iterator[BinaryIO]:
    """A binary file that appears under `path` only once the `with` block has completed without an error.

    `parents`: create missing folders first (otherwise a missing folder is the caller's error, OSError).
    `before_publish` runs after the data is written and fsynced and before the file appears; if it (or the
    block) raises, no file appears and nothing is left behind.
    """
    out = Path(path)
    if parents:
        out.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale_parts(out)
    part = part_name(out)
    anonymous = hasattr(os, "O_TMPFILE")
    fd = -1
    if anonymous:
        try:
            fd = os.open(out.parent, os.O_TMPFILE | os.O_RDWR, 0o644)
        except OSError:
            anonymous = False
    if not anonymous:
        fd = os.open(part, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o644)
    f = os.fdopen(fd, "w+b")
    try:
        yield f
        f.flush()
        os.fsync(f.fileno())
        if before_publish is not None:
            before_publish()
        if anonymous:
            _materialize(f, part)
        os.replace(part, out)
        _fsync_dir(out.parent)
    finally:
        f.close()
        part.unlink(missing_ok=True)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, *, parents: bool = False) -> None:
    """Write `data` to `path` atomically (see `atomic_file`)."""
    with atomic_file(path, parents=parents) as f:
        f.write(data)
