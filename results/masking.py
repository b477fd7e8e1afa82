"""Masking of phone and national ID numbers for logs, listings and exports."""

from __future__ import annotations


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
