"""Phone and ID numbers never reach the logs in clear."""

from __future__ import annotations

import logging

import pytest

from outreach.logsetup import MaskingFilter, mask_text
from results.masking import mask_name, mask_national_id, mask_phone


@pytest.mark.parametrize(
    ("text", "hidden"),
    [
        ("calling +8613800138000 now", "13800138000"),
        ("dial 13912345678", "12345678"),
        ("landline 010-62345678 busy", "62345678"),
        ("id 11010119900307663X ok", "19900307663"),
        ("id 110101199003076635", "1990030766"),
    ],
)
def test_mask_text_hides_numbers(text: str, hidden: str) -> None:
    assert hidden not in mask_text(text)


def test_mask_text_leaves_other_numbers() -> None:
    assert mask_text("37.5 degrees, 12320 hotline, attempt 3") == "37.5 degrees, 12320 hotline, attempt 3"


def test_filter_masks_record_arguments(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("outreach.test")
    caplog.handler.addFilter(MaskingFilter())
    with caplog.at_level(logging.INFO, logger="outreach.test"):
        logger.info("attempt for %s failed", "+8613800138000")
    assert "13800138000" not in caplog.text
    assert "+86138****8000" in caplog.text


def test_maskers() -> None:
    assert mask_phone("+8613800138000") == "+86138****8000"
    assert mask_phone("13800138000") == "138****8000"
    assert mask_national_id("110101199003076635") == "110***********6635"
    assert mask_name("张三丰") == "张*丰"
    assert mask_name("李四") == "李*"
    assert mask_phone("") == ""
