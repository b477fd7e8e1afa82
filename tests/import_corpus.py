"""The bad-input corpus for contact import, generated into a folder at test time.

`build(folder)` writes every file and returns {case name: path}. XLSX files that must look like Excel saved
them (formula cells with cached results, merged header cells, numbers stored as floats, date-styled serials)
are written part by part with `write_raw_xlsx`, because openpyxl cannot store formula results.
"""

from __future__ import annotations

import shutil
import zipfile
from collections.abc import Sequence
from pathlib import Path
from xml.sax.saxutils import escape

from openpyxl.utils import get_column_letter

# A valid resident ID (checksum correct) and a few valid phones used across the corpus.
ID_OK = "11010519491231002X"


def make_id(area: str, birth: str, seq: str) -> str:
    """A resident ID with a correct check digit: make_id('440524', '19880101', '001')."""
    body = area + birth + seq
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    return body + "10X98765432"[sum(int(c) * w for c, w in zip(body, weights, strict=True)) % 11]


ID_OK_2 = make_id("440524", "19880101", "001")
ID_BAD_CHECK = "110105194912310021"

# (cell value, part of the Chinese reason) : more than ten kinds of unusable phone numbers.
BAD_PHONES: list[tuple[str, str]] = [
    ("", "手机号为空"),
    ("12012345678", "手机号段不存在"),
    ("10012345678", "手机号段不存在"),
    ("1380013800", "位数太短"),
    ("138001380001", "位数太长"),
    ("65529988", "缺少区号"),
    ("12320", "服务号码"),
    ("4008123123", "400/800"),
    ("+1 650 253 0000", "非中国大陆号码（+1）"),
    ("00852 9123 4567", "非中国大陆号码（+852）"),
    ("138****8000", "打码"),
    ("0755-88889999转801", "分机"),
    ("abc", "非数字"),
    ("电话待补", "非数字"),
    ("1.38001E+10", "科学计数法"),
    ("13800138000.5", "不是整数"),
    ("020-8888888", "固定电话号码无效"),
    ("0102345", "固定电话位数太短"),
]

HTML_EXPORT = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>返乡人员名单</title></head>
<body><table><tr><th>姓名</th><th>手机号</th></tr><tr><td>张三</td><td>13800138000</td></tr></table></body></html>
"""

# --------------------------------------------------------------------------- a raw xlsx writer

_CONTENT_TYPES = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">
<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>
<Default Extension="xml" ContentType="application/xml"/>
<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>
<Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>
<Override PartName="/xl/styles.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/>
</Types>"""
_RELS = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">
<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/>
</Relationships>"""
_WORKBOOK = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">
<sheets><sheet name="名单" sheetId="1" r:id="rId1"/></sheets></workbook>"""
_WORKBOOK_RELS = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">
<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/>
<Relationship Id="rId2" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/styles" Target="styles.xml"/>
</Relationships>"""
# Style 0: general; style 1: built-in number format 14 (a date, m/d/yyyy in Excel's default locale).
_STYLES = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<styleSheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">
<fonts count="1"><font><sz val="11"/><name val="Calibri"/></font></fonts>
<fills count="1"><fill><patternFill patternType="none"/></fill></fills>
<borders count="1"><border/></borders>
<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>
<cellXfs count="2"><xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>
<xf numFmtId="14" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/></cellXfs>
<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles>
</styleSheet>"""


class Formula:
    """A formula cell; `cached` is the result Excel stored (None: never calculated, as other tools write)."""

    def __init__(self, formula: str, cached: str | float | None) -> None:
        self.formula = formula
        self.cached = cached


class Num:
    """A numeric cell written exactly as `text` in the XML (e.g. '1.3800138E10'); `date` styles it as one."""

    def __init__(self, text: str, date: bool = False) -> None:
        self.text = text
        self.date = date


def _cell_xml(ref: str, value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, Formula):
        f = f"<f>{escape(value.formula)}</f>"
        if value.cached is None:
            return f'<c r="{ref}">{f}</c>'
        if isinstance(value.cached, str):
            return f'<c r="{ref}" t="str">{f}<v>{escape(value.cached)}</v></c>'
        return f'<c r="{ref}">{f}<v>{value.cached!r}</v></c>'
    if isinstance(value, Num):
        style = ' s="1"' if value.date else ""
        return f'<c r="{ref}"{style}><v>{value.text}</v></c>'
    if isinstance(value, bool):
        return f'<c r="{ref}" t="b"><v>{int(value)}</v></c>'
    if isinstance(value, int | float):
        return f'<c r="{ref}"><v>{value!r}</v></c>'
    return f'<c r="{ref}" t="inlineStr"><is><t xml:space="preserve">{escape(str(value))}</t></is></c>'


def write_raw_xlsx(
    path: Path, rows: Sequence[Sequence[object]], *, merges: Sequence[str] = (), dimension: str | None = None
) -> Path:
    """Write a one-sheet workbook part by part; rows are lists of cell values (None = no cell)."""
    body = []
    for r, row in enumerate(rows, start=1):
        cells = "".join(_cell_xml(f"{get_column_letter(c)}{r}", v) for c, v in enumerate(row, start=1))
        if cells:
            body.append(f'<row r="{r}">{cells}</row>')
    width = max((len(r) for r in rows), default=1)
    dim = dimension or f"A1:{get_column_letter(width)}{max(len(rows), 1)}"
    merge_xml = ""
    if merges:
        merge_xml = f'<mergeCells count="{len(merges)}">' + "".join(f'<mergeCell ref="{m}"/>' for m in merges)
        merge_xml += "</mergeCells>"
    sheet = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
        f'<dimension ref="{dim}"/><sheetData>{"".join(body)}</sheetData>{merge_xml}</worksheet>'
    )
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", _CONTENT_TYPES)
        z.writestr("_rels/.rels", _RELS)
        z.writestr("xl/workbook.xml", _WORKBOOK)
        z.writestr("xl/_rels/workbook.xml.rels", _WORKBOOK_RELS)
        z.writestr("xl/styles.xml", _STYLES)
        z.writestr("xl/worksheets/sheet1.xml", sheet)
    return path


def _csv(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


# --------------------------------------------------------------------------- the corpus


def build(folder: Path) -> dict[str, Path]:
    """Write every corpus file into `folder`; returns {case: path}."""
    folder.mkdir(parents=True, exist_ok=True)
    c: dict[str, Path] = {}
    zh_rows = "姓名,手机号,社区,地址,身份证号,返回日期,备注,标签\n" + (
        f"张三,13800138000,阳光社区,幸福路1号,{ID_OK},2026/11/3,独居老人,返乡、老人\n"
        "李四,139-0013-9000,阳光社区,幸福路2号,,2026年11月4日,,\n"
        "王五,(010) 6552 9988,和平村,,,,,\n"
    )
    # Encodings
    c["utf8"] = _csv(
        folder / "utf8.csv",
        "name,phone,community,address,national_id,arrival_date,note,tags\n"
        f"Zhang San,13800138000,Sunshine,1 Happy Rd,{ID_OK},2026-11-03,lives alone,returnee\n"
        "Li Si,+8613900139000,Sunshine,2 Happy Rd,,,,\n",
    )
    c["bom"] = _csv(folder / "bom.csv", zh_rows, "utf-8-sig")
    c["gbk"] = _csv(folder / "gbk.csv", zh_rows, "gbk")
    c["gb18030"] = _csv(folder / "gb18030.csv", zh_rows.replace("王五", "王𠀾"), "gb18030")
    c["utf16_tab"] = _csv(folder / "unicode_text.txt", zh_rows.replace(",", "\t"), "utf-16")
    c["semicolon"] = _csv(folder / "semicolon.csv", zh_rows.replace(",", ";"))
    # Valid UTF-8 header, then bytes that are neither UTF-8 nor GB18030.
    bad = folder / "wrong_encoding.csv"
    bad.write_bytes("姓名,手机号\n".encode() + b"\xff\xfe\x80\x80,13800138000\n")
    c["wrong_encoding"] = bad
    # Unusable files
    c["empty_csv"] = _csv(folder / "empty.csv", "")
    c["blank_csv"] = _csv(folder / "blank.csv", "\n\n  \n,,\n")
    c["no_phone_column"] = _csv(folder / "no_phone.csv", "姓名,地址,备注\n张三,幸福路1号,\n")
    c["html_csv"] = _csv(folder / "really_html.csv", HTML_EXPORT)
    c["html_xlsx"] = _csv(folder / "really_html.xlsx", HTML_EXPORT)
    c["binary_csv"] = folder / "binary.csv"
    c["binary_csv"].write_bytes(bytes(range(256)) * 4)
    c["xlsx_named_csv"] = folder / "workbook_named.csv"
    c["zero_xlsx"] = folder / "zero.xlsx"
    c["zero_xlsx"].write_bytes(b"")
    c["corrupt_xlsx"] = folder / "corrupt.xlsx"
    c["corrupt_xlsx"].write_bytes(b"PK\x03\x04" + b"\x00garbage" * 50)
    c["old_xls"] = folder / "old.xls"
    c["old_xls"].write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 504)
    c["unknown_ext"] = _csv(folder / "list.pdf", "%PDF-1.4\n")
    c["xls_is_really_ole_named_xlsx"] = folder / "old_named.xlsx"
    c["xls_is_really_ole_named_xlsx"].write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 504)
    c["header_only"] = _csv(folder / "header_only.csv", "姓名,手机号\n")
    c["broken_quote"] = _csv(folder / "broken_quote.csv", '姓名,手机号\n"张三,13800138000\n', "utf-8")

    # Rows: duplicates (the same phone written three ways), bad phones, bad IDs and dates, floats
    c["duplicates"] = _csv(
        folder / "duplicates.csv",
        "姓名,手机,小区,地址,标签\n"
        "张三,13800138000,阳光社区,,返乡\n"
        ",+86 138 0013 8000,,幸福路1号,老人\n"
        "张三丰,8613800138000,,,返乡\n"
        "李四,13900139000,和平村,,\n",
    )
    c["bad_phones"] = _csv(
        folder / "bad_phones.csv",
        "姓名,联系电话\n" + "".join(f'居民{i},"{v}"\n' for i, (v, _) in enumerate(BAD_PHONES, start=1))
        + "好人,13800138000\n",
    )
    c["bad_fields"] = _csv(
        folder / "bad_fields.csv",
        "姓名,电话,身份证号,抵达日期,社区\n"
        f"甲,13800138001,{ID_BAD_CHECK},,\n"
        "乙,13800138002,12345,,\n"
        "丙,13800138003,,2026-02-30,\n"
        "丁,13800138004,,11/3/2026,\n"
        f"戊,13800138005,,,{'长' * 101}\n"
        f"己,12012345678,{ID_BAD_CHECK},,\n"
        f"庚,13800138006,{ID_OK_2.lower()},20261103,\n"
        f"辛,13800138007,{make_id('440524', '18800101', '001')},,\n",
    )
    c["floats_csv"] = _csv(
        folder / "floats.csv",
        "姓名,手机号\n甲,13800138000.0\n乙,1.3800138E+10\n丙,1.38001E+10\n丁,13900139000\n",
    )
    # XLSX like Excel writes them
    c["openpyxl_xlsx"] = folder / "plain.xlsx"
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.append(["姓名", "手机号码", "社区", "返回日期"])
    ws.append(["张三", "13800138000", "阳光社区", "2026-11-03"])
    ws.append(["李四", 13900139000, "和平村", None])
    wb.save(c["openpyxl_xlsx"])
    shutil.copy(c["openpyxl_xlsx"], c["xlsx_named_csv"])

    c["merged_header"] = write_raw_xlsx(
        folder / "merged_header.xlsx",
        [
            ["2026年11月阳光社区返乡人员名单", None, None, None, None, None],
            ["基本信息", None, "联系方式", None, "其他", None],
            ["序号", "姓名", "*手机号码（必填）", None, "返回日期", "备注"],
            [Num("1"), "张 三", "13800138000", "家属电话13700137000", Num("46329", date=True), "发热门诊"],
            [None, None, None, None, None, None],
            [Num("2"), "李四", "13900139000", None, "2026年11月4日", None],
        ],
        merges=["A1:F1", "A2:B2", "C2:D2", "E2:F2"],
    )
    c["formulas"] = write_raw_xlsx(
        folder / "formulas.xlsx",
        [
            ["姓名", "手机号", "社区", "返回日期"],
            [Formula('"张"&"三"', "张三"), Formula('"138"&"00138000"', "13800138000"), "阳光社区", Num("46329", date=True)],
            ["李四", Formula("13900139000+0", 13900139000.0), Formula('IF(1,"和平村","")', "和平村"), Num("46330")],
            ["王五", Formula('"137"&"00137000"', None), "阳光社区", None],
        ],
    )
    c["floats_xlsx"] = write_raw_xlsx(
        folder / "floats.xlsx",
        [
            ["姓名", "手机号", "身份证号", "返回日期"],
            ["甲", Num("13800138000.0"), None, Num("46329.375", date=True)],
            ["乙", Num("1.3900139E10"), None, None],
            ["丙", Num("13700137000"), Num("1.10105194912310E+17"), None],
            ["丁", Num("13600136000"), ID_OK, Num("20261103")],
        ],
    )
    # A wrong <dimension> (A1:B1) as some exporters write: every row must still be read.
    c["bad_dimension"] = write_raw_xlsx(
        folder / "bad_dimension.xlsx",
        [["姓名", "手机号"], ["张三", "13800138000"], ["李四", "13900139000"]],
        dimension="A1:B1",
    )
    return c
