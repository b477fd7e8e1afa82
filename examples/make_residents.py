"""Regenerate examples/residents.xlsx: about 200 synthetic residents (all invented) for the demo.

The workbook looks like a list a community office sends: a merged title row above the header, phones
written in several ways (some as Excel number cells), Excel date cells, and a few deliberately bad rows
(wrong number prefix, too short, no phone, landline without area code, wrong ID check digit, an impossible
date) plus one resident listed twice, so the demo shows rejects and merging. Deterministic: the same bytes
every run. Usage: python examples/make_residents.py [OUT.xlsx]
"""

from __future__ import annotations

import datetime as dt
import io
import random
import re
import sys
import zipfile
from pathlib import Path

from openpyxl import Workbook
from openpyxl.styles import Alignment, Font

OUT = Path(__file__).with_name("residents.xlsx")
SEED = 20201
FIXED_TIME = dt.datetime(2026, 11, 1, 8, 0, 0)

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘蒋蔡余杜叶程苏魏吕丁沈"
GIVEN = ["伟", "芳", "娜", "秀英", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛", "明", "超",
         "秀兰", "霞", "平", "刚", "桂英", "建国", "建华", "志强", "文", "玉兰", "红梅", "海燕", "晓东", "春梅", "子涵", "浩然"]
COMMUNITIES = {
    "阳光社区": ["阳光路", "朝阳街"],
    "和平社区": ["和平路", "解放街"],
    "幸福社区": ["幸福路", "健康巷"],
    "东湖村": ["东湖村一组", "东湖村三组"],
    "石桥村": ["石桥村上屋", "石桥村下屋"],
}
PREFIXES = ["130", "131", "133", "135", "137", "138", "139", "150", "152", "158", "159", "176", "180", "186", "189", "199"]
NOTES = ["", "", "", "", "独居老人", "听力不好，请大声", "只会说方言", "白天上班，晚上方便", "家属代接"]
TAGS = ["", "", "返乡", "返乡、老人", "外省来返", "密接"]
HEADER = ["序号", "姓名", "手机号", "社区", "地址", "身份证号", "返回日期", "备注", "标签"]


def national_id(rng: random.Random) -> str:
    body = (rng.choice(["420102", "420106", "420111", "420115"])
            + f"{rng.randint(1940, 2008)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}{rng.randint(0, 999):03d}")
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    return body + "10X98765432"[sum(int(c) * w for c, w in zip(body, weights, strict=True)) % 11]


def phone_cell(rng: random.Random) -> object:
    digits = rng.choice(PREFIXES) + f"{rng.randint(0, 99_999_999):08d}"
    style = rng.random()
    if style < 0.55:
        return digits
    if style < 0.75:
        return int(digits)  # typed into Excel: a number cell
    if style < 0.85:
        return f"{digits[:3]}-{digits[3:7]}-{digits[7:]}"
    if style < 0.95:
        return f"+86 {digits[:3]} {digits[3:7]} {digits[7:]}"
    return f"0086{digits}"


def residents(rng: random.Random, n: int = 200) -> list[list[object]]:
    rows: list[list[object]] = []
    for i in range(1, n + 1):
        community = rng.choice(list(COMMUNITIES))
        street = rng.choice(COMMUNITIES[community])
        arrival = dt.datetime(2026, 11, 1) + dt.timedelta(days=rng.randint(0, 14))
        rows.append([
            i,
            rng.choice(SURNAMES) + rng.choice(GIVEN),
            phone_cell(rng),
            community,
            f"{street}{rng.randint(1, 60)}号" + (f"{rng.randint(1, 6)}0{rng.randint(1, 4)}室" if rng.random() < 0.6 else ""),
            national_id(rng) if rng.random() < 0.6 else None,
            arrival if rng.random() < 0.8 else arrival.strftime(rng.choice(["%Y/%m/%d", "%Y年%m月%d日"])),
            rng.choice(NOTES) or None,
            rng.choice(TAGS) or None,
        ])
    # Deliberately bad rows, so the demo shows the rejects file
    rows[17][2] = "12012345678"  # no such mobile prefix
    rows[41][2] = "1380013800"  # one digit short
    rows[66][2] = None  # no phone at all
    rows[90][2] = "65529988"  # landline without area code
    good_id = rows[113][5] if isinstance(rows[113][5], str) else "420102199001011234"
    rows[113][5] = good_id[:-1] + ("0" if good_id[-1] != "0" else "1")  # wrong check digit
    rows[150][6] = "2026-02-30"  # no such day
    # One resident listed twice (a second list merged into this one): merged by phone on import
    dup = list(rows[30])
    dup[0] = n + 1
    dup[7] = "第二份名单重复登记"
    rows.append(dup)
    return rows


def build() -> bytes:
    rng = random.Random(SEED)
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = "返乡人员名单"
    ws.append(["2026年11月返乡人员名单（示例数据，人员信息均为虚构）"])
    ws.merge_cells(start_row=1, start_column=1, end_row=1, end_column=len(HEADER))
    ws["A1"].font = Font(bold=True, size=14)
    ws["A1"].alignment = Alignment(horizontal="center")
    ws.append(HEADER)
    for cell in ws[2]:
        cell.font = Font(bold=True)
    for row in residents(rng):
        ws.append(row)
    for r in range(3, ws.max_row + 1):
        ws.cell(r, 7).number_format = "yyyy-mm-dd"
    for col, width in zip("ABCDEFGHI", (6, 10, 18, 10, 26, 21, 12, 20, 12), strict=True):
        ws.column_dimensions[col].width = width
    wb.properties.creator = "outreach examples"
    wb.properties.created = FIXED_TIME
    raw = io.BytesIO()
    wb.save(raw)
    return _deterministic(raw.getvalue())


def _deterministic(xlsx: bytes) -> bytes:
    """Fixed zip timestamps and document times, so the file is byte-for-byte reproducible."""
    out = io.BytesIO()
    stamp = FIXED_TIME.strftime("%Y-%m-%dT%H:%M:%SZ")
    with zipfile.ZipFile(io.BytesIO(xlsx)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename == "docProps/core.xml":
                data = re.sub(rb"(<dcterms:(?:created|modified)[^>]*>)[^<]*", rb"\g<1>" + stamp.encode(), data)
            dst.writestr(zipfile.ZipInfo(info.filename, date_time=FIXED_TIME.timetuple()[:6]), data,
                         compress_type=zipfile.ZIP_DEFLATED)
    return out.getvalue()


def main() -> None:
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else OUT
    target.write_bytes(build())
    sys.stdout.write(f"wrote {target}\n")


if __name__ == "__main__":
    main()
