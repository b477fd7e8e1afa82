"""Logging set-up: one format, and a filter that masks phone and national ID numbers in every record."""

from __future__ import annotations

import logging
import re

from results.masking import mask_national_id, mask_phone

# E.164 / Chinese mobiles and landlines (with optional +86 / 0086), and 18-character national IDs.
_ID_RE = re.compile(r"(?<!\d)\d{17}[\dXx](?!\d)")
_PHONE_RE = re.compile(r"(?<![\d*])(?:\+|00)?(?:86)?(?:1[3-9]\d{9}|0\d{2,3}-?\d{7,8})(?!\d)")


def mask_text(text: str) -> str:
    """Mask every phone or national ID number inside free text."""
    text = _ID_RE.sub(lambda m: mask_national_id(m.group(0)), text)
    return _PHONE_RE.sub(lambda m: mask_phone(m.group(0)), text)


class MaskingFilter(logging.Filter):
    """Rewrites each record's message with numbers masked (arguments are merged first)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string is logged as is; logging must never raise
            return True
        masked = mask_text(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


def setup_logging(level: int | str = logging.WARNING, *, unmask: bool = False) -> None:
    """Configure the root logger once: stderr, timestamps, numbers masked unless `unmask`."""
    root = logging.getLogger()
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    if not unmask:
        handler.addFilter(MaskingFilter())
    for h in list(root.handlers):
        if getattr(h, "_outreach", False):
            root.removeHandler(h)
    handler._outreach = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
