"""Phone and ID numbers never reach the logs in clear."""

from __future__ import annotations

import logging

import pytest

from common.masking import mask_name, mask_national_id, mask_phone
from outreach.logsetup import MaskingFilter, mask_text


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


# --------------------------------------------------------------------------- issue 11: every stored form

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from common.masking import mask_text as the_masker  # noqa: E402


@pytest.mark.parametrize(
    ("text", "hidden"),
    [
        ("landline +861065529988 busy", "65529988"),  # E.164 landline, the stored form
        ("call 138 0013 8000 please", "0013"),
        ("call 138-0013-8000 please", "0013"),
        ("+86 138 0013 8000", "0013"),
        ("0086 13800138000", "00138000"),
        ("(010) 6552 9988", "6552"),
        ("其他号码：13900139000、15012345678", "00139000"),
        ("其他号码：13900139000、15012345678", "12345678"),
        ("家属电话１３８００１３８０００", "００１３"),
    ],
)
def test_mask_text_knows_every_stored_form(text: str, hidden: str) -> None:
    assert hidden not in the_masker(text)


def test_logsetup_uses_the_one_masker() -> None:
    assert mask_text is the_masker


_AREAS = ["10", "20", "21", "22", "23", "24", "25", "27", "28", "29", "311", "371", "431", "551", "571", "591",
          "731", "755", "769", "898"]
_SEPARATORS = ["", " ", "-"]


def _grouped(digits: str, sep: str, sizes: tuple[int, ...]) -> str:
    out, i = [], 0
    for n in sizes:
        out.append(digits[i : i + n])
        i += n
    if i < len(digits):
        out.append(digits[i:])
    return sep.join(p for p in out if p)


@st.composite
def numbers(draw: st.DrawFn) -> tuple[str, str]:
    """(a number as it may be written, the digits that must not survive masking)."""
    kind = draw(st.sampled_from(["mobile", "landline", "id"]))
    sep = draw(st.sampled_from(_SEPARATORS))
    if kind == "mobile":
        national = "1" + draw(st.sampled_from("3456789")) + draw(st.text("0123456789", min_size=9, max_size=9))
        prefix = draw(st.sampled_from(["", "+86", "+86 ", "0086", "86"]))
        body = _grouped(national, sep, (3, 4, 4))
        return prefix + body, national
    if kind == "landline":
        area = draw(st.sampled_from(_AREAS))
        subscriber = draw(st.sampled_from("2345678")) + draw(
            st.text("0123456789", min_size=7 if len(area) == 2 else 6, max_size=7 if len(area) == 2 else 6)
        )
        form = draw(st.sampled_from(["e164", "national", "brackets", "0086"]))
        sub = _grouped(subscriber, sep, (4, 4) if len(subscriber) == 8 else (3, 4))
        written = {"e164": f"+86{area}{subscriber}", "national": f"0{area}{sep or '-'}{sub}",
                   "brackets": f"(0{area}) {sub}", "0086": f"0086{area}{subscriber}"}[form]
        return written, subscriber
    body = draw(st.text("0123456789", min_size=17, max_size=17)) + draw(st.sampled_from("0123456789X"))
    return body, body


_TEXT = st.text(st.characters(blacklist_categories=("Nd", "Cs"), blacklist_characters="+"), max_size=20)


@settings(max_examples=200, deadline=None)
@given(before=_TEXT, number=numbers(), after=_TEXT)
def test_no_number_survives_the_masker_in_any_form(before: str, number: tuple[str, str], after: str) -> None:
    written, secret = number
    masked = the_masker(f"{before} {written} {after}")
    digits = "".join(ch for ch in masked if ch.isdigit() or ch == "X")
    assert secret not in digits, masked
    assert written not in masked
