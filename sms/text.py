"""Rendering SMS templates and counting their length.

Chinese texts are sent as UCS-2: 70 characters fit in one message; a longer text is split into parts
of 67 (each part carries a 6-byte header). The count includes the signature with its 【】, spaces and
punctuation; characters outside the Basic Multilingual Plane (emoji) take two UCS-2 units.
Only texts entirely in the GSM 7-bit alphabet get 160 / 153.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass

UCS2_SINGLE = 70
UCS2_PART = 67
GSM_SINGLE = 160
GSM_PART = 153
MAX_CHARS = 500  # Aliyun's limit for one long SMS

_GSM_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXT = set("^{}\\[~]|€\f")
OPT_OUT_LINE = "回T退订"


class TemplateError(ValueError):
    """A template names a variable the resident's data does not have, or is malformed."""


@dataclass(frozen=True, slots=True)
class Length:
    encoding: str  # "UCS-2" or "GSM-7"
    units: int  # characters as the network counts them
    parts: int

    @property
    def single(self) -> bool:
        return self.parts <= 1


def count(text: str) -> Length:
    """How many characters and message parts `text` takes on the network."""
    if all(c in _GSM_BASIC or c in _GSM_EXT for c in text):
        units = sum(2 if c in _GSM_EXT else 1 for c in text)
        parts = 1 if units <= GSM_SINGLE else -(-units // GSM_PART)
        return Length("GSM-7", units, parts)
    units = sum(2 if ord(c) > 0xFFFF else 1 for c in text)
    parts = 1 if units <= UCS2_SINGLE else -(-units // UCS2_PART)
    return Length("UCS-2", units, parts)


def variables(template: str) -> list[str]:
    """The `{name}` variables a template uses, in order."""
    try:
        return [f for _, f, _, _ in string.Formatter().parse(template) if f]
    except ValueError as exc:
        raise TemplateError(f"template {template!r}: {exc}") from exc


def render(template: str, values: Mapping[str, str], *, sign_name: str = "", notification: bool = True) -> str:
    """The full text: 【sign_name】 + the template with its variables filled in, plus the opt-out line
    for templates that are not notifications."""
    missing = [v for v in variables(template) if v not in values]
    if missing:
        raise TemplateError(f"template {template!r}: no value for {', '.join('{' + m + '}' for m in missing)}")
    body = template.format_map(dict(values))
    if not notification and OPT_OUT_LINE not in body and "退订" not in body:
        body = f"{body}{OPT_OUT_LINE}"
    if sign_name and not body.startswith("【"):
        body = f"【{sign_name}】{body}"
    return body
