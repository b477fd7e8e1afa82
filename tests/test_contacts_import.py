"""Contact import: normalisation rules, the CSV/XLSX readers on the bad-input corpus, and the store upsert
(on SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import json
import zipfile
from pathlib import Path

import pytest
from openpyxl import load_workbook
from sqlalchemy import func, select

from campaigns.contacts import (
    ContactRow,
    ImportFileError,
    InvalidValue,
    RejectedRow,
    RejectsWriter,
    UncalculatedFormula,
    XlsxStream,
    check_national_id,
    default_rejects_path,
    map_headers,
    normalize_phone,
    open_contacts,
    parse_date,
)
from results.models import AuditLog, Resident
from results.residents import count_residents, import_residents, list_residents, record_audit
from results.store import Store
from tests import import_corpus
from tests.import_corpus import BAD_PHONES, ID_OK, ID_OK_2


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return import_corpus.build(tmp_path_factory.mktemp("corpus"))


def read_all(path: Path) -> list[ContactRow | RejectedRow]:
    with open_contacts(path) as f:
        return list(f.records())


# --------------------------------------------------------------------------- phones


@pytest.mark.parametrize(
    ("value", "e164"),
    [
        ("13800138000", "+8613800138000"),
        (" 138 0013 8000 ", "+8613800138000"),
        ("138-0013-8000", "+8613800138000"),
        ("+86 138 0013 8000", "+8613800138000"),
        ("+86-13800138000", "+8613800138000"),
        ("0086 13800138000", "+8613800138000"),
        ("8613800138000", "+8613800138000"),
        ("１３８００１３８０００", "+8613800138000"),  # full-width digits
        ("tel:13800138000", "+8613800138000"),
        (13800138000, "+8613800138000"),  # an Excel number cell
        (13800138000.0, "+8613800138000"),  # an Excel number cell stored as float
        ("13800138000.0", "+8613800138000"),  # the same, exported to CSV
        ("1.3800138E+10", "+8613800138000"),
        ("1.3800138E10", "+8613800138000"),
        ("19912345678", "+8619912345678"),
        ("16612345678", "+8616612345678"),
        ("010-65529988", "+861065529988"),
        ("(010) 6552 9988", "+861065529988"),
        ("0755-88889999", "+8675588889999"),
        ("+86 10 6552 9988", "+861065529988"),
        ("021 6888 7777", "+862168887777"),
    ],
)
def test_phone_normalises_to_e164(value: object, e164: str) -> None:
    assert normalize_phone(value) == e164


@pytest.mark.parametrize(("value", "reason"), BAD_PHONES)
def test_bad_phone_has_a_chinese_reason(value: str, reason: str) -> None:
    with pytest.raises(InvalidValue) as err:
        normalize_phone(value)
    assert reason in str(err.value)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "手机号为空"),
        ("   ", "手机号为空"),
        (True, "不是数字"),
        (dt.date(2026, 11, 3), "不是数字"),
        (13800138000.5, "不是整数"),
        (float("nan"), "不是整数"),
        (UncalculatedFormula('="138"&"00138000"'), "公式但没有计算结果"),
    ],
)
def test_bad_phone_cells(value: object, reason: str) -> None:
    with pytest.raises(InvalidValue, match=reason):
        normalize_phone(value)


def test_corpus_has_more_than_ten_kinds_of_bad_phones() -> None:
    assert len({reason for _, reason in BAD_PHONES}) > 10


# --------------------------------------------------------------------------- IDs and dates


def test_national_id_checksum() -> None:
    assert check_national_id(ID_OK) == ID_OK
    assert check_national_id(ID_OK.lower()) == ID_OK
    assert check_national_id(f" {ID_OK_2} ") == ID_OK_2
    assert check_national_id(None) is None
    assert check_national_id("") is None


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (import_corpus.ID_BAD_CHECK, "校验位错误"),
        ("12345", "应为 18 位"),
        ("110105491231002", "15 位旧身份证号"),
        ("11010519491231002Y", "非法字符"),
        ("110105194913310021", "出生日期无效"),
        (import_corpus.make_id("110105", "20990101", "001"), "出生日期无效"),
        (1.10105194912310e17, "存成了数字"),
        ("1.10105E+17", "科学计数法"),
        (UncalculatedFormula("=A1"), "公式"),
    ],
)
def test_bad_national_id(value: object, reason: str) -> None:
    with pytest.raises(InvalidValue, match=reason):
        check_national_id(value, today=dt.date(2026, 11, 23))


@pytest.mark.parametrize(
    "value",
    [
        "2026-11-03", "2026/11/3", "2026.11.3", "2026年11月3日", "2026 年 11 月 3 日", "20261103",
        "2026-11-03 10:30", "2026/11/3 10:30:15", "2026-11-03T00:00:00", "２０２６年１１月３日",
        dt.date(2026, 11, 3), dt.datetime(2026, 11, 3, 8, 30), 46329, 46329.375, 20261103,
    ],
)
def test_dates_in_many_formats(value: object) -> None:
    assert parse_date(value) == dt.date(2026, 11, 3)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("2026-02-30", "日期不存在"),
        ("11/3/2026", "无法识别"),
        ("下周三", "无法识别"),
        ("1999-01-01", "超出合理范围"),
        (True, "无法识别"),
        (-5, "无法识别"),
    ],
)
def test_bad_dates(value: object, reason: str) -> None:
    with pytest.raises(InvalidValue, match=reason):
        parse_date(value)
    assert parse_date(None) is None and parse_date("  ") is None


# --------------------------------------------------------------------------- headers


def test_header_aliases_in_chinese_and_english() -> None:
    cols = map_headers(["姓名", "联系电话", "小区", "住址", "身份证号码", "抵达日期", "备注", "标签", "序号"])
    assert cols == {
        "name": [0], "phone": [1], "community": [2], "address": [3], "national_id": [4],
        "arrival_date": [5], "note": [6], "tags": [7],
    }
    cols = map_headers(["Name", "Phone Number", "COMMUNITY", "Address", "national_id", "Arrival Date", "Notes"])
    assert set(cols) == {"name", "phone", "community", "address", "national_id", "arrival_date", "note"}
    # required markers, full-width brackets and spaces around the name
    assert map_headers(["*手机号码（必填）", " 姓 名 ", "村", "手机", None, ""]) == {
        "phone": [0, 3], "name": [1], "community": [2]
    }


# --------------------------------------------------------------------------- readers on the corpus


ZH_EXPECTED = [
    ContactRow(2, "+8613800138000", "张三", "阳光社区", "幸福路1号", ID_OK, dt.date(2026, 11, 3), "独居老人", ("返乡", "老人")),
    ContactRow(3, "+8613900139000", "李四", "阳光社区", "幸福路2号", None, dt.date(2026, 11, 4), "", ()),
    ContactRow(4, "+861065529988", "王五", "和平村", "", None, None, "", ()),
]


@pytest.mark.parametrize(
    ("case", "encoding", "delimiter"),
    [
        ("bom", "utf-8-sig", ","),
        ("gbk", "gb18030", ","),
        ("utf16_tab", "utf-16", "\t"),
        ("semicolon", "utf-8", ";"),
    ],
)
def test_encodings_and_delimiters_read_the_same_rows(
    corpus: dict[str, Path], case: str, encoding: str, delimiter: str
) -> None:
    with open_contacts(corpus[case]) as f:
        assert (f.kind, f.encoding, f.delimiter) == ("csv", encoding, delimiter)
        assert f.headers == ("姓名", "手机号", "社区", "地址", "身份证号", "返回日期", "备注", "标签")
        assert list(f.records()) == ZH_EXPECTED


def test_gb18030_only_characters(corpus: dict[str, Path]) -> None:
    rows = read_all(corpus["gb18030"])
    assert isinstance(rows[2], ContactRow) and rows[2].name == "王𠀾"


def test_english_utf8(corpus: dict[str, Path]) -> None:
    assert read_all(corpus["utf8"]) == [
        ContactRow(2, "+8613800138000", "Zhang San", "Sunshine", "1 Happy Rd", ID_OK, dt.date(2026, 11, 3),
                   "lives alone", ("returnee",)),
        ContactRow(3, "+8613900139000", "Li Si", "Sunshine", "2 Happy Rd"),
    ]


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("wrong_encoding", "cannot decode the text as UTF-8 or GBK/GB18030"),
        ("empty_csv", "empty (0 bytes)"),
        ("blank_csv", "has no rows"),
        ("no_phone_column", "no phone column"),
        ("html_csv", "HTML page"),
        ("html_xlsx", "HTML page"),
        ("binary_csv", "binary file"),
        ("xlsx_named_csv", "workbook named .csv"),
        ("zero_xlsx", "empty (0 bytes)"),
        ("corrupt_xlsx", "corrupt .xlsx"),
        ("old_xls", "old .xls"),
        ("xls_is_really_ole_named_xlsx", "Excel 97-2003"),
        ("unknown_ext", "unknown format '.pdf'"),
    ],
)
def test_unusable_files_are_refused_naming_the_file(corpus: dict[str, Path], case: str, message: str) -> None:
    with pytest.raises(ImportFileError) as err:
        read_all(corpus[case])
    assert message in str(err.value)
    assert str(err.value).startswith(str(corpus[case]))


def test_missing_phone_column_lists_the_columns_found(corpus: dict[str, Path]) -> None:
    with pytest.raises(ImportFileError, match="columns found: 姓名、地址、备注"):
        open_contacts(corpus["no_phone_column"])


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ImportFileError, match="file not found"):
        open_contacts(tmp_path / "nope.csv")


def test_broken_quote_names_the_line(corpus: dict[str, Path]) -> None:
    with pytest.raises(ImportFileError, match=r"line 2: broken CSV"):
        read_all(corpus["broken_quote"])


def test_header_only_file_has_no_rows(corpus: dict[str, Path]) -> None:
    assert read_all(corpus["header_only"]) == []


def test_duplicates_are_normalised_to_one_phone(corpus: dict[str, Path]) -> None:
    rows = read_all(corpus["duplicates"])
    assert [r.phone for r in rows if isinstance(r, ContactRow)] == ["+8613800138000"] * 3 + ["+8613900139000"]


def test_every_bad_phone_is_rejected_with_its_row_number(corpus: dict[str, Path]) -> None:
    rows = read_all(corpus["bad_phones"])
    rejects = [r for r in rows if isinstance(r, RejectedRow)]
    assert [r.row for r in rejects] == list(range(2, 2 + len(BAD_PHONES)))
    for rej, (value, reason) in zip(rejects, BAD_PHONES, strict=True):
        assert rej.values[1] == value
        assert reason in rej.reason
    assert rows[-1] == ContactRow(2 + len(BAD_PHONES), "+8613800138000", "好人")


def test_bad_fields_collect_every_reason(corpus: dict[str, Path]) -> None:
    rows = read_all(corpus["bad_fields"])
    got = {r.row: (r.reason if isinstance(r, RejectedRow) else r) for r in rows}
    assert got[2] == "身份证号校验位错误"
    assert got[3] == "身份证号应为 18 位（实际 5 位）"
    assert got[4] == "返回日期不存在（2026-02-30）"
    assert isinstance(got[5], str) and got[5].startswith("返回日期无法识别（11/3/2026）")
    assert got[6] == "社区过长（101 字，最多 100 字）"
    assert got[7] == "手机号段不存在（120 开头）；身份证号校验位错误"
    assert got[8] == ContactRow(8, "+8613800138006", "庚", "", "", ID_OK_2, dt.date(2026, 11, 3))
    assert got[9] == "身份证号中的出生日期无效（18800101）"


def test_floats_in_csv(corpus: dict[str, Path]) -> None:
    rows = read_all(corpus["floats_csv"])
    assert [(r.row, r.phone if isinstance(r, ContactRow) else r.reason) for r in rows] == [
        (2, "+8613800138000"),
        (3, "+8613800138000"),
        (4, "号码被 Excel 显示成科学计数法（1.38001E+10），后几位已丢失；请把该列设为文本后重新导出"),
        (5, "+8613900139000"),
    ]


def test_floats_in_xlsx(corpus: dict[str, Path]) -> None:
    rows = read_all(corpus["floats_xlsx"])
    assert rows[0] == ContactRow(2, "+8613800138000", "甲", arrival_date=dt.date(2026, 11, 3))
    assert rows[1] == ContactRow(3, "+8613900139000", "乙")
    assert isinstance(rows[2], RejectedRow) and rows[2].row == 4 and "存成了数字" in rows[2].reason
    assert rows[3] == ContactRow(5, "+8613600136000", "丁", national_id=ID_OK, arrival_date=dt.date(2026, 11, 3))


def test_merged_and_blank_header_cells(corpus: dict[str, Path]) -> None:
    with open_contacts(corpus["merged_header"]) as f:
        # the title row and the merged group header above the real header are skipped
        assert f.header_row == 3
        assert f.headers == ("序号", "姓名", "*手机号码（必填）", "", "返回日期", "备注")
        rows = list(f.records())
    assert rows == [
        ContactRow(4, "+8613800138000", "张三", arrival_date=dt.date(2026, 11, 3), note="发热门诊"),
        ContactRow(6, "+8613900139000", "李四", arrival_date=dt.date(2026, 11, 4)),
    ]


def test_formula_cells_use_their_stored_results(corpus: dict[str, Path]) -> None:
    rows = read_all(corpus["formulas"])
    assert rows[0] == ContactRow(2, "+8613800138000", "张三", "阳光社区", arrival_date=dt.date(2026, 11, 3))
    assert rows[1] == ContactRow(3, "+8613900139000", "李四", "和平村", arrival_date=dt.date(2026, 11, 4))
    assert isinstance(rows[2], RejectedRow)
    assert rows[2].row == 4 and "公式但没有计算结果" in rows[2].reason


def test_wrong_dimension_still_reads_every_row(corpus: dict[str, Path]) -> None:
    assert [r.row for r in read_all(corpus["bad_dimension"])] == [2, 3]


def test_xlsx_stream_matches_openpyxl(corpus: dict[str, Path]) -> None:
    """Our streaming reader sees the same values as openpyxl (the reference) on every workbook."""
    for case in ("openpyxl_xlsx", "merged_header", "formulas", "floats_xlsx"):
        wb = load_workbook(corpus[case], data_only=True)
        ws = wb.worksheets[0]
        expected = {
            (c.row, c.column - 1): c.value for row in ws.iter_rows() for c in row if c.value is not None
        }
        book = XlsxStream(corpus[case])
        try:
            got = {(r, i): v for r, cells in book.rows(book.sheets[0][1]) for i, v in enumerate(cells) if v is not None}
        finally:
            book.close()
        # openpyxl has no value for a formula without a stored result; we keep the formula to explain it
        got = {k: v for k, v in got.items() if not isinstance(v, UncalculatedFormula)}
        assert got == expected, case


def test_xlsx_shared_strings_rich_text_and_second_sheet(tmp_path: Path) -> None:
    from openpyxl import Workbook
    from openpyxl.cell.rich_text import CellRichText, TextBlock
    from openpyxl.cell.text import InlineFont

    wb = Workbook()
    first = wb.active
    assert first is not None
    first.title = "说明"
    first.append(["本表为返乡人员名单，请勿修改表头"])
    ws = wb.create_sheet("名单")
    ws.append(["姓名", "手机号", "返回日期"])
    ws.append([CellRichText(TextBlock(InlineFont(b=True), "张"), "三"), "13800138000", dt.datetime(2026, 11, 3)])
    path = tmp_path / "two_sheets.xlsx"
    wb.save(path)
    with open_contacts(path) as f:
        assert f.sheet == "名单"
        assert list(f.records()) == [ContactRow(2, "+8613800138000", "张三", arrival_date=dt.date(2026, 11, 3))]


def test_phone_column_formatted_as_dates_keeps_the_numbers(tmp_path: Path) -> None:
    """Review of issue 3: a phone number in a date-formatted cell (Excel shows #####) raised OverflowError."""
    path = import_corpus.write_raw_xlsx(tmp_path / "date_styled.xlsx", [
        ["姓名", "手机号", "返回日期"],
        ["张三", import_corpus.Num("13800138000", date=True), import_corpus.Num("46329", date=True)],
    ])
    assert read_all(path) == [ContactRow(2, "+8613800138000", "张三", arrival_date=dt.date(2026, 11, 3))]


@pytest.mark.parametrize("index", ["7", "-1"])
def test_shared_string_out_of_range_is_a_corrupt_workbook(tmp_path: Path, index: str) -> None:
    """Review of issue 3: index 7 raised IndexError (a traceback); -1 silently read the last string."""
    path = import_corpus.write_raw_xlsx(tmp_path / "ss.xlsx", [["姓名", "手机号"], ["张三", "13800138000"]])
    with zipfile.ZipFile(path) as z:
        parts = {n: z.read(n) for n in z.namelist()}
    parts["xl/worksheets/sheet1.xml"] = parts["xl/worksheets/sheet1.xml"].replace(
        b'<c r="B2" t="inlineStr"><is><t xml:space="preserve">13800138000</t></is></c>',
        f'<c r="B2" t="s"><v>{index}</v></c>'.encode(),
    )
    parts["xl/sharedStrings.xml"] = (
        b'<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><si><t>a</t></si></sst>'
    )
    parts["xl/_rels/workbook.xml.rels"] = parts["xl/_rels/workbook.xml.rels"].replace(
        b"</Relationships>",
        b'<Relationship Id="rId9" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/'
        b'sharedStrings" Target="sharedStrings.xml"/></Relationships>',
    )
    with zipfile.ZipFile(path, "w") as z:
        for n, data in parts.items():
            z.writestr(n, data)
    with pytest.raises(ImportFileError) as exc:
        read_all(path)
    assert str(exc.value) == (
        f"{path}: corrupt .xlsx workbook after row 1: ValueError: cell B2 names shared string {index}, "
        "the workbook has 1"
    )


def test_total_hint_for_progress(corpus: dict[str, Path]) -> None:
    with open_contacts(corpus["bad_phones"]) as f:
        assert f.total_hint == len(BAD_PHONES) + 1
    with open_contacts(corpus["merged_header"]) as f:
        assert f.total_hint == 3


def test_multiple_numbers_in_one_cell_keep_the_first_valid(tmp_path: Path) -> None:
    path = tmp_path / "multi.csv"
    path.write_text("姓名,手机号\n张三,12012345678/13800138000、13900139000\n李四,abc/def\n", encoding="utf-8")
    rows = read_all(path)
    assert rows[0] == ContactRow(2, "+8613800138000", "张三", note="其他号码：12012345678、13900139000")
    assert isinstance(rows[1], RejectedRow) and "非数字" in rows[1].reason


def test_blank_rows_are_skipped_and_row_numbers_stay_true(tmp_path: Path) -> None:
    path = tmp_path / "blank_rows.csv"
    path.write_text('姓名,手机号,备注\n\n张三,13800138000,"两行\n备注"\n, ,\n李四,13900139000,\n', encoding="utf-8")
    assert read_all(path) == [
        ContactRow(3, "+8613800138000", "张三", note="两行\n备注"),
        ContactRow(6, "+8613900139000", "李四"),
    ]


# --------------------------------------------------------------------------- rejects file


def test_rejects_file_csv_has_bom_row_numbers_and_reasons(corpus: dict[str, Path], tmp_path: Path) -> None:
    target = tmp_path / "bad.rejects.csv"
    with open_contacts(corpus["bad_phones"]) as f:
        writer = RejectsWriter(target, f)
        for r in f.records():
            if isinstance(r, RejectedRow):
                writer.write(r)
        assert writer.commit() == target
    raw = target.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    lines = raw.decode("utf-8-sig").splitlines()
    assert lines[0] == "行号,姓名,联系电话,错误原因"
    assert lines[2] == "3,居民2,12012345678,手机号段不存在（120 开头）"
    assert len(lines) == 1 + len(BAD_PHONES)
    assert list(tmp_path.glob(".*tmp")) == []


def test_rejects_file_xlsx_keeps_values_and_text(corpus: dict[str, Path], tmp_path: Path) -> None:
    target = tmp_path / "f.rejects.xlsx"
    with open_contacts(corpus["formulas"]) as f:
        writer = RejectsWriter(target, f)
        for r in f.records():
            if isinstance(r, RejectedRow):
                writer.write(r)
        writer.commit()
    ws = load_workbook(target).worksheets[0]
    rows = [[c.value for c in row] for row in ws.iter_rows()]
    assert rows[0] == ["行号", "姓名", "手机号", "社区", "返回日期", "错误原因"]
    assert rows[1][:4] == [4, "王五", '="137"&"00137000"', "阳光社区"]  # the formula text stays text
    assert ws.cell(2, 3).data_type == "s"
    assert "公式但没有计算结果" in rows[1][5]


def test_no_rejects_no_file_and_discard_cleans_up(corpus: dict[str, Path], tmp_path: Path) -> None:
    with open_contacts(corpus["utf8"]) as f:
        writer = RejectsWriter(tmp_path / "x.rejects.csv", f)
        assert writer.commit() is None
    with open_contacts(corpus["bad_phones"]) as f:
        writer = RejectsWriter(tmp_path / "y.rejects.csv", f)
        writer.write(next(r for r in f.records() if isinstance(r, RejectedRow)))
        writer.discard()
    assert list(tmp_path.iterdir()) == []


def test_default_rejects_path() -> None:
    assert default_rejects_path(Path("/data/名单.XLSX")) == Path("/data/名单.rejects.xlsx")
    assert default_rejects_path("list.csv") == Path("list.rejects.csv")


# --------------------------------------------------------------------------- the store (SQLite and PostgreSQL)


def _row(phone: str, **kw: object) -> ContactRow:
    return ContactRow(0, phone, **kw)  # type: ignore[arg-type]


def _residents(store: Store) -> dict[str, Resident]:
    return {r.phone: r for r in list_residents(store)}


def test_import_inserts_and_writes_an_audit_row(store: Store, corpus: dict[str, Path]) -> None:
    with open_contacts(corpus["bom"]) as f:
        summary = import_residents(
            store, (r for r in f.records() if isinstance(r, ContactRow)),
            source_file=str(corpus["bom"]), actor="tester", rejected=lambda: 2,
        )
    assert (summary.imported, summary.updated, summary.duplicates, summary.rejected) == (3, 0, 0, 2)
    got = _residents(store)
    z = got["+8613800138000"]
    assert (z.name, z.community, z.address, z.national_id, z.arrival_date, z.note, z.tags) == (
        "张三", "阳光社区", "幸福路1号", ID_OK, dt.date(2026, 11, 3), "独居老人", ["返乡", "老人"]
    )
    assert z.source_file == str(corpus["bom"])
    assert z.created_at.tzinfo is not None
    with store.session() as s:
        audit = s.scalars(select(AuditLog)).all()
    assert len(audit) == 1
    assert audit[0].action == "residents.import" and audit[0].actor == "tester"
    assert audit[0].details == {
        "imported": 3, "updated": 0, "duplicates": 0, "rejected": 2, "source_file": str(corpus["bom"])
    }


def test_duplicates_in_file_and_store_merge_into_one_row(store: Store) -> None:
    first = import_residents(
        store,
        [
            _row("+8613800138000", name="张三", community="阳光社区", tags=("返乡",)),
            _row("+8613800138000", address="幸福路1号", tags=("老人",)),
            _row("+8613900139000", name="李四", national_id=ID_OK, arrival_date=dt.date(2026, 11, 3)),
        ],
        source_file="a.csv",
        batch_size=1,  # the duplicate lands in a later batch than its first row
    )
    assert (first.imported, first.updated, first.duplicates) == (2, 0, 1)
    second = import_residents(
        store,
        [
            _row("+8613900139000", name="李四新", note="改过号码", tags=("密接",)),
            _row("+8613700137000", name="王五"),
            _row("+8613700137000", name="王五二", community="和平村"),
        ],
        source_file="b.xlsx",
    )
    assert (second.imported, second.updated, second.duplicates) == (1, 1, 1)
    got = _residents(store)
    assert count_residents(store) == 3
    z = got["+8613800138000"]
    assert (z.name, z.community, z.address, z.tags, z.source_file) == ("张三", "阳光社区", "幸福路1号", ["返乡", "老人"], "a.csv")
    li = got["+8613900139000"]
    # empty fields of the newer row keep what was stored; non-empty ones replace it; tags unite
    assert (li.name, li.national_id, li.arrival_date, li.note, li.tags, li.source_file) == (
        "李四新", ID_OK, dt.date(2026, 11, 3), "改过号码", ["密接"], "b.xlsx"
    )
    assert li.updated_at >= li.created_at
    w = got["+8613700137000"]
    assert (w.name, w.community) == ("王五二", "和平村")


def test_default_community_fills_only_new_residents(store: Store) -> None:
    import_residents(store, [_row("+8613800138000", name="张三", community="阳光社区")], source_file="a.csv")
    import_residents(
        store,
        [_row("+8613800138000"), _row("+8613900139000", name="李四"), _row("+8613700137000", community="和平村"),
         _row("+8613900139000", name="李四")],
        source_file="b.csv",
        default_community="东湖社区",
    )
    got = _residents(store)
    assert {p: r.community for p, r in got.items()} == {
        "+8613800138000": "阳光社区", "+8613900139000": "东湖社区", "+8613700137000": "和平村"
    }


def test_failure_mid_stream_leaves_the_store_as_it_was(store: Store) -> None:
    import_residents(store, [_row("+8613800138000", name="张三", community="阳光社区")], source_file="a.csv")
    before = [(r.phone, r.name, r.community, r.updated_at) for r in list_residents(store)]

    def rows() -> object:
        for i in range(25):
            yield _row(f"+86139001390{i:02d}", name=f"居民{i}")
        yield _row("+8613800138000", name="改名")
        raise KeyboardInterrupt  # Ctrl-C in the middle of the file, after batches were written

    with pytest.raises(KeyboardInterrupt):
        import_residents(store, rows(), source_file="b.csv", batch_size=10)  # type: ignore[arg-type]
    assert [(r.phone, r.name, r.community, r.updated_at) for r in list_residents(store)] == before
    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(AuditLog)) == 1


def test_file_error_mid_stream_rolls_back(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "late_break.csv"
    path.write_text("姓名,手机号\n" + "".join(f"居民,1380013{i:04d}\n" for i in range(30)) + '"坏,13800138000\n',
                    encoding="utf-8")
    with open_contacts(path) as f, pytest.raises(ImportFileError, match="line 32: broken CSV"):
        import_residents(store, (r for r in f.records() if isinstance(r, ContactRow)), source_file="x", batch_size=7)
    assert count_residents(store) == 0


def test_list_filters_and_limits(store: Store) -> None:
    import_residents(
        store,
        [_row(f"+861380013800{i}", name=f"居民{i}", community="阳光社区" if i % 2 else "和平村") for i in range(6)],
        source_file="a.csv",
    )
    assert [r.name for r in list_residents(store, community="阳光社区")] == ["居民1", "居民3", "居民5"]
    assert len(list_residents(store, limit=4)) == 4
    assert count_residents(store, "和平村") == 3
    assert list_residents(store, community="没有") == []


def test_record_audit(store: Store) -> None:
    record_audit(store, "residents.list_unmasked", actor="amy", details={"count": 3})
    with store.session() as s:
        row = s.scalars(select(AuditLog)).one()
    assert (row.action, row.actor, row.details) == ("residents.list_unmasked", "amy", {"count": 3})


def test_tags_round_trip_as_json(store: Store) -> None:
    import_residents(store, [_row("+8613800138000", tags=("返乡", "老人"))], source_file="a.csv")
    with store.engine.connect() as conn:
        raw = conn.exec_driver_sql("SELECT tags FROM residents").scalar_one()
    assert (json.loads(raw) if isinstance(raw, str) else raw) == ["返乡", "老人"]
