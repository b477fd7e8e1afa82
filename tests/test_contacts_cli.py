"""`outreach contacts import` and `outreach contacts list` through the real CLI: the corpus, JSON output,
rejects files, exit codes, masking, and a kill -9 in the middle of a 100k-row import."""

from __future__ import annotations

import json
import os
import pty
import random
import select as select_mod
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from openpyxl import load_workbook
from sqlalchemy import select
from typer.testing import CliRunner

from outreach.cli import app
from results.models import AuditLog
from results.residents import list_residents
from results.store import Store
from tests import import_corpus
from tests.import_corpus import BAD_PHONES

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return import_corpus.build(tmp_path_factory.mktemp("corpus"))


def cli(db: str, *args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["--db", db, *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def phones(db: str) -> dict[str, str]:
    store = Store(db)
    try:
        return {r.phone: r.name for r in list_residents(store)}
    finally:
        store.close()


def test_import_json_is_one_object_and_rejects_go_next_to_the_file(
    db_url: str, corpus: dict[str, Path], tmp_path: Path
) -> None:
    src = tmp_path / "bad_phones.csv"
    src.write_bytes(corpus["bad_phones"].read_bytes())
    code, out, err = cli(db_url, "contacts", "import", str(src), "--json")
    assert code == 0, err
    rejects = tmp_path / "bad_phones.rejects.csv"
    assert out.count("\n") == 1
    assert json.loads(out) == {"imported": 1, "updated": 0, "rejected": len(BAD_PHONES), "rejects_file": str(rejects)}
    lines = rejects.read_text(encoding="utf-8-sig").splitlines()
    assert lines[0] == "行号,姓名,联系电话,错误原因"
    assert len(lines) == 1 + len(BAD_PHONES)
    assert phones(db_url) == {"+8613800138000": "好人"}
    # the same file again: nothing new, the stored resident is updated, no second row
    code, out, _ = cli(db_url, "contacts", "import", str(src), "--json")
    assert code == 0
    assert json.loads(out)["imported"] == 0 and json.loads(out)["updated"] == 1
    assert len(phones(db_url)) == 1


def test_import_xlsx_writes_an_xlsx_rejects_file(corpus: dict[str, Path], sqlite_url: str, tmp_path: Path) -> None:
    src = tmp_path / "formulas.xlsx"
    src.write_bytes(corpus["formulas"].read_bytes())
    code, out, err = cli(sqlite_url, "contacts", "import", str(src), "--json", "--community", "东湖社区")
    assert code == 0, err
    result = json.loads(out)
    assert result == {"imported": 2, "updated": 0, "rejected": 1, "rejects_file": str(tmp_path / "formulas.rejects.xlsx")}
    ws = load_workbook(result["rejects_file"]).worksheets[0]
    rows = [[c.value for c in row] for row in ws.iter_rows()]
    assert rows[0] == ["行号", "姓名", "手机号", "社区", "返回日期", "错误原因"]
    assert rows[1][0] == 4 and rows[1][1] == "王五" and "公式" in rows[1][5]


def test_human_summary_and_custom_rejects_path(corpus: dict[str, Path], sqlite_url: str, tmp_path: Path) -> None:
    target = tmp_path / "out" / "错误行.csv"
    target.parent.mkdir()
    code, out, err = cli(sqlite_url, "contacts", "import", str(corpus["bad_fields"]), "--rejects", str(target))
    assert code == 0, err
    assert out.splitlines() == [
        "导入完成：新增 1 人，更新 0 人，文件内重复合并 0 行，拒绝 7 行",
        f"被拒绝的行及原因已写入：{target}",
    ]
    assert "导入中" not in out  # no progress bar when stdout is not a terminal
    assert target.read_text(encoding="utf-8-sig").splitlines()[1].startswith("2,甲,13800138001,")


def test_duplicates_merge_through_the_cli(corpus: dict[str, Path], sqlite_url: str) -> None:
    code, out, _ = cli(sqlite_url, "contacts", "import", str(corpus["duplicates"]), "--json")
    assert code == 0
    assert json.loads(out) == {"imported": 2, "updated": 0, "rejected": 0, "rejects_file": None}
    store = Store(sqlite_url)
    try:
        got = {r.phone: r for r in list_residents(store)}
    finally:
        store.close()
    z = got["+8613800138000"]
    assert (z.name, z.community, z.address, z.tags) == ("张三丰", "阳光社区", "幸福路1号", ["返乡", "老人"])


def test_rejects_folder_missing_exits_2_before_importing(corpus: dict[str, Path], sqlite_url: str, tmp_path: Path) -> None:
    """Review of issue 3: a rejects file that cannot be written gave a traceback."""
    target = tmp_path / "no-such-folder" / "bad.rejects.csv"
    code, out, err = cli(sqlite_url, "contacts", "import", str(corpus["bad_phones"]), "--rejects", str(target), "--json")
    assert code == 2 and out == ""
    assert err == (
        f"error: cannot write the rejects file {target}: the folder {target.parent} does not exist; "
        "choose another place with --rejects (nothing was imported)\n"
    )
    assert phones(sqlite_url) == {}


@pytest.mark.parametrize("case", ["bad_phones", "formulas"])
def test_rejects_file_that_cannot_be_written_rolls_the_import_back(
    corpus: dict[str, Path], sqlite_url: str, tmp_path: Path, case: str
) -> None:
    """Writing the rejects file fails (here: a folder squats on its temporary name). The import must end with a
    clear message and leave the store as it was; for .xlsx the failure only comes when the workbook is saved,
    so the rejects file has to be completed before the store commits."""
    assert cli(sqlite_url, "contacts", "import", str(corpus["utf8"]))[0] == 0
    before = phones(sqlite_url)
    src = tmp_path / corpus[case].name
    src.write_bytes(corpus[case].read_bytes())
    target = tmp_path / f"r.rejects{src.suffix}"
    squat = tmp_path / f".{target.name}.{os.getpid()}.part"  # CliRunner runs in this process
    squat.mkdir()
    code, out, err = cli(sqlite_url, "contacts", "import", str(src), "--rejects", str(target), "--json")
    assert code == 2 and out == ""
    assert err.startswith(f"error: cannot write the rejects file {target}: ")
    assert err.endswith("; choose another place with --rejects (nothing was imported)\n")
    assert phones(sqlite_url) == before
    assert not target.exists() and squat.is_dir() and list(squat.iterdir()) == []
    squat.rmdir()
    code, out, err = cli(sqlite_url, "contacts", "import", str(src), "--rejects", str(target), "--json")
    assert code == 0, err
    assert json.loads(out)["rejects_file"] == str(target) and target.is_file()


def test_a_killed_imports_hidden_rejects_file_is_swept_by_the_next_import(
    corpus: dict[str, Path], sqlite_url: str, tmp_path: Path
) -> None:
    src = tmp_path / "bad_phones.csv"
    src.write_bytes(corpus["bad_phones"].read_bytes())
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    left = tmp_path / f".bad_phones.rejects.csv.{dead.pid}.part"  # what a kill -9 mid-import leaves
    left.write_text("行号,姓名\n", encoding="utf-8")
    mine = tmp_path / f".bad_phones.rejects.csv.{os.getpid()}.x.part"  # a live writer's: kept
    mine.write_text("", encoding="utf-8")
    code, out, err = cli(sqlite_url, "contacts", "import", str(src), "--json")
    assert code == 0, err
    assert not left.exists() and mine.exists()
    assert (tmp_path / "bad_phones.rejects.csv").is_file()
    assert sorted(p.name for p in tmp_path.glob(".*")) == [mine.name]


def test_unopenable_database_exits_2_with_a_message(corpus: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "folder.db").mkdir()
    code, out, err = cli(f"sqlite:///{tmp_path / 'folder.db'}", "contacts", "import", str(corpus["utf8"]), "--json")
    assert code == 2 and out == ""
    assert err == (f"error: the store {tmp_path / 'folder.db'} is a folder, not a database file; "
                   "check --db / database.url\n")
    assert not (corpus["utf8"].parent / f"{corpus['utf8'].stem}.rejects.csv").exists()


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("wrong_encoding", "cannot decode"),
        ("empty_csv", "empty (0 bytes)"),
        ("no_phone_column", "columns found: 姓名、地址、备注"),
        ("html_csv", "HTML page"),
        ("zero_xlsx", "empty (0 bytes)"),
        ("corrupt_xlsx", "corrupt .xlsx"),
        ("unknown_ext", "unknown format"),
        ("broken_quote", "broken CSV"),
    ],
)
def test_unusable_file_exits_2_and_changes_nothing(
    corpus: dict[str, Path], sqlite_url: str, case: str, message: str
) -> None:
    cli(sqlite_url, "contacts", "import", str(corpus["utf8"]))
    before = phones(sqlite_url)
    code, out, err = cli(sqlite_url, "contacts", "import", str(corpus[case]), "--json")
    assert code == 2
    assert out == ""
    assert err.startswith(f"error: {corpus[case]}") and message in err
    assert phones(sqlite_url) == before
    assert not any(p.name.startswith(corpus[case].stem + ".rejects") for p in corpus[case].parent.iterdir())


def test_missing_file_and_wrong_rejects_name(corpus: dict[str, Path], sqlite_url: str, tmp_path: Path) -> None:
    code, _, err = cli(sqlite_url, "contacts", "import", str(tmp_path / "nope.xlsx"))
    assert code == 2 and "file not found" in err
    code, _, err = cli(sqlite_url, "contacts", "import", str(corpus["formulas"]), "--rejects", str(tmp_path / "r.csv"))
    assert code == 2 and "name it .xlsx" in err
    code, _, err = cli(sqlite_url, "contacts", "import", str(corpus["utf8"]), "--rejects", str(corpus["utf8"]))
    assert code == 2 and "must not be the input file" in err
    assert phones(sqlite_url) == {}


def test_list_masks_phones_and_ids_unless_unmasked(db_url: str, corpus: dict[str, Path]) -> None:
    assert cli(db_url, "contacts", "import", str(corpus["bom"]))[0] == 0
    code, out, _ = cli(db_url, "contacts", "list")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "编号\t姓名\t手机号\t社区\t地址\t身份证号\t返回日期\t标签\t备注"
    assert "13800138000" not in out and "+86138****8000" in out
    assert "110***********002X" in out and import_corpus.ID_OK not in out
    assert lines[-1] == "共 3 人"

    code, out, _ = cli(db_url, "contacts", "list", "--json", "--community", "阳光社区")
    data = json.loads(out)
    assert data["count"] == 2
    assert [r["phone"] for r in data["residents"]] == ["+86138****8000", "+86139****9000"]
    assert data["residents"][0]["tags"] == ["返乡", "老人"]
    assert data["residents"][0]["arrival_date"] == "2026-11-03"

    code, out, _ = cli(db_url, "contacts", "list", "--json", "--unmasked", "--limit", "1")
    assert json.loads(out)["residents"][0]["phone"].startswith("+86") and "*" not in out
    store = Store(db_url)
    try:
        with store.session() as s:
            actions = [a.action for a in s.scalars(select(AuditLog).order_by(AuditLog.id))]
    finally:
        store.close()
    assert actions == ["residents.import", "residents.list_unmasked"]

    code, out, _ = cli(db_url, "contacts", "list", "--community", "没有这个社区")
    assert code == 0 and out.strip() == "没有居民记录（社区：没有这个社区）"


def run_on_tty(*args: str) -> tuple[int, str]:
    """Run the CLI with stdout on a pseudo-terminal; returns its exit code and everything it drew."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "outreach", *args],
        stdin=slave, stdout=slave, stderr=slave, cwd=ROOT, env={**os.environ, "COLUMNS": "160", "TERM": "xterm"},
    )
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select_mod.select([master], [], [], 1)
        if ready:
            try:
                data = os.read(master, 4096)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    os.close(master)
    return proc.wait(timeout=30), b"".join(chunks).decode("utf-8", errors="replace")


def test_progress_bar_and_table_on_a_terminal(corpus: dict[str, Path], tmp_path: Path) -> None:
    """On a terminal the import draws a progress bar and still ends with the summary; list draws a table."""
    db = f"sqlite:///{tmp_path / 'tty.db'}"
    code, text = run_on_tty("--db", db, "contacts", "import", str(corpus["bom"]))
    assert code == 0, text
    assert "导入完成：新增 3 人" in text
    code, text = run_on_tty("--db", db, "contacts", "list")
    assert code == 0, text
    assert "手机号" in text and "+86138****8000" in text and "13800138000" not in text
    assert "共 3 人" in text


# --------------------------------------------------------------------------- kill -9


def _snapshot(db_file: Path) -> tuple[list[tuple[object, ...]], int]:
    con = sqlite3.connect(db_file)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        rows = con.execute("SELECT * FROM residents ORDER BY id").fetchall()
        audits = con.execute("SELECT count(*) FROM audit_log").fetchone()[0]
    finally:
        con.close()
    return rows, audits


def test_kill_9_during_a_100k_import_leaves_the_store_as_it_was(tmp_path: Path) -> None:
    db_file = tmp_path / "store.db"
    db = f"sqlite:///{db_file}"
    pre = tmp_path / "pre.csv"
    pre.write_text("姓名,手机号,社区\n" + "".join(f"老居民{i},1390013{i:04d},阳光社区\n" for i in range(50)),
                   encoding="utf-8")
    assert cli(db, "contacts", "import", str(pre))[0] == 0
    before = _snapshot(db_file)
    assert len(before[0]) == 50 and before[1] == 1

    big = tmp_path / "big.csv"
    with big.open("w", encoding="utf-8") as f:
        f.write("姓名,手机号,社区,地址\n")
        for i in range(100_000):
            f.write(f"居民{i},138{i:08d},和平村,幸福路{i}号\n")
            if i % 2000 == 0:  # the pre-import residents reappear with changed fields
                f.write(f"改名{i},1390013{i // 2000:04d},东湖社区,新地址\n")

    rng = random.Random()
    seed = rng.randrange(1_000_000)
    rng.seed(seed)
    for attempt in range(3):
        kill_after = rng.randint(1, 40)  # batches of 2000 rows written inside the open transaction
        proc = subprocess.Popen(
            [sys.executable, "-m", "outreach", "-v", "--db", db, "contacts", "import", str(big), "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, text=True,
        )
        assert proc.stderr is not None
        written = 0
        for line in proc.stderr:
            if "residents import: batch" in line:
                written += 1
                if written >= kill_after:
                    time.sleep(rng.random() * 0.05)
                    proc.send_signal(signal.SIGKILL)
                    break
        proc.wait(timeout=60)
        assert proc.returncode == -signal.SIGKILL, f"seed {seed} attempt {attempt}: import ended before the kill"
        assert _snapshot(db_file) == before, f"seed {seed} attempt {attempt}: kill after {kill_after} batches"
        assert not (tmp_path / "big.rejects.csv").exists()
    # the store is still usable afterwards
    code, out, _ = cli(db, "contacts", "import", str(pre), "--json")
    assert code == 0 and json.loads(out)["updated"] == 50


# --------------------------------------------------------------------------- the shipped example


def _make_residents() -> object:
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_residents", ROOT / "examples" / "make_residents.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_workbook_is_reproducible_and_imports_with_rejects(tmp_path: Path) -> None:
    shipped = ROOT / "examples" / "residents.xlsx"
    assert _make_residents().build() == shipped.read_bytes()  # type: ignore[attr-defined]
    src = tmp_path / "residents.xlsx"
    src.write_bytes(shipped.read_bytes())
    db = f"sqlite:///{tmp_path / 'demo.db'}"
    code, out, err = cli(db, "contacts", "import", str(src), "--json")
    assert code == 0, err
    assert json.loads(out) == {
        "imported": 194, "updated": 0, "rejected": 6, "rejects_file": str(tmp_path / "residents.rejects.xlsx")
    }
    ws = load_workbook(tmp_path / "residents.rejects.xlsx").worksheets[0]
    reasons = [row[-1] for row in ws.iter_rows(min_row=2, values_only=True)]
    assert [str(r).split("（")[0] for r in reasons] == [
        "手机号段不存在", "手机号位数太短", "手机号为空", "固定电话缺少区号", "身份证号校验位错误", "返回日期不存在"
    ]
    code, out, _ = cli(db, "contacts", "list", "--json")
    assert {r["community"] for r in json.loads(out)["residents"]} == {"阳光社区", "和平社区", "幸福社区", "东湖村", "石桥村"}
