"""Synthetic residents for the demo and the benchmark: Chinese names, valid-format mobile numbers,
national IDs with a correct check digit, several communities, arrival dates. Seeded."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华建国建华志强海燕玉兰春梅红梅丹萍鹏飞斌宇浩凯婷雪琳晨阳欣怡子涵梓萱浩然宇轩文博家豪俊杰思远佳琪雨桐"
COMMUNITIES = ("东湖社区", "西街社区", "南苑社区", "北山社区", "滨江社区", "新华社区", "幸福里社区", "光明社区")
MOBILE_PREFIXES = ("130", "131", "132", "133", "135", "136", "137", "138", "139", "150", "151", "152", "155",
                   "156", "157", "158", "159", "166", "176", "177", "180", "181", "186", "187", "188", "189", "199")
REGION_CODES = ("420102", "420106", "110101", "310104", "440106", "510104", "330106", "610113")
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


def national_id(r: random.Random, birth: dt.date) -> str:
    body = r.choice(REGION_CODES) + birth.strftime("%Y%m%d") + f"{r.randint(0, 999):03d}"
    check = _ID_CHECK[sum(int(d) * w for d, w in zip(body, _ID_WEIGHTS, strict=True)) % 11]
    return body + check


def synthetic_residents(n: int, *, seed: int = 20201, today: dt.date | None = None) -> list[dict[str, Any]]:
    """`n` residents as Resident column dicts (phone in E.164, unique)."""
    r = random.Random(f"residents|{seed}")
    today = today or dt.date(2026, 11, 23)
    phones: set[str] = set()
    out: list[dict[str, Any]] = []
    communities = COMMUNITIES if n >= 40 else COMMUNITIES[:3]
    while len(out) < n:
        phone = "+86" + r.choice(MOBILE_PREFIXES) + f"{r.randint(0, 99_999_999):08d}"
        if phone in phones:
            continue
        phones.add(phone)
        given = r.choice(GIVEN) + (r.choice(GIVEN) if r.random() < 0.6 else "")
        community = r.choice(communities)
        birth = dt.date(1940, 1, 1) + dt.timedelta(days=r.randint(0, 365 * 65))
        tags = ["返乡"] + (["重点地区"] if r.random() < 0.1 else [])
        out.append({
            "name": r.choice(SURNAMES) + given,
            "phone": phone,
            "community": community,
            "address": f"{community}{r.randint(1, 30)}栋{r.randint(1, 6)}单元{r.randint(1, 30)}0{r.randint(1, 4)}室",
            "national_id": national_id(r, birth),
            "arrival_date": today - dt.timedelta(days=r.randint(0, 13)),
            "tags": tags,
            "note": "",
            "source_file": "synthetic",
        })
    return out
