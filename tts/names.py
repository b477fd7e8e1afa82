"""How surnames are read: many characters have a special reading as a family name (曾 zēng, not céng;
单 shàn; 解 xiè; 仇 qiú; 朴 piáo; 区 ōu; 查 zhā; 盖 gě; 尉迟 yùchí), which a general-purpose pinyin
dictionary gets wrong.

`SURNAME_READINGS` maps a surname (compound ones too) to its TONE3 syllables. Names the robot says
come from contacts: `register_name` records a name whose surname is in the table (the script engine
registers every contact name it renders into a prompt, and so does `tts.cache.contact_prompts`), and
`name_readings(text)` finds registered names in a text so the offline voice reads their surname the
surname way. Everything else in the text keeps its ordinary reading (曾经 is still céngjīng).
"""

from __future__ import annotations

import threading
from collections import OrderedDict

# Compound surnames first (longest match wins), then single characters with a surname reading.
SURNAME_READINGS: dict[str, tuple[str, ...]] = {
    "尉迟": ("yu4", "chi2"),
    "万俟": ("mo4", "qi2"),
    "长孙": ("zhang3", "sun1"),
    "单于": ("chan2", "yu2"),
    "澹台": ("tan2", "tai2"),
    "令狐": ("ling2", "hu2"),
    "鲜于": ("xian1", "yu2"),
    "曾": ("zeng1",),
    "单": ("shan4",),
    "解": ("xie4",),
    "仇": ("qiu2",),
    "朴": ("piao2",),
    "区": ("ou1",),
    "查": ("zha1",),
    "盖": ("ge3",),
    "翟": ("zhai2",),
    "乐": ("yue4",),
    "缪": ("miao4",),
    "种": ("chong2",),
    "华": ("hua4",),
    "纪": ("ji3",),
    "燕": ("yan1",),
    "员": ("yun4",),
    "过": ("guo1",),
    "句": ("gou1",),
    "繁": ("po2",),
    "秘": ("bi4",),
    "覃": ("qin2",),
    "宁": ("ning4",),
    "任": ("ren2",),
    "黑": ("he4",),
    "折": ("she2",),
    "尉": ("wei4",),
    "莘": ("shen1",),
    "召": ("shao4",),
    "隗": ("wei3",),
    "阚": ("kan4",),
    "冼": ("xian3",),
    "洗": ("xian3",),
    "眭": ("sui1",),
    "长": ("chang2",),
    "都": ("du1",),
    "重": ("chong2",),
    "薄": ("bo2",),
    "朝": ("chao2",),
    "能": ("nai4",),
    "角": ("jue2",),
}
_MAX_REGISTERED = 50_000  # names kept (least recently used dropped first)
_registered: OrderedDict[str, tuple[str, ...]] = OrderedDict()
_lock = threading.Lock()


def surname_of(name: str) -> str | None:
    """The surname at the start of `name` that has a special reading (compound first), or None."""
    name = "".join(name.split())
    for length in (2, 1):
        head = name[:length]
        if len(head) == length and head in SURNAME_READINGS and len(name) > length - 1:
            if length == 2 and len(name) < 3:
                continue  # 单于 alone is a given name pair, not 单于 + given name
            return head
    return None


def register_name(name: object) -> None:
    """Remember a contact's name if its surname has a special reading (cheap; no-op otherwise)."""
    if not isinstance(name, str):
        return
    name = "".join(name.split())
    if not 2 <= len(name) <= 6:
        return
    surname = surname_of(name)
    if surname is None:
        return
    with _lock:
        _registered[name] = SURNAME_READINGS[surname]
        _registered.move_to_end(name)
        while len(_registered) > _MAX_REGISTERED:
            _registered.popitem(last=False)


def name_readings(text: str) -> list[tuple[int, tuple[str, ...]]]:
    """(offset, surname syllables) for every registered name in `text`, longest names first."""
    if not _registered:
        return []
    with _lock:
        names = sorted((n for n in _registered if n in text), key=len, reverse=True)
        readings = {n: _registered[n] for n in names}
    out: list[tuple[int, tuple[str, ...]]] = []
    taken: set[int] = set()
    for n in names:
        at = text.find(n)
        while at >= 0:
            if at not in taken:
                taken.add(at)
                out.append((at, readings[n]))
            at = text.find(n, at + 1)
    return out
