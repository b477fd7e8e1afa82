"""Contact import benchmark: 100,000-row CSV and XLSX files, each imported into a fresh SQLite store.

Each import runs the real CLI (`outreach --db sqlite:///... contacts import FILE --json`) in a child process,
so the figures include start-up and the peak RSS is the import's own (the largest child). Prints one JSON
object: {"rows", "csv_s", "xlsx_s", "peak_rss_mb", ...}. Goals on a 2-core machine: CSV <= 10 s,
XLSX <= 30 s, peak RSS <= 400 MB. Usage: python bench/import_bench.py [--rows N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈"
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华建国建华志强文军玉兰红梅海燕晓东春梅"
COMMUNITIES = [f"{n}社区" for n in ("阳光", "和平", "幸福", "东湖", "西园", "南苑", "北城", "青山", "翠竹", "金桥")] + [
    f"{n}村" for n in ("李家", "王庄", "石桥", "河口", "新塘", "柳树", "杨湾", "高岭", "梅林", "三合")
]
MOBILE_PREFIXES = ["130", "131", "132", "133", "135", "136", "137", "138", "139", "150", "151", "152", "155",
                   "156", "157", "158", "159", "166", "176", "177", "180", "181", "186", "187", "188", "189", "199"]
HEADER = ["姓名", "手机号", "社区", "地址", "身份证号", "返回日期", "备注", "标签"]


def _id(rng: random.Random) -> str:
    body = f"{rng.choice(['110105', '310104', '440305', '420102', '510107'])}" \
           f"{rng.randint(1940, 2010)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}{rng.randint(0, 999):03d}"
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    return body + "10X98765432"[sum(int(c) * w for c, w in zip(body, weights, strict=True)) % 11]


def rows(n: int, seed: int = 20201) -> Iterator[list[object]]:
    """Realistic resident rows: ~1 % bad phones, ~2 % repeated phones, half with an ID, mixed phone styles."""
    rng = random.Random(seed)
    start = dt.date(2026, 11, 1)
    recent: list[str] = []
    for _ in range(n):
        r = rng.random()
        if r < 0.01:
            phone = rng.choice(["12012345678", "1380013800", "abc", "", "65529988"])
        elif r < 0.03 and recent:
            phone = rng.choice(recent)
        else:
            digits = rng.choice(MOBILE_PREFIXES) + f"{rng.randint(0, 99_999_999):08d}"
            style = rng.random()
            phone = digits if style < 0.8 else (f"+86 {digits[:3]} {digits[3:7]} {digits[7:]}" if style < 0.9
                                                 else f"{digits[:3]}-{digits[3:7]}-{digits[7:]}")
            recent.append(digits)
            if len(recent) > 500:
                recent.pop(0)
        community = rng.choice(COMMUNITIES)
        yield [
            rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2)))),
            phone,
            community,
            f"{community}{rng.randint(1, 40)}栋{rng.randint(1, 30)}0{rng.randint(1, 4)}室",
            _id(rng) if rng.random() < 0.5 else "",
            (start + dt.timedelta(days=rng.randint(0, 20))).strftime(rng.choice(["%Y-%m-%d", "%Y/%m/%d"])),
            rng.choice(["", "", "", "独居老人", "行动不便", "需要方言"]),
            rng.choice(["", "返乡", "返乡、老人", "密接"]),
        ]


def write_csv(path: Path, n: int) -> None:
    with path.open("w", encoding="utf-8-sig", newline="") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        w.writerows(rows(n))


def write_xlsx(path: Path, n: int) -> None:
    from openpyxl import Workbook

    wb = Workbook(write_only=True)
    ws = wb.create_sheet("名单")
    ws.append(HEADER)
    for row in rows(n):
        ws.append(row)
    wb.save(path)


def run_import(file: Path, db: Path) -> tuple[float, dict[str, object]]:
    cmd = [sys.executable, "-m", "outreach", "--db", f"sqlite:///{db}", "contacts", "import", str(file), "--json"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"import of {file} failed ({proc.returncode}): {proc.stderr.strip()}")
    return elapsed, json.loads(proc.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--keep", type=Path, default=None, help="write the files here and keep them")
    args = ap.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="import-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        csv_file, xlsx_file = work / "residents.csv", work / "residents.xlsx"
        t0 = time.perf_counter()
        write_csv(csv_file, args.rows)
        gen_csv = time.perf_counter() - t0
        t0 = time.perf_counter()
        write_xlsx(xlsx_file, args.rows)
        gen_xlsx = time.perf_counter() - t0
        for db in (work / "csv.db", work / "xlsx.db"):
            db.unlink(missing_ok=True)
        csv_s, csv_out = run_import(csv_file, work / "csv.db")
        xlsx_s, xlsx_out = run_import(xlsx_file, work / "xlsx.db")
        peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        print(json.dumps({
            "rows": args.rows,
            "csv_s": round(csv_s, 2),
            "xlsx_s": round(xlsx_s, 2),
            "peak_rss_mb": round(peak_kb / 1024, 1),
            "csv_result": csv_out,
            "xlsx_result": xlsx_out,
            "generate_csv_s": round(gen_csv, 2),
            "generate_xlsx_s": round(gen_xlsx, 2),
            "csv_mb": round(csv_file.stat().st_size / 1e6, 1),
            "xlsx_mb": round(xlsx_file.stat().st_size / 1e6, 1),
        }, ensure_ascii=False))
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
