"""Running one bad-input case through the real CLI on a fresh copy of a seeded store, and judging it.

A case is run in-process (typer's CliRunner) in its own folder (the working directory during the run), on a
byte copy of a store seeded once (residents, a finished campaign with screenings and escalations). The
verdict is one of:

- ``clear``: the command failed with the expected exit code and a message naming the place;
- ``accepted``: the command succeeded as designed (e.g. bad rows went to the rejects file);
- ``crash``: a traceback or an unexpected exception reached the user;
- ``hang``: it ran past the time limit (or ran out of memory);
- ``wrong``: anything else: a silent success where an error was due, a message that does not name the
  place, an unmasked number in the output or the log, or a store changed by a failed command.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import signal
import sqlite3
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

#: Numbers that appear in the seed store and in case inputs; none may appear in clear in any output.
SECRET_MOBILES = ("13800138000", "13900139000", "13700137000", "13600136000", "15012345678")
SECRET_LANDLINE_SUBSCRIBERS = ("65529988",)
SECRET_IDS = ("11010519491231002X", "440524198801010013")
TIME_LIMIT_S = 30


@dataclass
class Case:
    """One bad input. `args` may use {dir} (the case folder) and {db} (the case store's URL).

    `files` maps a name in the case folder to bytes, text or a function that writes the file.
    `code` is the expected exit code; `expect` the texts the output must contain (naming the place).
    `changes_store`: an accepted case may change the store (an import that imports the good rows).
    """

    id: str
    args: list[str]
    code: int = 2
    expect: list[str] = field(default_factory=list)
    files: dict[str, bytes | str | Callable[[Path], None]] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    changes_store: bool = False
    absent: list[str] = field(default_factory=list)  # files that must not exist afterwards (globs)
    check: Callable[[Path, str], str | None] | None = None  # extra check: (case dir, output) -> problem

    @property
    def accepted(self) -> bool:
        return self.code == 0

    @property
    def kind(self) -> str:
        """The corpus category: contact files, config, scripts, or other CLI arguments."""
        head = self.id.split("-", 1)[0]
        return {"import": "contacts", "config": "config", "script": "scripts"}.get(head, "cli")


@dataclass
class Outcome:
    verdict: str
    problems: list[str]
    output: str
    exit_code: int | None


def _forms(mobile: str) -> list[str]:
    return [mobile, f"{mobile[:3]} {mobile[3:7]} {mobile[7:]}", f"{mobile[:3]}-{mobile[3:7]}-{mobile[7:]}"]


_SECRET_FORMS = [f for m in SECRET_MOBILES for f in _forms(m)] + [
    f for s in SECRET_LANDLINE_SUBSCRIBERS for f in (s, f"{s[:4]} {s[4:]}", f"{s[:4]}-{s[4:]}")
] + [i for i in SECRET_IDS] + [i[3:14] for i in SECRET_IDS]


def unmasked_numbers(text: str) -> list[str]:
    """The secret numbers shown in clear in `text`."""
    return [f for f in _SECRET_FORMS if f in text]


def store_digest(path: Path, *, skip_tables: tuple[str, ...] = ()) -> str:
    """A digest of every row of every table of a SQLite store ('' when there is no file), but the rows of
    `skip_tables`."""
    if not path.exists():
        return ""
    h = hashlib.sha256()
    skip = tuple(f'INSERT INTO "{t}"' for t in skip_tables)
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        for line in con.iterdump():
            if skip and line.startswith(skip):
                continue
            h.update(line.encode())
    except sqlite3.DatabaseError:
        h.update(path.read_bytes())
    finally:
        con.close()
    return h.hexdigest()


class LogCapture(logging.Handler):
    """Every log record of a case, as the tool's own handlers would write it (numbers masked)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        from outreach.logsetup import MaskingFilter

        self.addFilter(MaskingFilter())
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@contextmanager
def captured_logs() -> Iterator[LogCapture]:
    """The root logger's records from INFO up go only to the capture while the block runs (handlers that
    earlier CLI runs left behind, on streams closed since, are set aside)."""
    capture = LogCapture()
    root = logging.getLogger()
    old_level, old_handlers = root.level, root.handlers[:]
    root.handlers = [capture]
    root.setLevel(logging.INFO)
    try:
        yield capture
    finally:
        root.handlers = old_handlers
        root.setLevel(old_level)


class _Timeout(BaseException):
    pass


@contextmanager
def _time_limit(seconds: int) -> Iterator[None]:
    def on_alarm(_sig: int, _frame: FrameType | None) -> None:
        raise _Timeout()

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _subst(value: str, folder: Path, db: str) -> str:
    return value.replace("{dir}", str(folder)).replace("{db}", db)


def prepare(case: Case, folder: Path, seed_db: Path) -> str:
    """Lay out the case folder: the store copy and the case's files; returns the store URL."""
    folder.mkdir(parents=True, exist_ok=True)
    store = folder / "store.db"
    shutil.copyfile(seed_db, store)
    for name, content in case.files.items():
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if callable(content):
            content(target)
        elif isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content, encoding="utf-8")
    return f"sqlite:///{store}"


def run_case(case: Any, folder: Path, seed_db: Path, *, time_limit_s: int = TIME_LIMIT_S) -> Outcome:
    """Run one case of any kind (CLI, HTTP request, network frames) in `folder` on a copy of `seed_db`."""
    if case.kind == "http":
        from tests.bad_inputs.http import run_http_case

        with _time_limit(time_limit_s):
            try:
                return run_http_case(case, folder, seed_db)
            except _Timeout:
                return Outcome("hang", [f"ran past {time_limit_s} s"], "", None)
    if case.kind in ("audiosocket", "ami"):
        from tests.bad_inputs.frames import run_frame_case

        return run_frame_case(case, time_limit_s=time_limit_s)
    return run_cli_case(case, folder, seed_db, time_limit_s=time_limit_s)


def run_cli_case(case: Case, folder: Path, seed_db: Path, *, time_limit_s: int = TIME_LIMIT_S) -> Outcome:
    """Run one CLI case in `folder` (created) on a copy of `seed_db`; the verdict and what went wrong."""
    from typer.testing import CliRunner

    from outreach.cli import app

    db = prepare(case, folder, seed_db)
    store = folder / "store.db"
    before = store_digest(store)
    args = [_subst(a, folder, db) for a in case.args]
    env = {k: _subst(v, folder, db) for k, v in case.env.items()}
    env.setdefault("OUTREACH_CONFIG", "")
    cwd = os.getcwd()
    problems: list[str] = []
    exit_code: int | None = None
    output = ""
    verdict = ""
    try:
        os.chdir(folder)
        with _time_limit(time_limit_s):
            result = CliRunner().invoke(app, args, env=env, catch_exceptions=True)
        exit_code = result.exit_code
        output = result.output
        exc = result.exception
        if exc is not None and not isinstance(exc, SystemExit):
            if isinstance(exc, MemoryError):
                verdict = "hang"
            tb = "".join(traceback.format_exception(exc))
            output += "\n[uncaught] " + tb
            verdict = verdict or "crash"
            problems.append(f"uncaught {type(exc).__name__}: {str(exc)[:200]}")
    except _Timeout:
        verdict = "hang"
        problems.append(f"ran past {time_limit_s} s")
    except MemoryError:
        verdict = "hang"
        problems.append("ran out of memory")
    finally:
        os.chdir(cwd)
    if verdict:
        return Outcome(verdict, problems, output, exit_code)
    if "Traceback (most recent call last)" in output:
        problems.append("a traceback reached the user")
        return Outcome("crash", problems, output, exit_code)
    logs = ""
    for log in folder.rglob("*.log"):
        try:
            logs += log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            pass
    leaked = unmasked_numbers(output) + [f"(log) {x}" for x in unmasked_numbers(logs)]
    if leaked:
        problems.append(f"unmasked numbers: {', '.join(leaked)}")
    if exit_code != case.code:
        problems.append(f"exit code {exit_code}, expected {case.code}")
    for text in case.expect:
        if _subst(text, folder, db) not in output:
            problems.append(f"output does not name {text!r}")
    if not case.changes_store and store_digest(store) != before:
        problems.append("the store changed")
    for pattern in case.absent:
        left = [str(p.relative_to(folder)) for p in folder.glob(pattern)]
        if left:
            problems.append(f"left behind: {', '.join(left)}")
    return finish_case(case, problems, folder, output, exit_code, checked=output)


_WS = re.compile(r"\s+")


def finish_case(case: Any, problems: list[str], folder: Path, output: str, code: int | None, *, checked: Any) -> Outcome:
    """The outcome of any kind of case: its own extra check (given `checked`: the output, a response, ...) added
    to the problems found; none -> clear, or accepted as designed when the case says so."""
    if case.check is not None:
        extra = case.check(folder, checked)
        if extra:
            problems.append(extra)
    if problems:
        return Outcome("wrong", problems, output, code)
    return Outcome("accepted" if case.accepted else "clear", [], output, code)


def one_line(text: str, limit: int = 300) -> str:
    return _WS.sub(" ", text).strip()[:limit]


VERDICTS = ("clear", "accepted", "crash", "hang", "wrong")


def summary(outcomes: dict[str, Outcome], kinds: dict[str, str] | None = None) -> dict[str, Any]:
    """Counts per verdict, overall and (given each case's kind) per category."""
    counts: dict[str, int] = dict.fromkeys(VERDICTS, 0)
    by_kind: dict[str, dict[str, int]] = {}
    for case_id, o in outcomes.items():
        counts[o.verdict] += 1
        if kinds is not None:
            k = by_kind.setdefault(kinds[case_id], {"cases": 0, **dict.fromkeys(VERDICTS, 0)})
            k["cases"] += 1
            k[o.verdict] += 1
    out: dict[str, Any] = {"cases": len(outcomes), **counts}
    if kinds is not None:
        out["by_kind"] = by_kind
    return out
