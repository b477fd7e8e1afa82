"""UCS-2 length counting (70 single, 67 per part, signature included), rendering, reply meanings."""

from __future__ import annotations

import pytest

from campaigns.reminders import classify_reply, render
from dialogs.nlu.builtin import BuiltinNlu
from sms.text import TemplateError, count
from sms.text import render as render_text
from tests.sms_helpers import settings


@pytest.mark.parametrize(("n", "parts"), [(1, 1), (70, 1), (71, 2), (134, 2), (135, 3), (150, 3), (500, 8)])
def test_ucs2_parts(n: int, parts: int) -> None:
    length = count("测" * n)
    assert (length.encoding, length.units, length.parts) == ("UCS-2", n, parts)


def test_signature_and_emoji_count() -> None:
    body = render_text("您好" + "。" * 64, {}, sign_name="健康热线")  # 【健康热线】 = 6 characters
    assert body.startswith("【健康热线】") and count(body).units == 72 and count(body).parts == 2
    assert count("好😀").units == 3  # outside the BMP: two UCS-2 units
    assert count("Your test is due").encoding == "GSM-7" and count("a" * 161).parts == 2


def test_opt_out_line_only_for_non_notifications() -> None:
    assert render_text("请回电{hotline}。", {"hotline": "12320"}, notification=False).endswith("回T退订")
    assert "退订" not in render_text("请回电{hotline}。", {"hotline": "12320"})
    with pytest.raises(TemplateError, match="due_date"):
        render_text("请于{due_date}检测", {})


def test_rendered_reminder_fits_one_message() -> None:
    import datetime as dt

    r = render(settings(), "second_test_reminder", name="欧阳娜娜", due_date=dt.date(2026, 11, 25))
    assert "11月25日" in r.body and r.length.parts == 1 and r.params["name"] == "欧阳娜娜"


@pytest.mark.parametrize(("text", "last", "intent"), [
    ("退订", None, "opt_out"), ("T", None, "opt_out"), ("td", None, "opt_out"), ("R", "ring_back", "opt_out"),
    (" 退订。", None, "opt_out"), ("别再发了", None, "opt_out"),
    ("已做", "second_test_reminder", "second_test_done"), ("做了", "second_test_reminder", "second_test_done"),
    ("已经做了", "second_test_reminder", "second_test_done"), ("还没做", "second_test_reminder", "second_test_not_done"),
    ("已做", "ring_back", "other"), ("你们是哪里", "second_test_reminder", "other"),
])
def test_reply_meanings(text: str, last: str | None, intent: str) -> None:
    assert classify_reply(BuiltinNlu(), text, last) == intent
