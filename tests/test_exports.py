"""Exports: Chinese headers, masking, --unmasked in the audit log, times in the campaign's time zone,
escalations one sheet per community, no half-written files. Through the real CLI."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from openpyxl import load_workbook
from sqlalchemy import select
from typer.testing import CliRunner

from campaigns.clock import VirtualClock
from campaigns.windows import CallingWindows
from outreach.cli import app
from results import campaigns as db
from results import exports
from results.models import AuditLog, Escalation, Resident
from results.store import Store
from tests.test_campaign_engine import START, engine, make_campaign

SH = ZoneInfo("Asia/Shanghai")


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One finished campaign 'c1' in a SQLite store, shared by the tests of this module."""
    url = f"sqlite:///{tmp_path_factory.mktemp('exports') / 'store.db'}"
    store = Store(url)
    make_campaign(store, n=70, seed=12)
    db.set_state(store, "c1", "running", now=START)
    asyncio.run(engine(store, VirtualClock(START)).run_virtual())
    store.close()
    return url


def cli(url: str, *args: str) -> tuple[int, str]:
    res = CliRunner().invoke(app, ["--db", url, *args])
    return res.exit_code, res.output


def test_attempts_csv_has_chinese_headers_masked_phones_and_local_times(finished: str, tmp_path: Path) -> None:
    out = tmp_path / "attempts.csv"
    code, text = cli(finished, "results", "export", "--campaign", "c1", "--what", "attempts", "--format", "csv",
                     "--out", str(out))
    assert code == 0, text
    raw = out.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # BOM: Excel reads UTF-8
    rows = list(csv.reader(out.read_text(encoding="utf-8-sig").splitlines()))
    header, data = rows[0], rows[1:]
    assert header[:7] == ["呼叫编号", "通道编号", "姓名", "手机号", "社区", "第几次呼叫", "开始时间（Asia/Shanghai）"]
    assert f"wrote {len(data)} attempts rows" in text
    store = Store(finished)
    with store.session() as s:
        phones = set(s.scalars(select(Resident.phone)))
    store.close()
    windows = CallingWindows.parse({"daily": ["09:00-12:00", "14:00-20:00"]})
    for row in data:
        assert "****" in row[3] and row[3] not in phones
        started = dt.datetime.strptime(row[6], "%Y-%m-%d %H:%M:%S").replace(tzinfo=SH)
        assert windows.is_open(started), row  # windows can be checked from the export
        assert row[10] in exports.OUTCOME_LABELS.values()


def test_unmasked_export_is_audited(finished: str, tmp_path: Path) -> None:
    out = tmp_path / "s.xlsx"
    code, text = cli(finished, "results", "export", "--campaign", "c1", "--what", "screenings", "--format", "xlsx",
                     "--out", str(out), "--unmasked")
    assert code == 0, text
    ws = load_workbook(out, read_only=True)["筛查记录"]
    rows = list(ws.iter_rows(values_only=True))
    header = rows[0]
    assert header[:4] == ("记录编号", "姓名", "手机号", "身份证号")
    assert "体温（℃）" in header and "风险等级" in header and "需提醒第二次核酸" in header
    assert rows[1][2].startswith("+86") and "****" not in rows[1][2]
    assert len(rows[1][3]) == 18
    store = Store(finished)
    with store.session() as s:
        audit = list(s.scalars(select(AuditLog).where(AuditLog.action == "export.unmasked")))
    store.close()
    assert audit and audit[-1].details["what"] == "screenings" and audit[-1].details["file"] == str(out)


def test_masked_screenings_hide_ids(finished: str, tmp_path: Path) -> None:
    out = tmp_path / "s.csv"
    code, _ = cli(finished, "results", "export", "--campaign", "c1", "--what", "screenings", "--format", "csv",
                  "--out", str(out))
    assert code == 0
    rows = list(csv.reader(out.read_text(encoding="utf-8-sig").splitlines()))
    risk_col = rows[0].index("风险等级")
    assert all("****" in r[2] and "*" in r[3] for r in rows[1:])
    assert {r[risk_col] for r in rows[1:]} <= {"无", "需关注", "高风险", "未筛查", "无（筛查未完成）"}


def test_xlsx_cells_staff_can_filter(finished: str, tmp_path: Path) -> None:
    """Numbers are numbers, times are local date-times, the header row is frozen with an autofilter,
    columns have widths; unscreened calls say 未筛查; reasons are about risk and all in Chinese;
    hang-up causes are words."""
    out = tmp_path / "s.xlsx"
    assert cli(finished, "results", "export", "--campaign", "c1", "--what", "screenings", "--format", "xlsx",
               "--out", str(out))[0] == 0
    ws = load_workbook(out)["筛查记录"]
    header = [c.value for c in ws[1]]
    assert ws.freeze_panes == "A2"
    assert ws.auto_filter.ref == f"A1:{ws.cell(1, len(header)).column_letter}{ws.max_row}"
    assert ws.column_dimensions["A"].width >= 10 and ws.column_dimensions["G"].width >= 19
    rows = [[c.value for c in r] for r in ws.iter_rows(min_row=2)]
    col = {h: i for i, h in enumerate(header)}
    assert all(isinstance(r[col["记录编号"]], int) for r in rows)
    assert all(isinstance(r[col["通话时间（Asia/Shanghai）"]], dt.datetime) for r in rows)
    temps = [r[col["体温（℃）"]] for r in rows if r[col["体温（℃）"]] not in (None, "")]
    assert temps and all(isinstance(t, float) for t in temps)
    for r in rows:
        answered = [h for h in exports.FIELD_LABELS.values() if h != "身份确认" and r[col[h]] not in (None, "")]
        if not answered:
            assert r[col["风险等级"]] == "未筛查"
        assert "第二次核酸" not in (r[col["风险原因"]] or "")  # a reminder is not a risk reason
    assert any(r[col["风险等级"]] == "未筛查" for r in rows) and any(r[col["风险等级"]] == "无" for r in rows)

    out = tmp_path / "a.xlsx"
    assert cli(finished, "results", "export", "--campaign", "c1", "--what", "attempts", "--out", str(out),
               "--format", "xlsx")[0] == 0
    ws = load_workbook(out)["呼叫记录"]
    header = [c.value for c in ws[1]]
    rows = [[c.value for c in r] for r in ws.iter_rows(min_row=2)]
    dur, cause = header.index("时长（秒）"), header.index("挂断原因")
    assert all(isinstance(r[dur], (int, float)) for r in rows if r[dur] is not None)
    causes = {r[cause] for r in rows if r[cause]}
    assert causes and not any("NORMAL_CLEARING" in c or "_" in c for c in causes)
    assert "正常挂断（Q.850 16）" in causes


def test_reason_words_and_hangup_words() -> None:
    assert exports.reason_words("回答不确定：second_test_done") == "回答不确定：已做第二次核酸"
    assert exports.hangup_words("17 USER_BUSY") == "用户忙（Q.850 17）"
    assert exports.hangup_words("空号（Q.850 1，Reason 0）") == "空号（Q.850 1，Reason 0）"
    assert exports.hangup_words(None) == ""


def test_escalations_xlsx_has_one_sheet_per_community(finished: str, tmp_path: Path) -> None:
    out = tmp_path / "e.xlsx"
    code, text = cli(finished, "results", "export", "--campaign", "c1", "--what", "escalations", "--format", "xlsx",
                     "--out", str(out))
    assert code == 0, text
    store = Store(finished)
    with store.session() as s:
        by_comm: dict[str, int] = {}
        for (c,) in s.execute(select(Escalation.community)):
            by_comm[c] = by_comm.get(c, 0) + 1
    store.close()
    wb = load_workbook(out, read_only=True)
    assert sorted(wb.sheetnames) == sorted(by_comm)
    for name in wb.sheetnames:
        rows = list(wb[name].iter_rows(values_only=True))
        assert rows[0][:4] == ("编号", "类型", "优先级", "状态")
        assert len(rows) - 1 == by_comm[name]
        assert all(r[4] == name for r in rows[1:])
        assert {r[1] for r in rows[1:]} <= set(exports.ESCALATION_LABELS.values())


def test_bad_options_exit_2_and_leave_no_file(finished: str, tmp_path: Path) -> None:
    out = tmp_path / "x.csv"
    code, text = cli(finished, "results", "export", "--campaign", "nope", "--what", "attempts", "--format", "csv",
                     "--out", str(out))
    assert code == 2 and "no campaign named 'nope'" in text
    code, text = cli(finished, "results", "export", "--campaign", "c1", "--what", "calls", "--format", "csv",
                     "--out", str(out))
    assert code == 2 and "--what 'calls'" in text
    code, text = cli(finished, "results", "export", "--campaign", "c1", "--what", "attempts", "--format", "pdf",
                     "--out", str(out))
    assert code == 2 and "--format 'pdf'" in text
    code, text = cli(finished, "results", "export", "--campaign", "c1", "--what", "attempts", "--format", "csv",
                     "--out", str(tmp_path))
    assert code == 2 and "is a directory" in text
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == []


def test_a_failing_export_keeps_the_previous_file(finished: str, tmp_path: Path) -> None:
    out = tmp_path / "a.csv"
    out.write_text("previous", encoding="utf-8")

    def broken() -> Iterator[list[str]]:
        yield ["1"]
        raise RuntimeError("database went away")

    with pytest.raises(RuntimeError, match="went away"):
        exports.write_csv(out, exports.Table("t", ["h"], broken()))
    assert out.read_text(encoding="utf-8") == "previous"
    assert [p.name for p in tmp_path.iterdir()] == ["a.csv"]


def test_text_that_looks_like_a_formula_stays_text_in_xlsx(tmp_path: Path) -> None:
    out = tmp_path / "f.xlsx"
    formula = '=HYPERLINK("http://example.invalid","点我")'
    exports.write_xlsx(out, [exports.Table("t", ["姓名", "地址", "次数"], [["=1+1", formula, 3]])])
    ws = load_workbook(out)["t"]
    cells = list(ws.iter_rows(min_row=2, max_row=2))[0]
    assert [(c.value, c.data_type) for c in cells] == [("=1+1", "s"), (formula, "s"), (3, "n")]


def test_an_unmasked_export_never_appears_without_its_audit_row(finished: str, tmp_path: Path) -> None:
    import sqlite3

    from sqlalchemy.exc import OperationalError

    copy = tmp_path / "copy.db"
    copy.write_bytes(Path(finished.removeprefix("sqlite:///")).read_bytes())
    con = sqlite3.connect(copy)
    con.execute("DROP TABLE audit_log")  # the audit write will fail
    con.commit()
    con.close()
    store = Store(f"sqlite:///{copy}", migrate=False)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "a.csv"
    with pytest.raises(OperationalError, match="audit_log"):
        exports.export(store, campaign="c1", what="attempts", fmt="csv", out=out, unmasked=True)
    with pytest.raises(OperationalError, match="audit_log"):
        exports.export(store, campaign="c1", what="escalations", fmt="xlsx", out=out_dir / "e.xlsx", unmasked=True)
    assert list(out_dir.iterdir()) == []
    # a masked export needs no audit row
    assert exports.export(store, campaign="c1", what="attempts", fmt="csv", out=out) > 0
    store.close()
    assert [p.name for p in out_dir.iterdir()] == ["a.csv"]
