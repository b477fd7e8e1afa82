"""Issue 11 on both backends and at the edges the corpus does not reach: database errors and SQL echo never
show numbers, the same length limits on SQLite and PostgreSQL, config logging keys, the top-level error
handler, formula-safe CSV, killed exports, and the YAML loader's limits."""

from __future__ import annotations

import csv
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import text
from typer.testing import CliRunner

from dialogs import safeyaml
from outreach.cli import app
from results import exports
from results.cells import formula_safe
from results.donotcall import list_do_not_call
from results.limits import (
    ADDRESS_MAX,
    CAMPAIGN_NAME_MAX,
    COMMUNITY_MAX,
    NAME_MAX,
    REASON_MAX,
    SOURCE_FILE_MAX,
)
from results.models import Campaign, DoNotCall, Resident
from results.residents import list_residents
from results.store import Store

ROOT = Path(__file__).resolve().parent.parent


def cli(*args: str, cwd: Path | None = None) -> tuple[int, str]:
    old = os.getcwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        res = CliRunner().invoke(app, list(args), env={"OUTREACH_CONFIG": ""})
    finally:
        os.chdir(old)
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    return res.exit_code, res.output


def test_limits_match_the_columns() -> None:
    def length(table: Any, column: str) -> int | None:
        return getattr(table.c[column].type, "length", None)

    residents = Resident.__table__
    assert [length(residents, c) for c in ("name", "community", "address", "source_file")] == [
        NAME_MAX, COMMUNITY_MAX, ADDRESS_MAX, SOURCE_FILE_MAX]
    assert length(Campaign.__table__, "name") == CAMPAIGN_NAME_MAX
    assert length(DoNotCall.__table__, "reason") == REASON_MAX


def test_dnc_reason_is_checked_like_every_other_field(db_url: str) -> None:
    """Issue 11: `dnc add --reason` was cut to 200 characters without a word; a control character was stored."""
    for bad, said in (("因" * 201, "过长（201 字，最多 200 字）"), ("a\x00b", "控制字符"), ("  ", "不能为空")):
        code, out = cli("--db", db_url, "dnc", "add", "--phone", "13800138000", "--reason", bad)
        assert code == 2 and "原因（--reason）" in out and said in out and "Traceback" not in out, out
        assert "13800138000" not in out
    code, out = cli("--db", db_url, "dnc", "add", "--phone", "13800138000", "--reason", "因" * REASON_MAX)
    assert code == 0, out
    code, out = cli("--db", db_url, "dnc", "remove", "--phone", "13800138000", "--reason", "因" * 201)
    assert code == 2 and "原因（--reason）" in out, out
    store = Store(db_url)
    try:
        assert [e.reason for e in list_do_not_call(store)] == ["因" * REASON_MAX]
    finally:
        store.close()


def test_long_text_is_refused_the_same_way_on_both_backends(db_url: str, tmp_path: Path) -> None:
    """Issue 11: a 1,000-character campaign or community name was stored on SQLite and crashed on PostgreSQL."""
    src = tmp_path / "long.csv"
    src.write_text(
        "姓名,手机号,社区,备注,标签\n"
        f"甲,13800138000,{'社' * 1000},,\n"
        f"乙,13900139000,,{'注' * 5000},\n"
        f"丙,13700137000,,,{'标' * 500}\n"
        "丁,13600136000,阳光社区,,\n",
        encoding="utf-8",
    )
    code, out = cli("--db", db_url, "contacts", "import", str(src))
    assert code == 0, out
    assert "新增 1 人" in out and "拒绝 3 行" in out
    reasons = (tmp_path / "long.rejects.csv").read_text(encoding="utf-8-sig")
    assert "社区过长（1000 字，最多 100 字）" in reasons and "备注过长" in reasons and "标签过长" in reasons
    code, out = cli("--db", db_url, "campaign", "create", "名" * 1000)
    assert code == 2 and "campaign name" in out and "at most 100" in out and "Traceback" not in out
    code, out = cli("--db", db_url, "contacts", "import", str(src), "--community", "社" * 101)
    assert code == 2 and "--community" in out
    store = Store(db_url)
    try:
        assert [r.name for r in list_residents(store)] == ["丁"]
    finally:
        store.close()


def test_a_database_error_is_reported_without_its_parameters(db_url: str, tmp_path: Path) -> None:
    """Issue 11: on PostgreSQL a failed import printed the SQL parameters (phones, IDs) of the batch."""
    store = Store(db_url)
    with store.engine.begin() as conn:  # a constraint the import does not know about: a real database error
        if store.dialect == "postgresql":
            conn.execute(text("ALTER TABLE residents ADD CONSTRAINT no_zhang CHECK (name <> '张三')"))
        else:
            conn.execute(text(
                "CREATE TRIGGER no_zhang BEFORE INSERT ON residents WHEN NEW.name = '张三' "
                "BEGIN SELECT RAISE(ABORT, 'no_zhang failed'); END"
            ))
    store.close()
    src = tmp_path / "a.csv"
    src.write_text("姓名,手机号,身份证号\n张三,13800138000,11010519491231002X\n", encoding="utf-8")
    code, out = cli("--db", db_url, "-v", "contacts", "import", str(src), cwd=tmp_path)
    assert code == 1, out
    error = next(line for line in out.splitlines() if line.startswith("error:"))
    assert "no_zhang" in error and "the store is unchanged" in error and "INSERT INTO" not in error
    for secret in ("13800138000", "1949123100"):
        assert secret not in out
    log = (tmp_path / "var" / "outreach.log").read_text(encoding="utf-8")
    assert "no_zhang" in log and "13800138000" not in log and "1949123100" not in log


def test_sql_echo_goes_through_the_masking_log_without_parameters(tmp_path: Path) -> None:
    """Issue 11: `database.echo: true` printed unmasked phones and IDs."""
    (tmp_path / "config.yaml").write_text("database:\n  echo: true\n", encoding="utf-8")
    (tmp_path / "a.csv").write_text("姓名,手机号,备注\n张三,13800138000,家属 139 0013 9000\n", encoding="utf-8")
    db = f"sqlite:///{tmp_path / 's.db'}"
    code, out = cli("--config", str(tmp_path / "config.yaml"), "--db", db, "contacts", "import",
                    str(tmp_path / "a.csv"), cwd=tmp_path)
    assert code == 0, out
    assert "INSERT INTO residents" in out  # the statements are shown
    code, listed = cli("--config", str(tmp_path / "config.yaml"), "--db", db, "contacts", "list", cwd=tmp_path)
    assert code == 0 and "SELECT" in listed
    log = tmp_path / "var" / "outreach.log"
    for o in (out, listed, log.read_text(encoding="utf-8") if log.exists() else ""):
        assert "13800138000" not in o and "0013 9000" not in o and "--- Logging error ---" not in o


def test_config_logging_keys_take_effect(tmp_path: Path) -> None:
    """Issue 11: logging.level and logging.unmask_phones had no effect."""
    db = f"sqlite:///{tmp_path / 's.db'}"
    (tmp_path / "a.csv").write_text("姓名,手机号\n张三,13800138000\n", encoding="utf-8")
    cfg = tmp_path / "config.yaml"
    cfg.write_text("logging:\n  level: DEBUG\n  file: logs/debug.log\n", encoding="utf-8")
    assert cli("--config", str(cfg), "--db", db, "contacts", "import", str(tmp_path / "a.csv"), cwd=tmp_path)[0] == 0
    debug = (tmp_path / "logs" / "debug.log").read_text(encoding="utf-8")
    assert " DEBUG " in debug and "13800138000" not in debug
    cfg.write_text("logging:\n  level: WARNING\n  file: logs/warn.log\n", encoding="utf-8")
    assert cli("--config", str(cfg), "--db", db, "contacts", "list", cwd=tmp_path)[0] == 0
    warn = tmp_path / "logs" / "warn.log"  # created at its first record: none at WARNING for a plain listing
    assert not warn.exists() or " INFO " not in warn.read_text(encoding="utf-8")
    cfg.write_text("logging:\n  level: INFO\n  file: logs/clear.log\n  unmask_phones: true\n", encoding="utf-8")
    code, out = cli("--config", str(cfg), "--db", db, "contacts", "list", cwd=tmp_path)
    assert code == 0 and "unmask_phones is set" in out


def test_an_unexpected_error_is_one_line_and_the_log_keeps_the_traceback(tmp_path: Path) -> None:
    """A damaged store (a table dropped behind the tool's back) is an error nobody planned for: the user gets
    one line naming the log file, never a traceback; the log file gets the traceback, numbers masked."""
    db_file = tmp_path / "s.db"
    Store(f"sqlite:///{db_file}").close()
    con = sqlite3.connect(db_file)
    con.execute("DROP TABLE campaign_contacts")
    con.execute("DROP TABLE residents")
    con.commit()
    con.close()
    code, out = cli("--db", f"sqlite:///{db_file}", "contacts", "list", cwd=tmp_path)
    assert code == 1
    assert "Traceback" not in out and len(out.strip().splitlines()) == 1, out
    assert out.startswith("error: internal error (OperationalError") and "outreach.log" in out
    log = (tmp_path / "var" / "outreach.log").read_text(encoding="utf-8")
    assert "Traceback (most recent call last)" in log and "no such table: residents" in log


# --------------------------------------------------------------------------- exports: files


def test_csv_cells_that_a_spreadsheet_would_run_are_neutralised(tmp_path: Path) -> None:
    """Issue 11 (OWASP CSV injection): cells starting with =, +, -, @, tab or CR were written verbatim."""
    bad = ['=HYPERLINK("http://evil.example")', "+cmd|' /C calc'!A0", "-2+3", "@SUM(1)", "\tx", "\ry"]
    out = tmp_path / "a.csv"
    exports.write_csv(out, exports.Table("t", ["姓名", "次数"], [[v, 3] for v in bad] + [["张三", -1]]))
    with out.open(encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(f))[1:]
    assert [r[0] for r in rows[: len(bad)]] == ["'" + v for v in bad]
    assert rows[-1] == ["张三", "-1"]  # numbers stay numbers
    assert formula_safe(-1) == -1 and formula_safe("普通") == "普通"
    assert formula_safe("+8613800138000") == "+8613800138000" and formula_safe("-5") == "-5"
    assert formula_safe("+86138****8000") == "'+86138****8000"


def test_export_format_follows_the_extension_and_the_folder_must_exist(tmp_path: Path) -> None:
    assert exports.format_for(tmp_path / "a.CSV", None) == "csv"
    assert exports.format_for(tmp_path / "a.xlsx", "xlsx") == "xlsx"
    with pytest.raises(exports.ExportError, match=r"the name says \.xlsx but --format is csv"):
        exports.format_for(tmp_path / "a.xlsx", "csv")
    with pytest.raises(exports.ExportError, match=r"has \.txt; name it \.csv or \.xlsx"):
        exports.format_for(tmp_path / "a.txt", None)
    with pytest.raises(exports.ExportError, match=r"the folder .*nosuch does not exist"):
        exports.write_csv(tmp_path / "nosuch" / "a.csv", exports.Table("t", ["h"], []))
    assert not (tmp_path / "nosuch").exists()


_SLOW_EXPORT = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from results import exports

    def rows():
        for i in range(1000):
            yield [str(i), "张三"]
        Path(sys.argv[2]).write_text("half-way")
        time.sleep(60)
        yield ["never", "reached"]

    out = Path(sys.argv[1])
    if out.suffix == ".csv":
        exports.write_csv(out, exports.Table("t", ["编号", "姓名"], rows()))
    else:
        exports.write_xlsx(out, [exports.Table("t", ["编号", "姓名"], rows())])
""")


@pytest.mark.parametrize("name", ["a.csv", "a.xlsx"])
def test_a_killed_export_leaves_nothing_behind(tmp_path: Path, name: str) -> None:
    """Issue 11: a kill -9 in the middle of an export left hidden 0-byte .part files."""
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    marker = tmp_path / "marker"
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_EXPORT, str(out_dir / name), str(marker)], cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert proc.poll() is None, "the export died early"
            assert time.monotonic() < deadline, "the export never got half-way"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    left = list(out_dir.iterdir())
    if left:  # a file system without anonymous files: the next export to that name sweeps the leftover
        assert [p.name for p in left] == [f".{name}.{proc.pid}.part"]
        fmt_writer = exports.write_csv if name.endswith(".csv") else None
        if fmt_writer is not None:
            fmt_writer(out_dir / name, exports.Table("t", ["h"], [["1"]]))
        else:
            exports.write_xlsx(out_dir / name, [exports.Table("t", ["h"], [["1"]])])
        left = [p for p in out_dir.iterdir() if p.name != name]
    assert left == []


# --------------------------------------------------------------------------- the YAML loader


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ("a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
            f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n" for p, c in zip("abcdef", "bcdefg", strict=True)),
         "YAML aliases"),
        ("x: " + "[" * 200 + "]" * 200, "nested deeper than 64 levels"),
        ("a: &a\n  b: *a\n", "refers to itself"),
        ("a: " + "9" * 5000 + "\n", "'a': cannot read the value"),
        ("a: \"x\\0y\"\n", "control character"),
        ("a: b\x00\n", "is not allowed in YAML text"),
    ],
)
def test_the_yaml_loader_refuses_what_would_hang_or_crash(doc: str, message: str) -> None:
    with pytest.raises(safeyaml.YamlError, match=message) as exc:
        safeyaml.load(doc)
    assert exc.value.line >= 1


def test_the_yaml_loader_keeps_dates_as_text_and_lines() -> None:
    loaded = safeyaml.load("campaign:\n  holidays: [2026-02-30, 2026-10-01]\n  n: 3\n")
    assert loaded.data == {"campaign": {"holidays": ["2026-02-30", "2026-10-01"], "n": 3}}
    assert loaded.lines[("campaign", "holidays", "1")] == 2 and loaded.lines[("campaign", "n")] == 3
    with pytest.raises(yaml.MarkedYAMLError):
        safeyaml.load("a: [\n")


def test_the_yaml_loader_refuses_a_big_file_before_reading_it(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    with big.open("wb") as f:
        f.truncate(5 << 20)
    with pytest.raises(safeyaml.YamlError, match=r"too large \(5,242,880 bytes; at most 1,048,576\)"):
        safeyaml.read_text(big)
    (tmp_path / "d").mkdir()
    with pytest.raises(safeyaml.YamlError, match="is a folder"):
        safeyaml.read_text(tmp_path / "d")


def test_logging_handlers_mask_exceptions_too(caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    from outreach.logsetup import add_log_file

    path = add_log_file(tmp_path / "x.log", logging.INFO)
    try:
        raise ValueError("bad row for +8613800138000")
    except ValueError as exc:
        logging.getLogger("outreach.test").error("failed", exc_info=exc)
    finally_text = path.read_text(encoding="utf-8")
    logging.getLogger().removeHandler(next(h for h in logging.getLogger().handlers if getattr(h, "_outreach", "") == "file"))
    assert "+86138****8000" in finally_text and "13800138000" not in finally_text
