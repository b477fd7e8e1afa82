"""Reading resident lists (CSV and XLSX) and normalising their rows.

The reader streams: `ContactFile.records()` yields one `ContactRow` (normalised, phone in E.164) or one
`RejectedRow` (row number as the user sees it in the file, original values, Chinese reason) per data row,
so a 100k-row file never sits in memory. Blank rows are skipped silently.

Files that cannot be used at all (not found, unknown format, HTML saved as .csv, corrupt .xlsx, no phone
column, undecodable text) raise `ImportFileError`, whose message names the file and, for a missing phone
column, the columns that were found. Everything except opening and reading the file is pure:
`normalize_phone`, `check_national_id`, `parse_date`, `map_headers`.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import itertools
import logging
import math
import operator
import os
import posixpath
import re
import unicodedata
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal
from xml.etree.ElementTree import ParseError, iterparse

import phonenumbers

from common.atomic import sweep_stale_parts
from results.cells import formula_safe
from results.limits import ADDRESS_MAX, COMMUNITY_MAX, NAME_MAX, NOTE_MAX, TAG_MAX, TAGS_MAX

log = logging.getLogger(__name__)

__all__ = [
    "FIELDS",
    "ContactFile",
    "ContactRow",
    "ImportFileError",
    "InvalidValue",
    "RejectedRow",
    "RejectsWriter",
    "UncalculatedFormula",
    "XlsxStream",
    "check_national_id",
    "default_rejects_path",
    "map_headers",
    "normalize_phone",
    "open_contacts",
    "parse_date",
]

Kind = Literal["csv", "xlsx"]

#: Fields of a resident row, in the order the store keeps them.
FIELDS = ("name", "phone", "community", "address", "national_id", "arrival_date", "note", "tags")

_ALIASES: dict[str, tuple[str, ...]] = {
    "name": ("姓名", "名字", "居民姓名", "人员姓名", "name", "fullname", "full name", "residentname"),
    "phone": (
        "手机号", "手机", "手机号码", "电话", "电话号码", "联系电话", "联系方式", "联系号码", "移动电话",
        "phone", "mobile", "tel", "telephone", "phonenumber", "phone number", "mobilephone", "cellphone", "cell",
    ),
    "community": (
        "社区", "小区", "村", "社区/村", "社区(村)", "村/社区", "所属社区", "居委会", "村居", "村(居)", "社区名称",
        "community",
    ),
    "address": ("地址", "住址", "现住址", "居住地址", "详细地址", "家庭住址", "现居住地址", "address"),
    "national_id": (
        "身份证号", "身份证", "身份证号码", "证件号码", "证件号", "公民身份号码", "nationalid", "national_id",
        "idnumber", "id number", "idcard", "id_card", "idno",
    ),
    "arrival_date": (
        "返回日期", "抵达日期", "到达日期", "返乡日期", "来返日期", "抵达时间", "返回时间", "到达时间", "入境日期",
        "arrivaldate", "arrival_date", "arrival date", "arrival",
    ),
    "note": ("备注", "说明", "备注信息", "note", "notes", "remark", "remarks", "comment", "comments"),
    "tags": ("标签", "人员类别", "人员类型", "tags", "tag", "labels"),
}


def _norm_header(value: object) -> str:
    """`' *手机号码（必填）'` -> `'手机号码'`; English is lower-cased, spaces and `_`/`-` dropped."""
    if value is None:
        return ""
    s = unicodedata.normalize("NFKC", str(value)).strip().lower()
    s = re.sub(r"[\(\[【<]\s*(必填|选填|必须|可选|required|optional)\s*[\)\]】>]", "", s)
    return re.sub(r"[\s_\-*:：#]", "", s)


HEADER_ALIASES: dict[str, str] = {_norm_header(a): f for f, aliases in _ALIASES.items() for a in aliases}


class ImportFileError(Exception):
    """The file cannot be imported at all (exit 2). The message names the file."""

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class InvalidValue(ValueError):
    """One cell cannot be used; the message is the Chinese reason shown in the rejects file."""


@dataclass(frozen=True, slots=True)
class ContactRow:
    """A normalised resident row. `row` is the row number as the user sees it in the file."""

    row: int
    phone: str  # E.164, e.g. +8613800138000
    name: str = ""
    community: str = ""
    address: str = ""
    national_id: str | None = None
    arrival_date: dt.date | None = None
    note: str = ""
    tags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RejectedRow:
    """A row that cannot be imported: its row number, its original cell values and the reason (Chinese)."""

    row: int
    values: tuple[object, ...]
    reason: str
    sheet: str | None = None  # the worksheet, when a workbook's sheets are read together


# --------------------------------------------------------------------------- pure normalisation



def _cn_mobile_pattern() -> str:
    """libphonenumber's pattern of valid CN mobile numbers (a fast path that stays in sync with it)."""
    meta = phonenumbers.PhoneMetadata.metadata_for_region("CN")
    pattern = meta.mobile.national_number_pattern if meta is not None and meta.mobile is not None else None
    if not pattern:
        raise RuntimeError("phonenumbers has no CN mobile metadata")
    return str(pattern)


_MOBILE_RE = re.compile(_cn_mobile_pattern())
# The common case, checked first: a plain valid mobile (libphonenumber's own pattern, ASCII digits only).
_FAST_MOBILE_RE = re.compile(r"(?=1[0-9]{10}$)(?:" + _cn_mobile_pattern() + ")", re.ASCII)
_SCI_RE = re.compile(r"[+]?(\d+)(?:\.(\d+))?[eE][+]?(\d+)")
_DECIMAL_ZERO_RE = re.compile(r"(\d+)\.0+")
_DECIMAL_RE = re.compile(r"\d{7,}\.\d{1,3}")
_EXTENSION_RE = re.compile(r"(转|分机|ext\.?|x|#)\s*\d{1,6}$", re.IGNORECASE)
_MASKED_RE = re.compile(r"\d[*＊xX×]{2,}\d|[*＊]")
_PHONE_CHARS_RE = re.compile(r"[\d\s\-+().]+")
_PHONE_STRIP_RE = re.compile(r"[\s\-().]")
_MULTI_SPLIT_RE = re.compile(r"[/、,，;；|]")
_OK_TYPES = {phonenumbers.PhoneNumberType.FIXED_LINE, phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE}


def _scalar_text(value: object) -> str:
    """Cell value as text the way a user would type it: 13800138000.0 (a float cell) -> '13800138000'."""
    if value is None or isinstance(value, UncalculatedFormula):
        return ""
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer():
            return str(int(value))
        return repr(value)
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    return str(value)


def normalize_phone(value: object) -> str:
    """A phone cell -> E.164 (`+8613800138000`, `+861065529988`).

    Accepts mobiles, +86 / 0086 / 86 prefixes, landlines with area code, separators, full-width digits and
    Excel numeric cells (13800138000.0, '1.3800138E+10'). Raises `InvalidValue` with a Chinese reason.
    """
    if value is None:
        raise InvalidValue("手机号为空")
    if isinstance(value, UncalculatedFormula):
        raise InvalidValue(_NO_RESULT.format(what="号码", formula=value))
    if isinstance(value, bool) or isinstance(value, dt.date | dt.time | dt.timedelta):
        raise InvalidValue(f"号码单元格不是数字（{_scalar_text(value)}）")
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        raise InvalidValue(f"号码不是整数（{value!r}）")
    s = unicodedata.normalize("NFKC", _scalar_text(value)).strip()
    if not s:
        raise InvalidValue("手机号为空")
    sci = _SCI_RE.fullmatch(s)
    if sci:
        try:
            number = Decimal(s)
        except InvalidOperation as exc:  # pragma: no cover - the regex only lets numbers through
            raise InvalidValue(f"号码不是数字（{s}）") from exc
        mantissa = (sci.group(1) + (sci.group(2) or "")).lstrip("0").rstrip("0")
        if number != number.to_integral_value() or (len(mantissa) <= 6 and number >= 10**8):
            raise InvalidValue(f"号码被 Excel 显示成科学计数法（{s}），后几位已丢失；请把该列设为文本后重新导出")
        s = str(int(number))
    else:
        m = _DECIMAL_ZERO_RE.fullmatch(s)
        if m:
            s = m.group(1)
        elif _DECIMAL_RE.fullmatch(s):
            raise InvalidValue(f"号码不是整数（{s}）")
    if _MASKED_RE.search(s):
        raise InvalidValue(f"号码被打码（{s}），无法拨打")
    if _EXTENSION_RE.search(s):
        raise InvalidValue(f"号码含分机号（{s}），机器人无法拨分机")
    if s.lower().startswith("tel:"):
        s = s[4:]
    if not _PHONE_CHARS_RE.fullmatch(s):
        raise InvalidValue(f"号码含非数字字符（{s}）")
    digits = _PHONE_STRIP_RE.sub("", s)
    if digits.count("+") > 1 or "+" in digits[1:]:
        raise InvalidValue(f"号码格式不对（{s}）")
    if not digits.lstrip("+"):
        raise InvalidValue(f"号码不是数字（{s}）")
    if digits.startswith("+"):
        digits = digits[1:]
        if not digits.startswith("86"):
            raise InvalidValue(f"非中国大陆号码（{_country_of(digits)}），不能外呼")
        national = digits[2:]
    elif digits.startswith("00"):
        if not digits.startswith("0086"):
            raise InvalidValue(f"非中国大陆号码（{_country_of(digits[2:])}），不能外呼")
        national = digits[4:]
    elif digits.startswith("861") and len(digits) == 13:
        national = digits[2:]
    else:
        national = digits
    n = len(national)
    if national.startswith("10") and national is not digits and n in (10, 11):
        return _fixed_line("0" + national, s)  # +86 10 6552 9988: Beijing's area code without its 0
    if national.startswith("1"):
        if n == 11:
            if _MOBILE_RE.fullmatch(national):
                return "+86" + national
            raise InvalidValue(f"手机号段不存在（{national[:3]} 开头）")
        if n <= 6:
            raise InvalidValue(f"服务号码（{national}）不能外呼")
        if n < 11:
            raise InvalidValue(f"手机号位数太短（{n} 位，应为 11 位）")
        raise InvalidValue(f"手机号位数太长（{n} 位，应为 11 位）")
    if national.startswith("0"):
        if n < 10:
            raise InvalidValue(f"固定电话位数太短（{n} 位，应为 区号+号码）")
        if n > 12:
            raise InvalidValue(f"固定电话位数太长（{n} 位）")
        return _fixed_line(national, s)
    if national[:3] in ("400", "800") and n == 10:
        raise InvalidValue(f"400/800 服务号码（{national}）不能外呼")
    if n <= 6:
        raise InvalidValue(f"号码位数太短（{n} 位）")
    if n in (7, 8):
        raise InvalidValue(f"固定电话缺少区号（{national}），请写成 区号-号码，如 010-65529988")
    if n > 12:
        raise InvalidValue(f"号码位数太长（{n} 位）")
    return _fixed_line("0" + national, s)


def _country_of(international: str) -> str:
    """'16502530000' -> '+1'; the calling code of an international number, as far as it can be told."""
    try:
        return f"+{phonenumbers.parse('+' + international, None).country_code}"
    except phonenumbers.NumberParseException:
        return "+" + international[:3]


def _fixed_line(national: str, shown: str) -> str:
    try:
        parsed = phonenumbers.parse(national, "CN")
    except phonenumbers.NumberParseException as exc:
        raise InvalidValue(f"不是有效的电话号码（{shown}）") from exc
    if not phonenumbers.is_valid_number(parsed) or phonenumbers.number_type(parsed) not in _OK_TYPES:
        raise InvalidValue(f"固定电话号码无效，区号或位数不对（{shown}）")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


_NO_RESULT = "{what}单元格是公式但没有计算结果（{formula}），请在 Excel 中打开、保存后重新导入"
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
_ID_RE = re.compile(r"\d{17}[\dX]")


def check_national_id(value: object, *, today: dt.date | None = None) -> str | None:
    """An 18-digit resident ID (GB 11643) -> its canonical form (upper-case X), None when empty.

    Raises `InvalidValue` for a wrong length, characters, birth date or check digit, and for IDs that Excel
    turned into numbers (which lose their last digits).
    """
    if value is None:
        return None
    if isinstance(value, UncalculatedFormula):
        raise InvalidValue(_NO_RESULT.format(what="身份证号", formula=value))
    if isinstance(value, float):
        raise InvalidValue("身份证号被 Excel 存成了数字，后几位已丢失；请把该列设为文本后重新导出")
    s = str(value)
    if not (len(s) == 18 and s.isascii()):
        s = re.sub(r"\s", "", unicodedata.normalize("NFKC", s))
    s = s.upper()
    if not s:
        return None
    if _SCI_RE.fullmatch(s):
        raise InvalidValue(f"身份证号被 Excel 显示成科学计数法（{s}），后几位已丢失")
    if len(s) == 15 and s.isdigit():
        raise InvalidValue("15 位旧身份证号，请换成 18 位")
    if len(s) != 18:
        raise InvalidValue(f"身份证号应为 18 位（实际 {len(s)} 位）")
    if not _ID_RE.fullmatch(s):
        raise InvalidValue("身份证号含非法字符")
    try:
        born = dt.date(int(s[6:10]), int(s[10:12]), int(s[12:14]))
    except ValueError as exc:
        raise InvalidValue(f"身份证号中的出生日期无效（{s[6:14]}）") from exc
    if born.year < 1890 or born > (today or dt.date.today()):
        raise InvalidValue(f"身份证号中的出生日期无效（{s[6:14]}）")
    total = sum(map(operator.mul, map(int, s[:17]), _ID_WEIGHTS))
    if _ID_CHECK[total % 11] != s[17]:
        raise InvalidValue("身份证号校验位错误")
    return s


_DATE_RE = re.compile(
    r"(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?"
    r"(?:[ T]+\d{1,2}[:：]\d{2}(?:[:：]\d{2}(?:\.\d+)?)?)?"
)
_COMPACT_DATE_RE = re.compile(r"(\d{4})(\d{2})(\d{2})")
_EXCEL_EPOCH = dt.date(1899, 12, 30)
MIN_DATE = dt.date(2000, 1, 1)
MAX_DATE = dt.date(2100, 12, 31)


def parse_date(value: object) -> dt.date | None:
    """An arrival date cell -> date; None when empty.

    Accepts Excel date cells, Excel serial numbers (46329), `2026-11-03`, `2026/11/3`, `2026.11.3`,
    `2026年11月3日`, `20261103`, with an optional time. Raises `InvalidValue` with a Chinese reason.
    """
    if value is None:
        return None
    if isinstance(value, UncalculatedFormula):
        raise InvalidValue(_NO_RESULT.format(what="日期", formula=value))
    if isinstance(value, dt.datetime):
        return _check_range(value.date())
    if isinstance(value, dt.date):
        return _check_range(value)
    if isinstance(value, bool):
        raise InvalidValue(f"日期无法识别（{value}）")
    if isinstance(value, int | float):
        if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
            if math.isfinite(value) and 1 <= value < 200000:
                value = int(value)  # a date serial with a time part
            else:
                raise InvalidValue(f"日期无法识别（{value!r}）")
        v = int(value)
        if 19000101 <= v <= 21001231:
            return _ymd(str(v)[:4], str(v)[4:6], str(v)[6:], str(v))
        if 1 <= v < 200000:
            return _check_range(_EXCEL_EPOCH + dt.timedelta(days=v))
        raise InvalidValue(f"日期无法识别（{v}）")
    s = str(value).strip()
    if not s.isascii():
        s = unicodedata.normalize("NFKC", s)
    if not s:
        return None
    m = _DATE_RE.fullmatch(s) or _COMPACT_DATE_RE.fullmatch(s)
    if not m:
        raise InvalidValue(f"日期无法识别（{s}），请写成 2026-11-03 或 2026年11月3日")
    return _ymd(m.group(1), m.group(2), m.group(3), s)


def _ymd(y: str, m: str, d: str, shown: str) -> dt.date:
    try:
        day = dt.date(int(y), int(m), int(d))
    except ValueError as exc:
        raise InvalidValue(f"日期不存在（{shown}）") from exc
    return _check_range(day)


def _check_range(d: dt.date) -> dt.date:
    if not MIN_DATE <= d <= MAX_DATE:
        raise InvalidValue(f"日期超出合理范围（{d.isoformat()}）")
    return d


_TAG_SPLIT_RE = re.compile(r"[,，、;；|/\s]+")
_CJK_SPACES_RE = re.compile(r"(?<=[\u3400-\u9fff])\s+(?=[\u3400-\u9fff])")
_SPACES_RE = re.compile(r"\s+")


def _clean_text(value: object) -> str:
    if type(value) is str:
        return " ".join(value.split())
    s = _scalar_text(value).strip()
    if isinstance(value, dt.datetime) and value.time() == dt.time():
        s = value.date().isoformat()
    return _SPACES_RE.sub(" ", s)


def _clean_name(value: object) -> str:
    """`'张  三'` -> `'张三'` (lists pad two-character names); other whitespace collapses to one space."""
    s = _clean_text(value)
    return _CJK_SPACES_RE.sub("", s) if " " in s else s


def _split_tags(value: object) -> tuple[str, ...]:
    out: dict[str, None] = {}
    for t in _TAG_SPLIT_RE.split(_clean_text(value)):
        if t:
            out[t] = None
    return tuple(out)


def map_headers(cells: Sequence[object]) -> dict[str, list[int]]:
    """Header cells -> {field: [column indexes]} for the cells that name a known field (aliases, any case)."""
    out: dict[str, list[int]] = {}
    for i, cell in enumerate(cells):
        f = HEADER_ALIASES.get(_norm_header(cell))
        if f is not None:
            out.setdefault(f, []).append(i)
    return out


class _RowBuilder:
    """Turns one row of cell values into a ContactRow or RejectedRow (pure)."""

    def __init__(self, columns: dict[str, list[int]], today: dt.date | None = None) -> None:
        self.columns = columns
        self.today = today or dt.date.today()
        self._phone = tuple(columns.get("phone", ()))
        single = {f: idx[0] for f, idx in columns.items() if f != "phone"}
        # -1: the file has no such column
        self._idx = tuple(single.get(f, -1) for f in ("name", "community", "address", "national_id",
                                                          "arrival_date", "note", "tags"))

    def build(self, rownum: int, cells: Sequence[object]) -> ContactRow | RejectedRow | None:
        if all(c is None or (isinstance(c, str) and not c.strip()) for c in cells):
            return None
        width = len(cells)
        reasons: list[str] = []
        raw_phone: object = None
        for i in self._phone:
            if i < width:
                c = cells[i]
                if c is not None and (not isinstance(c, str) or c.strip()):
                    raw_phone = c
                    break
        note_extra = ""
        phone = ""
        try:
            if isinstance(raw_phone, str) and _FAST_MOBILE_RE.fullmatch(raw_phone):
                phone = "+86" + raw_phone
            else:
                phone, note_extra = self._phone_of(raw_phone)
        except InvalidValue as exc:
            reasons.append(str(exc))
        v_name, v_community, v_address, v_id, v_date, v_note, v_tags = (
            cells[i] if 0 <= i < width else None for i in self._idx
        )
        name = _clean_name(v_name)
        community = _clean_text(v_community)
        address = _clean_text(v_address)
        for label, text, limit in (("姓名", name, NAME_MAX), ("社区", community, COMMUNITY_MAX),
                                   ("地址", address, ADDRESS_MAX)):
            if len(text) > limit:
                reasons.append(f"{label}过长（{len(text)} 字，最多 {limit} 字）")
        note = _scalar_text(v_note).strip()
        if len(note) > NOTE_MAX:
            reasons.append(f"备注过长（{len(note)} 字，最多 {NOTE_MAX} 字）")
        tags = _split_tags(v_tags) if v_tags is not None else ()
        if len(tags) > TAGS_MAX:
            reasons.append(f"标签太多（{len(tags)} 个，最多 {TAGS_MAX} 个）")
        long_tag = next((t for t in tags if len(t) > TAG_MAX), None)
        if long_tag is not None:
            reasons.append(f"标签过长（{len(long_tag)} 字，每个最多 {TAG_MAX} 字）")
        national_id: str | None = None
        if v_id is not None:
            try:
                national_id = check_national_id(v_id, today=self.today)
            except InvalidValue as exc:
                reasons.append(str(exc))
        arrival: dt.date | None = None
        if v_date is not None:
            try:
                arrival = parse_date(v_date)
            except InvalidValue as exc:
                msg = str(exc)
                reasons.append("返回日期" + msg[2:] if msg.startswith("日期") else f"返回日期：{msg}")
        if reasons:
            return RejectedRow(rownum, tuple(cells), "；".join(reasons))
        if note_extra:
            note = f"{note}；{note_extra}" if note else note_extra
        return ContactRow(rownum, phone, name, community, address, national_id, arrival, note, tags)

    @staticmethod
    def _phone_of(raw: object) -> tuple[str, str]:
        """The cell's phone and, when it lists several numbers, a note naming the others."""
        if isinstance(raw, str) and _MULTI_SPLIT_RE.search(raw):
            parts = [p.strip() for p in _MULTI_SPLIT_RE.split(raw) if p.strip()]
            if len(parts) > 1:
                first_error: InvalidValue | None = None
                for i, part in enumerate(parts):
                    try:
                        phone = normalize_phone(part)
                    except InvalidValue as exc:
                        first_error = first_error or exc
                        continue
                    others = [p for j, p in enumerate(parts) if j != i]
                    return phone, "其他号码：" + "、".join(others)
                assert first_error is not None
                raise first_error
        return normalize_phone(raw), ""


# --------------------------------------------------------------------------- files

HEADER_SCAN_ROWS = 10
_SNIFF_BYTES = 64 * 1024
_CHUNK = 1 << 20
_HTML_START = ("<!doctype", "<html", "<table", "<?xml", "<head", "<body", "<meta", "<div", "<!--")


def _looks_like_html(head: bytes) -> bool:
    text = head[:2048].decode("utf-8", errors="ignore").lstrip("\ufeff \t\r\n").lower()
    return text.startswith(_HTML_START) or "<html" in text[:1024]


def _magic_problem(head: bytes, expected: Kind) -> str | None:
    """A clear reason when the bytes are obviously not the expected format."""
    if head.startswith(b"\xd0\xcf\x11\xe0"):
        return "this is an old Excel 97-2003 (.xls) workbook; open it in Excel and save as .xlsx or CSV"
    if head.startswith(b"%PDF"):
        return "this is a PDF document, not a CSV or .xlsx table"
    if _looks_like_html(head):
        return (
            "this is an HTML page (web systems often export HTML named .xls/.csv), not "
            + ("CSV text" if expected == "csv" else "an .xlsx workbook")
            + "; open it in Excel and save as .xlsx or CSV"
        )
    if expected == "csv" and head.startswith(b"PK\x03\x04"):
        return "this is a zip archive or an .xlsx workbook named .csv; rename it to .xlsx if it is a workbook"
    if expected == "xlsx" and not head.startswith(b"PK\x03\x04"):
        return "not a valid .xlsx workbook (it is not a zip archive)"
    return None


def default_rejects_path(path: str | os.PathLike[str]) -> Path:
    """`dir/list.xlsx` -> `dir/list.rejects.xlsx`."""
    p = Path(path)
    return p.with_name(f"{p.stem}.rejects{p.suffix.lower()}")


class ContactFile:
    """An opened resident list. Use `open_contacts(path)`; iterate `records()`; close (or use `with`)."""

    def __init__(self, path: Path, kind: Kind) -> None:
        self.path = path
        self.kind: Kind = kind
        self.headers: tuple[str, ...] = ()
        self.columns: dict[str, list[int]] = {}
        self.header_row = 0  # 1-based row / line of the header
        self.encoding: str | None = None
        self.delimiter = ","
        self.sheet: str | None = None  # the first worksheet read
        self.sheets_read: list[str] = []  # every worksheet imported (xlsx)
        self.sheets_skipped: list[tuple[str, str]] = []  # (worksheet, why) for those without a phone column
        self.sheet_count = 0
        # (worksheet, column map, rows) of every worksheet read; empty for CSV (self.columns, self._rows)
        self._parts: list[tuple[str | None, dict[str, list[int]], Iterator[tuple[int, Sequence[object]]]]] = []
        self.total_hint: int | None = None  # about how many data rows follow the header (for progress)
        self._close: list[Any] = []
        self._rows: Iterator[tuple[int, Sequence[object]]] = iter(())

    # -- context manager
    def __enter__(self) -> ContactFile:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        while self._close:
            self._close.pop().close()

    def records(self) -> Iterator[ContactRow | RejectedRow]:
        """Every data row after the header: normalised or rejected; blank rows are skipped."""
        parts = self._parts or [(None, self.columns, self._rows)]
        multi = len(parts) > 1
        for sheet, columns, rows in parts:
            builder = _RowBuilder(columns)
            for rownum, cells in rows:
                item = builder.build(rownum, cells)
                if item is None:
                    continue
                if multi and isinstance(item, RejectedRow):
                    item = RejectedRow(item.row, item.values, item.reason, sheet)
                yield item

    # -- opening
    def _set_header(self, cells: Sequence[object], rownum: int) -> None:
        self.headers = tuple("" if c is None else str(c).strip() for c in cells)
        self.columns = map_headers(cells)
        self.header_row = rownum

    def _find_header(self, rows: Iterator[tuple[int, Sequence[object]]]) -> Iterator[tuple[int, Sequence[object]]]:
        """Find the header among the first rows and return the rows after it.

        Title rows and merged group headers above the header are allowed: of the first non-blank rows, the
        one naming a phone column and the most known columns is the header.
        """
        buffered: list[tuple[int, Sequence[object]]] = []
        best: tuple[int, int] | None = None  # (known columns, index in buffered)
        first_nonblank: Sequence[object] | None = None
        nonblank = 0
        for rownum, cells in rows:
            buffered.append((rownum, cells))
            if not any(c is not None and str(c).strip() for c in cells):
                continue
            if first_nonblank is None:
                first_nonblank = cells
            cols = map_headers(cells)
            if "phone" in cols and (best is None or len(cols) > best[0]):
                best = (len(cols), len(buffered) - 1)
            nonblank += 1
            if nonblank >= HEADER_SCAN_ROWS:
                break
        if best is not None:
            rownum, cells = buffered[best[1]]
            self._set_header(cells, rownum)
            return itertools.chain(buffered[best[1] + 1 :], rows)
        if first_nonblank is None:
            raise ImportFileError(self.path, "the file has no rows (it is empty)")
        found = [str(c).strip() for c in first_nonblank if c is not None and str(c).strip()]
        shown = "、".join(found[:30]) if found else "(none)"
        raise ImportFileError(
            self.path,
            f"no phone column: none of the first {HEADER_SCAN_ROWS} rows has a header like 手机号/手机/电话/"
            f"联系电话/phone; columns found: {shown}",
        )


def open_contacts(path: str | os.PathLike[str], *, sheet: str | None = None) -> ContactFile:
    """Open a .csv or .xlsx resident list and read its header. Raises `ImportFileError`.

    A workbook: every worksheet with a phone column is read (in order), or only `sheet` when given; the
    ContactFile names the sheets read and the ones skipped.
    """
    p = Path(path)
    if not p.exists():
        raise ImportFileError(p, "file not found")
    if not p.is_file():
        raise ImportFileError(p, "not a regular file")
    suffix = p.suffix.lower()
    if _is_encrypted_office(p):
        raise ImportFileError(
            p, "the workbook is encrypted (password-protected); open it in Excel, remove the password "
            "(File > Info > Protect Workbook > Encrypt with Password), save it and import it again",
        )
    if sheet is not None and suffix not in (".xlsx", ".xlsm"):
        raise ImportFileError(p, f"--sheet {sheet!r}: only .xlsx workbooks have worksheets")
    if suffix in (".csv", ".txt", ".tsv"):
        return _open_csv(p)
    if suffix in (".xlsx", ".xlsm"):
        return _open_xlsx(p, sheet)
    if suffix == ".xls":
        raise ImportFileError(p, "old .xls workbooks are not supported; open it in Excel and save as .xlsx or CSV")
    raise ImportFileError(p, f"unknown format {suffix or '(no extension)'!r}: use .csv or .xlsx")


_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_ENCRYPTED_STREAM = "EncryptedPackage".encode("utf-16-le")


def _is_encrypted_office(p: Path) -> bool:
    """An OLE compound file holding an EncryptedPackage stream: a password-protected .xlsx (whatever its name)."""
    try:
        with p.open("rb") as f:
            if f.read(8) != _OLE_MAGIC:
                return False
            f.seek(0)
            tail = b""
            while chunk := f.read(_CHUNK):
                if _ENCRYPTED_STREAM in tail + chunk:
                    return True
                tail = chunk[-len(_ENCRYPTED_STREAM):]
    except OSError:
        return False
    return False


def _read_head(p: Path) -> bytes:
    try:
        with p.open("rb") as f:
            return f.read(_SNIFF_BYTES)
    except OSError as exc:
        raise ImportFileError(p, f"cannot read: {exc.strerror or exc}") from exc


def _utf16_without_bom(head: bytes) -> str | None:
    """'utf-16-le' / 'utf-16-be' for UTF-16 text without a byte order mark (Excel's "Unicode text" saved by
    some tools): ASCII characters (digits, commas, line ends) leave a zero byte beside each of them."""
    sample = head[: len(head) - len(head) % 2]
    if len(sample) < 4:
        return None
    odd = sample[1::2].count(0)
    even = sample[0::2].count(0)
    half = len(sample) // 2
    if odd >= half * 0.3 and even <= half * 0.05:
        enc = "utf-16-le"
    elif even >= half * 0.3 and odd <= half * 0.05:
        enc = "utf-16-be"
    else:
        return None
    try:
        sample.decode(enc)
    except UnicodeDecodeError:
        return None
    return enc


_ENCODING_NAMES = {"utf-8": "UTF-8", "gb18030": "GBK/GB18030", "utf-8-sig": "UTF-8", "utf-16": "UTF-16",
                   "utf-16-le": "UTF-16", "utf-16-be": "UTF-16"}


def _detect_encoding(p: Path, head: bytes, forced: str | None = None) -> tuple[str, int]:
    """The text encoding (utf-8-sig, utf-16, utf-8 or gb18030) and the number of lines, in one binary pass.

    An undecodable file is reported with the line (row) where each encoding fails."""
    if forced:
        candidates = [forced]
    elif head.startswith(codecs.BOM_UTF8):
        candidates = ["utf-8-sig"]
    elif head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        candidates = ["utf-16"]
    else:
        candidates = ["utf-8", "gb18030"]
    errors: list[str] = []
    for enc in candidates:
        decoder = codecs.getincrementaldecoder(enc)("strict")
        lines = 0
        offset = 0
        try:
            with p.open("rb") as f:
                while chunk := f.read(_CHUNK):
                    try:
                        decoder.decode(chunk)
                    except UnicodeDecodeError as exc:
                        line = lines + chunk[: max(exc.start, 0)].count(b"\n") + 1
                        bad = chunk[exc.start : exc.start + 1].hex()
                        errors.append(f"{_ENCODING_NAMES.get(enc, enc)} fails on line {line} (byte 0x{bad})")
                        raise
                    lines += chunk.count(b"\n")
                    offset += len(chunk)
                decoder.decode(b"", final=True)
        except UnicodeDecodeError as exc:
            if len(errors) < candidates.index(enc) + 1:
                errors.append(f"{_ENCODING_NAMES.get(enc, enc)} fails at the end of the file (byte {offset + exc.start})")
            continue
        except OSError as exc:
            raise ImportFileError(p, f"cannot read: {exc.strerror or exc}") from exc
        return enc, lines
    raise ImportFileError(
        p,
        "cannot decode the text as " + " or ".join(_ENCODING_NAMES.get(e, e) for e in candidates)
        + " (" + "; ".join(errors) + "); fix that row, or save the file from Excel as 'CSV UTF-8' or as .xlsx",
    )


def _open_csv(p: Path) -> ContactFile:
    head = _read_head(p)
    if not head:
        raise ImportFileError(p, "the file is empty (0 bytes)")
    problem = _magic_problem(head, "csv")
    if problem:
        raise ImportFileError(p, problem)
    forced: str | None = None
    if b"\x00" in head and not head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        forced = _utf16_without_bom(head)
        if forced is None:
            line = head[: head.index(b"\x00")].count(b"\n") + 1
            raise ImportFileError(
                p, f"line {line} holds a NUL byte: this is a binary file, not CSV text "
                "(UTF-16 text is read too, but this is not UTF-16)",
            )
    encoding, lines = _detect_encoding(p, head, forced)
    text: IO[str] = p.open("r", encoding=encoding, newline="")
    cf = ContactFile(p, "csv")
    cf.encoding = encoding
    cf._close.append(text)
    try:
        first = head[: len(head) - len(head) % 2 if encoding.startswith("utf-16") else len(head)].decode(
            encoding, errors="ignore").lstrip("\ufeff").splitlines()
        sample = next((ln for ln in first if ln.strip()), "")
        counts = {d: sample.count(d) for d in (",", "\t", ";", "|")}
        best = max(counts, key=lambda d: counts[d])
        cf.delimiter = best if counts[best] else ","
        # strict: an unbalanced quote must not silently swallow the rest of the file into one cell
        reader = csv.reader(text, delimiter=cf.delimiter, strict=True)

        def rows() -> Iterator[tuple[int, Sequence[object]]]:
            start = 1
            try:
                for cells in reader:
                    yield start, cells
                    start = reader.line_num + 1
            except csv.Error as exc:
                raise ImportFileError(p, f"line {start}: broken CSV ({exc}); check the quotes (\") in that row") from exc

        it = rows()
        cf._rows = cf._find_header(it)
        cf.total_hint = max(lines - cf.header_row, 0) or None
    except BaseException:
        cf.close()
        raise
    return cf


def _open_xlsx(p: Path, sheet: str | None = None) -> ContactFile:
    head = _read_head(p)
    if not head:
        raise ImportFileError(p, "the file is empty (0 bytes), not an .xlsx workbook")
    problem = _magic_problem(head, "xlsx")
    if problem:
        raise ImportFileError(p, problem)
    try:
        book = XlsxStream(p)
    except _XLSX_ERRORS as exc:
        raise ImportFileError(p, f"corrupt .xlsx workbook: {type(exc).__name__}: {exc}") from exc
    cf = ContactFile(p, "xlsx")
    cf._close.append(book)
    try:
        if not book.sheets:
            raise ImportFileError(p, "the workbook has no worksheets")
        cf.sheet_count = len(book.sheets)
        names = [title for title, _ in book.sheets]
        chosen = book.sheets
        if sheet is not None:
            chosen = [(t, part) for t, part in book.sheets if t == sheet] or [
                (t, part) for t, part in book.sheets if t.strip().casefold() == sheet.strip().casefold()
            ]
            if not chosen:
                raise ImportFileError(p, f"--sheet {sheet!r}: the workbook has no such worksheet; its sheets: "
                                      + "、".join(names))
        first_error: ImportFileError | None = None
        hint_total = 0
        for title, part in chosen:
            try:
                rows = cf._find_header(_xlsx_rows(p, book.rows(part)))
            except ImportFileError as exc:
                if sheet is not None:
                    raise ImportFileError(p, f"worksheet {title!r}: {exc.problem}") from exc
                first_error = first_error or exc
                cf.sheets_skipped.append((title, "没有手机号列" if "no phone column" in exc.problem else "空表"))
                continue
            if cf.sheet is None:
                cf.sheet = title
                first_headers, first_columns, first_row = cf.headers, cf.columns, cf.header_row
            cf.sheets_read.append(title)
            cf._parts.append((title, cf.columns, rows))
            dims = book.dimension_rows(part)
            hint_total += max((dims or 0) - cf.header_row, 0)
        if not cf._parts:
            assert first_error is not None
            if len(chosen) > 1:
                raise ImportFileError(p, f"no worksheet has a phone column (sheets: {'、'.join(names)}); "
                                      f"first sheet: {first_error.problem}")
            raise first_error
        cf.headers, cf.columns, cf.header_row = first_headers, first_columns, first_row
        cf._rows = cf._parts[0][2]
        cf.total_hint = hint_total or None
        return cf
    except BaseException:
        cf.close()
        raise


def _xlsx_rows(p: Path, rows: Iterator[tuple[int, list[object]]]) -> Iterator[tuple[int, Sequence[object]]]:
    n = 0
    try:
        for n, cells in rows:
            yield n, cells
    except _XLSX_ERRORS as exc:
        raise ImportFileError(p, f"corrupt .xlsx workbook after row {n}: {type(exc).__name__}: {exc}") from exc


class UncalculatedFormula(str):
    """A formula cell without a stored result (written by a tool that does not calculate): '=A1&B1'."""

    __slots__ = ()


_REL_NS = ("http://schemas.openxmlformats.org/officeDocument/2006/relationships",
           "http://purl.oclc.org/ooxml/officeDocument/relationships")
_MAIN_NS = ("http://schemas.openxmlformats.org/spreadsheetml/2006/main", "http://purl.oclc.org/ooxml/spreadsheetml/main")
# Built-in number formats that are dates (14-17, 22) and the CJK-locale date formats (27-36, 50-58).
_BUILTIN_DATE_FORMATS = frozenset([14, 15, 16, 17, 22, *range(27, 37), *range(50, 59)])
_MAX_COLUMNS = 16384
_MAX_DATE_SERIAL = 2958465  # 9999-12-31, Excel's last date
# What a damaged workbook raises while it is read; reported as a corrupt .xlsx.
_XLSX_ERRORS = (
    zipfile.BadZipFile, KeyError, IndexError, ValueError, OverflowError, OSError, EOFError, ParseError,
)


def _local(tag: str) -> str:
    return tag[tag.rfind("}") + 1 :]


def _tags(name: str) -> frozenset[str]:
    return frozenset(f"{{{ns}}}{name}" for ns in _MAIN_NS)


_C, _ROW, _V, _F, _T, _IS, _R, _SI = (_tags(n) for n in ("c", "row", "v", "f", "t", "is", "r", "si"))


class XlsxStream:
    """A streaming reader of .xlsx worksheets (values as Excel stored them, formula results included).

    openpyxl's read-only mode was measured at about 22 s of CPU for 100k rows x 8 columns (it also scans
    a sheet twice when the file has no <dimension>, as openpyxl's own write-only files do); this reader
    parses the same XML with ElementTree's C iterparse in about a fifth of that. Dates use openpyxl's
    format and serial helpers.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._zip = zipfile.ZipFile(path)
        try:
            names = set(self._zip.namelist())
            book_part = self._office_document(names)
            rels = self._rels(book_part, names)
            self.sheets: list[tuple[str, str]] = []
            self.epoch_1904 = False
            with self._zip.open(book_part) as f:
                for _, el in iterparse(f):
                    name = _local(el.tag)
                    if name == "workbookPr":
                        self.epoch_1904 = el.get("date1904", "0").lower() in ("1", "true")
                    elif name == "sheet":
                        rid = next((v for k, v in el.attrib.items() if k.endswith("}id")), None)
                        target = rels.get(rid or "")
                        if target and target in names:
                            self.sheets.append((el.get("name", ""), target))
            strings_part = next((t for t in rels.values() if t.endswith("sharedStrings.xml")), None)
            styles_part = next((t for t in rels.values() if t.endswith("styles.xml")), None)
            self._strings = self._shared_strings(strings_part) if strings_part in names else []
            self._date_styles = self._styles(styles_part) if styles_part in names else frozenset()
        except BaseException:
            self._zip.close()
            raise

    def close(self) -> None:
        self._zip.close()

    def _office_document(self, names: set[str]) -> str:
        if "_rels/.rels" in names:
            with self._zip.open("_rels/.rels") as f:
                for _, el in iterparse(f):
                    if _local(el.tag) == "Relationship" and el.get("Type", "").endswith("/officeDocument"):
                        return el.get("Target", "").lstrip("/")
        if "xl/workbook.xml" in names:
            return "xl/workbook.xml"
        raise KeyError("no workbook part (xl/workbook.xml)")

    def _rels(self, part: str, names: set[str]) -> dict[str, str]:
        folder, _, base = part.rpartition("/")
        rels_part = f"{folder}/_rels/{base}.rels" if folder else f"_rels/{base}.rels"
        out: dict[str, str] = {}
        if rels_part not in names:
            return out
        with self._zip.open(rels_part) as f:
            for _, el in iterparse(f):
                if _local(el.tag) == "Relationship":
                    target = el.get("Target", "")
                    if target.startswith("/"):
                        target = target[1:]
                    else:
                        target = posixpath.normpath(posixpath.join(folder, target))
                    out[el.get("Id", "")] = target
        return out

    def _shared_strings(self, part: str) -> list[str]:
        out: list[str] = []
        with self._zip.open(part) as f:
            for _, el in iterparse(f):
                if el.tag in _SI:
                    parts: list[str] = []
                    for child in el:  # <t>, or rich-text runs <r><t>; phonetic <rPh> is not part of the text
                        if child.tag in _T:
                            parts.append(child.text or "")
                        elif child.tag in _R:
                            parts.extend(t.text or "" for t in child if t.tag in _T)
                    out.append("".join(parts))
                    el.clear()
        return out

    def _styles(self, part: str) -> frozenset[int]:
        """Indexes of the cell formats (cellXfs) that show numbers as dates."""
        from openpyxl.styles.numbers import is_date_format

        custom: dict[int, str] = {}
        xfs: list[int] = []
        in_cell_xfs = False
        with self._zip.open(part) as f:
            for event, el in iterparse(f, events=("start", "end")):
                name = _local(el.tag)
                if name == "cellXfs":
                    in_cell_xfs = event == "start"
                elif event == "end" and name == "numFmt":
                    custom[int(el.get("numFmtId", "0"))] = el.get("formatCode", "")
                elif event == "end" and name == "xf" and in_cell_xfs:
                    xfs.append(int(el.get("numFmtId", "0")))
        return frozenset(
            i for i, fmt in enumerate(xfs)
            if fmt in _BUILTIN_DATE_FORMATS or (fmt in custom and is_date_format(custom[fmt]))
        )

    def dimension_rows(self, part: str) -> int | None:
        """The last row named by the sheet's <dimension> (a hint only: some writers store a wrong one)."""
        with self._zip.open(part) as f:
            head = f.read(4096).decode("utf-8", errors="ignore")
        m = re.search(r'<(?:\w+:)?dimension ref="[A-Z]+\d+(?::[A-Z]+(\d+))?"', head)
        return int(m.group(1)) if m and m.group(1) else None

    def rows(self, part: str) -> Iterator[tuple[int, list[object]]]:
        """(row number, cell values) for every row that has cells; merged areas hold one value, top-left."""
        from openpyxl.utils.datetime import CALENDAR_MAC_1904, CALENDAR_WINDOWS_1900, from_excel

        epoch = CALENDAR_MAC_1904 if self.epoch_1904 else CALENDAR_WINDOWS_1900
        strings = self._strings
        date_styles = self._date_styles
        col_cache: dict[str, int] = {}
        rownum = 0
        cells: list[object] = []
        with self._zip.open(part) as f:
            for _, el in iterparse(f):
                tag = el.tag
                if tag in _C:
                    ref = el.get("r")
                    if ref:
                        letters = ref.rstrip("0123456789")
                        col = col_cache.get(letters)
                        if col is None:
                            col = col_cache[letters] = _column_index(letters)
                    else:
                        col = len(cells)
                    kind = el.get("t", "n")
                    value: object = None
                    raw: str | None = None
                    for child in el:
                        ctag = child.tag
                        if ctag in _V:
                            raw = child.text
                        elif ctag in _IS:
                            raw = "".join(t.text or "" for t in child.iter() if t.tag in _T)
                        elif ctag in _F and kind != "inlineStr":
                            formula = child.text
                            if formula:
                                value = UncalculatedFormula("=" + formula)
                    if raw is not None:
                        if kind == "n":
                            if "." in raw or "E" in raw or "e" in raw:
                                value = float(raw)
                            else:
                                value = int(raw)
                            # a number too large for a date (a phone number in a date-formatted column) stays
                            # a number, as Excel shows it (#####) rather than failing
                            if (date_styles and int(el.get("s", "0")) in date_styles
                                    and 0 <= value <= _MAX_DATE_SERIAL):
                                value = from_excel(value, epoch)
                        elif kind == "s":
                            index = int(raw)
                            if not 0 <= index < len(strings):
                                raise ValueError(
                                    f"cell {ref or col} names shared string {index}, the workbook has {len(strings)}"
                                )
                            value = strings[index]
                        elif kind == "b":
                            value = raw == "1"
                        else:  # inlineStr, str (formula result), e (error like #N/A), d (ISO date)
                            value = raw
                    if value is not None:
                        if col >= len(cells):
                            cells.extend([None] * (col + 1 - len(cells)))
                        cells[col] = value
                elif tag in _ROW:
                    r = el.get("r")
                    rownum = int(r) if r else rownum + 1
                    if cells:
                        yield rownum, cells
                        cells = []
                    el.clear()


def _column_index(letters: str) -> int:
    """'A' -> 0, 'AB' -> 27."""
    n = 0
    for ch in letters.upper():
        if not "A" <= ch <= "Z":
            raise ValueError(f"bad cell reference column {letters!r}")
        n = n * 26 + ord(ch) - 64
    if not 1 <= n <= _MAX_COLUMNS:
        raise ValueError(f"bad cell reference column {letters!r}")
    return n - 1


# --------------------------------------------------------------------------- rejects file


class RejectsWriter:
    """Writes rejected rows in the input's format: 行号, the original columns, 错误原因.

    Rows go to a hidden temporary file beside the target; `finish()` completes that file (call it before the
    store commits, so a full disk or a read-only folder fails the import, not the rejects file), `commit()`
    moves it into place (only when there were rejects), `discard()` removes it. So an interrupted import never
    leaves a half-written rejects file.
    """

    def __init__(self, path: str | os.PathLike[str], source: ContactFile) -> None:
        self.path = Path(path)
        self.kind: Kind = source.kind
        self.headers = source.headers
        self.with_sheet = len(source.sheets_read) > 1
        self.delimiter = source.delimiter
        self.count = 0
        sweep_stale_parts(self.path)  # what killed imports left behind
        # The naming of common.atomic (so the sweep above knows it), one per process and target.
        self._tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.part")
        self._csv_file: IO[str] | None = None
        self._csv: Any = None
        self._wb: Any = None
        self._ws: Any = None
        self._finished = False

    @property
    def temp_path(self) -> Path:
        """The hidden file the rows are written to until `commit()`."""
        return self._tmp

    def _header(self) -> list[object]:
        return [*(["工作表"] if self.with_sheet else []), "行号", *self.headers, "错误原因"]

    def _row(self, rej: RejectedRow) -> list[object]:
        values = list(rej.values)
        if len(values) < len(self.headers):
            values += [None] * (len(self.headers) - len(values))
        sheet: list[object] = [rej.sheet or ""] if self.with_sheet else []
        return [*sheet, rej.row, *values, rej.reason] if len(values) == len(self.headers) else [
            *sheet, rej.row, *values[: len(self.headers)], rej.reason, *values[len(self.headers):]
        ]

    def write(self, rej: RejectedRow) -> None:
        if self._finished:
            raise RuntimeError("RejectsWriter.write() after finish()")
        self.count += 1
        if self.kind == "csv":
            if self._csv is None:
                self._csv_file = self._tmp.open("w", encoding="utf-8-sig", newline="")
                self._csv = csv.writer(self._csv_file, delimiter=self.delimiter)
                self._csv.writerow(self._header())
            self._csv.writerow([formula_safe(_scalar_text(v) if not isinstance(v, str) else v) for v in self._row(rej)])
        else:
            if self._wb is None:
                from openpyxl import Workbook

                self._wb = Workbook(write_only=True)
                self._ws = self._wb.create_sheet("错误行")
                self._ws.append(self._header())
            self._ws.append([self._xlsx_cell(v) for v in self._row(rej)])

    def _xlsx_cell(self, value: object) -> object:
        if isinstance(value, dt.datetime) and value.time() == dt.time():
            return value.date()  # an Excel date cell comes back as a date, not a timestamp at midnight
        if isinstance(value, str):
            value = _ILLEGAL_XML_RE.sub("", value)
            if value.startswith("="):  # keep text text: never let a value become a formula
                from openpyxl.cell import WriteOnlyCell

                c = WriteOnlyCell(self._ws, value)
                c.data_type = "s"
                return c
        return value

    def finish(self) -> int:
        """Complete the temporary file (flushed and closed, or the workbook saved); returns the count.

        Raises OSError when it cannot be written. Calling it again does nothing.
        """
        if not self._finished:
            self._finished = True
            if self._csv_file is not None:
                self._csv_file.close()
            if self._wb is not None:
                self._wb.save(self._tmp)
        return self.count

    def commit(self) -> Path | None:
        """Finish the file and move it into place; returns its path, or None when nothing was rejected."""
        self.finish()
        if self.count == 0:
            return None
        os.replace(self._tmp, self.path)
        return self.path

    def discard(self) -> None:
        """Remove the temporary file. Never raises: it runs while another error is being reported."""
        try:
            if self._csv_file is not None and not self._csv_file.closed:
                self._csv_file.close()
        except OSError as exc:  # e.g. the disk is full when the last rows are flushed
            log.warning("closing %s failed: %s", self._tmp, exc)
        if self._ws is not None:  # openpyxl's write-only sheet streams rows into a temporary file of its own
            writer = getattr(self._ws, "_writer", None)
            try:
                if not self._ws.closed:
                    self._ws.close()
            except Exception as exc:  # already half-closed by a failed save: only its file is left to remove
                log.debug("closing the rejects worksheet failed: %s", exc)
            out = getattr(writer, "out", None)
            if isinstance(out, str) and os.path.isfile(out):
                try:
                    os.remove(out)
                except OSError as exc:
                    log.warning("cannot remove %s: %s", out, exc)
        try:
            if self._tmp.is_file():
                self._tmp.unlink()
        except OSError as exc:
            log.warning("cannot remove %s: %s", self._tmp, exc)


_ILLEGAL_XML_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
