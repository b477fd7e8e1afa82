"""tts/espeak.py: Chinese text -> pinyin (pure) and the real espeak-ng cmn-latn-pinyin engine."""

from __future__ import annotations

import asyncio
import subprocess

import numpy as np
import pytest

from tts import audio
from tts.base import TtsError
from tts.espeak import EspeakEngine, normalize_text, parse_pitch, parse_rate, to_pinyin


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("体温37.3℃", "体温三十七点三度"),
        ("37度2", "三十七度二"),
        ("38.5°C", "三十八点五度"),
        ("请拨打12320", "请拨打幺二三二零"),
        ("电话010-12345678", "电话零幺零-幺二三四五六七八"),
        ("下午14:30", "下午十四点三十分"),
        ("9:05", "九点零五分"),
        ("明天9:00", "明天九点"),
        ("50%的居民", "百分之五十的居民"),
        ("2022年", "二零二二年"),
        ("第2次核酸", "第二次核酸"),
        ("2天后", "两天后"),
        ("共2人", "共两人"),
        ("10,000人", "一万人"),
        ("100元", "一百元"),
        ("按1确认", "按一确认"),
        ("没有数字", "没有数字"),
        ("请于2月3日前", "请于二月三日前"),  # February, not 两月
        ("2个月内", "两个月内"),
    ],
)
def test_numbers_are_read_the_chinese_way(text: str, expected: str) -> None:
    assert normalize_text(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("咳嗽", "ke2 sou4"),  # polyphone: 咳 is ke2 here, espeak's own dictionary says hai
        ("您最近有没有咳嗽？", "nin2 zui4 jin4 you3 mei2 you3 ke2 sou4?"),
        ("好的，谢谢。", "hao3 de5, xie4 xie4."),  # neutral tone as 5
        ("体温37.3度", "ti3 wen1 san1 shi2 qi1 dian3 san1 du4"),
        ("一样", "yi2 yang4"),  # 一 before tone 4
        ("一天", "yi4 tian1"),  # 一 before tone 1
        ("第一", "di4 yi1"),
        ("不是", "bu2 shi4"),
        ("绿码", "lv4 ma3"),
        ("发烧、乏力；", "fa1 shao1, fa2 li4;"),
        ("用APP扫码", "yong4 app sao3 ma3"),
        ("请按1，不是请按2。", "qing3 an4 yi1, bu2 shi4 qing3 an4 er4."),  # key digits: yi1, no sandhi
        ("1个人", "yi2 ge4 ren2"),  # a quantity: sandhi
        ("一百一十", "yi4 bai3 yi1 shi2"),
        ("1月1日", "yi1 yue4 yi1 ri4"),  # a date: no sandhi on 一月
        # the shipped temperature prompt: 当 is dàng (serve as) here, not dāng
        ("用星号当小数点，井号结束。", "yong4 xing1 hao4 dang4 xiao3 shu4 dian3, jing3 hao4 jie2 shu4."),
        ("我当时在家", "wo3 dang1 shi2 zai4 jia1"),
        ("如有发烧等不舒服", "ru2 you3 fa1 shao1 deng3 bu4 shu1 fu5"),
    ],
)
def test_pinyin(text: str, expected: str) -> None:
    assert to_pinyin(text) == expected


def test_espeak_reads_pinyin_with_chinese_tones() -> None:
    # the phonemes espeak-ng produces for our pinyin: ké sòu, not hāi (the cmn voice's error)
    out = subprocess.run(
        ["espeak-ng", "-v", "cmn-latn-pinyin", "-q", "-x", to_pinyin("咳嗽")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "kh'o-35" in out
    assert "s'ou51" in out


def test_settings_parsing() -> None:
    assert parse_rate("+0%") == 150
    assert parse_rate("-20%") == 120
    assert parse_pitch("+0Hz") == 50
    assert parse_pitch("+10Hz") == 55
    with pytest.raises(TtsError, match="tts.rate must look like"):
        parse_rate("fast")
    with pytest.raises(TtsError, match="tts.pitch"):
        parse_pitch("+3%")


def test_settings_key_changes_with_settings() -> None:
    a = EspeakEngine().settings_key()
    assert a == EspeakEngine().settings_key()
    assert a != EspeakEngine(rate="-10%").settings_key()
    assert "espeak-ng=1." in a


async def test_real_espeak_output_is_telephone_audio() -> None:
    pcm = await EspeakEngine().synthesize("您好，这里是12320卫生热线，请问您最近有没有咳嗽、发烧？")
    assert len(pcm) % 2 == 0
    seconds = audio.duration_s(pcm)
    assert 3.0 < seconds < 15.0
    samples = np.frombuffer(pcm, dtype="<i2")
    # non-silent, normalised, trimmed
    assert audio.active_level_dbfs(pcm) == pytest.approx(audio.TARGET_ACTIVE_DBFS, abs=0.5)
    assert audio.peak_dbfs(pcm) <= audio.PEAK_CEILING_DBFS + 0.01
    assert np.abs(samples[:160]).max() > 300  # sound within the first 20 ms
    assert np.abs(samples[-160:]).max() > 30  # and within the last 20 ms
    # speech energy in the telephone band
    power = np.abs(np.fft.rfft(samples.astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(samples.size, 1 / 8000)
    assert power[(freqs > 100) & (freqs < 3400)].sum() > 0.9 * power.sum()


async def test_numbers_change_the_audio() -> None:
    eng = EspeakEngine()
    a, b = await asyncio.gather(eng.synthesize("体温37.3度"), eng.synthesize("体温三十七点三度"))
    assert a == b  # digits are read exactly like the words


async def test_concurrent_renders() -> None:
    eng = EspeakEngine()
    outs = await asyncio.gather(*(eng.synthesize(t) for t in ["有", "没有", "发烧", "咳嗽", "谢谢"]))
    assert all(len(o) > 800 for o in outs)
    assert len({o for o in outs}) == 5


async def test_nothing_speakable() -> None:
    with pytest.raises(TtsError, match="nothing speakable"):
        await EspeakEngine().synthesize("，。！")


async def test_missing_binary() -> None:
    with pytest.raises(TtsError, match="no-such-espeak is not installed"):
        await EspeakEngine(binary="no-such-espeak").synthesize("你好")


async def test_bad_voice_reports_espeak_error() -> None:
    # espeak-ng itself would fall back to English without a word; the engine refuses
    with pytest.raises(TtsError, match="voice 'no-such-voice-xx' is not installed"):
        await EspeakEngine(voice="no-such-voice-xx").synthesize("你好")
    assert len(await EspeakEngine(voice="cmn-Latn-pinyin").synthesize("你好")) > 0
