"""Masking of phone and national ID numbers: the one masker for logs, CLI errors, listings and exports.

`mask_phone` and `mask_national_id` mask one known value; `mask_text` finds and masks every number inside
free text (a log line, an error message, a 备注 cell): Chinese mobiles and landlines in every form they are
stored or typed in (E.164 `+8613800138000` / `+861065529988`, national `13800138000` / `010-65529988`,
`0086`/`86` prefixes, spaced or dashed groups `138 0013 8000`, `(010) 6552 9988`, full-width digits) and
18-digit resident IDs.
"""

from __future__ import annotations

import re

# Between two digit groups people write one space, a dash, a dot or nothing.
_S = r"[ \t\u00a0\u3000\-.]?"
_PREFIX = rf"(?:(?:\+|00){_S}86{_S}|86{_S}(?=1))?"
_MOBILE = rf"{_PREFIX}1{_S}[3-9](?:{_S}\d){{9}}"
# A landline: 0 + area code (2-3 digits) in optional brackets, or +86 / 0086 and the area code without its 0,
# then a 7-8 digit subscriber number, in groups.
_AREA = rf"(?:(?:\+|00){_S}86{_S}\(?0?|\(?0)[1-9]\d{{1,2}}\)?"
_LANDLINE = rf"{_AREA}{_S}\d(?:{_S}\d){{6,7}}"
_NATIONAL_ID = r"\d{17}[\dXx]"
_NUMBER_RE = re.compile(
    rf"(?<!\d)(?:(?P<id>{_NATIONAL_ID})|(?P<phone>{_MOBILE}|{_LANDLINE}))(?!\d)", re.ASCII
)
_NOT_DIGIT_RE = re.compile(r"[^\dXx]")


def mask_phone(phone: str | None) -> str:
    """`+8613800138000` -> `+86138****8000`; short numbers keep only their last 2 digits."""
    if not phone:
        return ""
    digits = phone.lstrip("+")
    prefix = "+" if phone.startswith("+") else ""
    if len(digits) >= 11:
        return prefix + digits[:-8] + "****" + digits[-4:]
    if len(digits) > 4:
        return prefix + "*" * (len(digits) - 2) + digits[-2:]
    return "*" * len(phone)


def mask_national_id(nid: str | None) -> str:
    """`110101199003077777` -> `110***********7777`."""
    if not nid:
        return ""
    if len(nid) <= 7:
        return "*" * len(nid)
    return nid[:3] + "*" * (len(nid) - 7) + nid[-4:]


def mask_name(name: str | None) -> str:
    """`张三丰` -> `张*丰`, `李四` -> `李*`."""
    if not name:
        return ""
    if len(name) <= 2:
        return name[0] + "*"
    return name[0] + "*" * (len(name) - 2) + name[-1]


def _masked(found: str, national_id: bool) -> str:
    if national_id:
        return mask_national_id(found)
    plus = "+" if found.startswith("+") else ""
    return mask_phone(plus + _NOT_DIGIT_RE.sub("", found))


# Full-width digits and plus (typed with a Chinese input method): matched as their ASCII twins, one to one.
_WIDE = str.maketrans({chr(0xFF10 + i): str(i) for i in range(10)} | {"＋": "+", "（": "(", "）": ")"})


def mask_text(text: str) -> str:
    """Every phone or national ID number inside free text, masked; everything else unchanged."""
    if not text:
        return text
    plain = text.translate(_WIDE)  # same length: spans found in `plain` are spans of `text`
    out: list[str] = []
    end = 0
    for m in _NUMBER_RE.finditer(plain):
        out.append(text[end : m.start()])
        out.append(_masked(m.group(0), m.group("id") is not None))
        end = m.end()
    if not out:
        return text
    out.append(text[end:])
    return "".join(out)
