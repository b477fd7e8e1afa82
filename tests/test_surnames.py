"""Surname readings for the offline voice: a contact's name, rendered into a prompt, is read with the
surname's own reading (曾 zēng, 单 shàn ...); the same characters elsewhere keep their usual reading."""

from __future__ import annotations

from pathlib import Path

import pytest

from dialogs.script import load_script
from tts.espeak import to_pinyin
from tts.names import SURNAME_READINGS, register_name, surname_of

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = load_script(ROOT / "dialogs" / "scripts" / "covid_screening.yaml")


@pytest.mark.parametrize(
    ("name", "syllables"),
    [
        ("曾凡荣", "zeng1 fan2 rong2"),
        ("单田芳", "shan4 tian2 fang1"),
        ("解晓东", "xie4 xiao3 dong1"),
        ("仇英", "qiu2 ying1"),
        ("朴正浩", "piao2 zheng4 hao4"),
        ("区志强", "ou1 zhi4 qiang2"),
        ("查良镛", "zha1 liang2 yong1"),
        ("盖聂", "ge3 nie4"),
        ("翟志刚", "zhai2 zhi4 gang1"),
        ("尉迟恭", "yu4 chi2 gong1"),
        ("万俟雅", "mo4 qi2 ya3"),
        ("长孙无忌", "zhang3 sun1 wu2 ji4"),
        ("缪杰", "miao4 jie2"),
        ("覃海", "qin2 hai3"),
    ],
)
def test_a_rendered_name_is_read_with_its_surname_reading(name: str, syllables: str) -> None:
    text = SCRIPT.render(SCRIPT.nodes["greeting"].say or "", {"name": name})
    assert name in text
    assert syllables in to_pinyin(text)


def test_every_table_entry_reads_as_listed() -> None:
    for surname, readings in SURNAME_READINGS.items():
        name = surname + "明华"
        register_name(name)
        assert " ".join(readings) in to_pinyin(f"请问是{name}吗"), surname


def test_other_words_keep_their_reading_and_unlisted_names_are_untouched() -> None:
    register_name("曾凡荣")
    assert "ceng2 jing1" in to_pinyin("我曾经去过")  # 曾经: céngjīng, not a name
    assert to_pinyin("请问是王秀英吗") == "qing3 wen4 shi4 wang2 xiu4 ying1 ma5"
    assert surname_of("王秀英") is None and surname_of("尉迟恭") == "尉迟" and surname_of("尉明") == "尉"
