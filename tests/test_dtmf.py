"""In-band DTMF: every key at several levels, in noise, twist limits, timing limits, and no talk-off on speech."""

from __future__ import annotations

import numpy as np
import pytest

from asr.dtmf import COL_FREQS, DIGITS, ROW_FREQS, DtmfDetector, DtmfError, detect_digits, digit_tone, tone
from tests.asr_audio import espeak, silence, to_pcm


def _keys(*parts: np.ndarray) -> str:
    return detect_digits(to_pcm(np.concatenate(parts)))


@pytest.mark.parametrize("level", [-3.0, -7.0, -15.0, -25.0, -33.0])
def test_every_key_at_several_levels(level: float) -> None:
    parts = [silence(30)]
    for d in DIGITS:
        parts += [digit_tone(d, 60, level_dbm0=level), silence(60)]
    assert _keys(*parts) == DIGITS


def test_too_quiet_tones_are_not_keys() -> None:
    assert _keys(silence(20), digit_tone("5", 100, level_dbm0=-40), silence(60)) == ""


@pytest.mark.parametrize("snr_db", [20.0, 15.0])
def test_tones_in_white_noise(snr_db: float) -> None:
    rng = np.random.default_rng(7)
    misses = 0
    for d in DIGITS:
        sig = np.concatenate([silence(40), digit_tone(d, 60, level_dbm0=-15), silence(60)])
        power = np.mean(digit_tone(d, 60, level_dbm0=-15) ** 2)
        noisy = sig + rng.normal(0, np.sqrt(power / 10 ** (snr_db / 10)), len(sig))
        misses += _keys(noisy) != d
    assert misses == 0


def test_noise_alone_is_never_a_key() -> None:
    rng = np.random.default_rng(3)
    assert detect_digits(to_pcm(rng.normal(0, 3000, 8000 * 10))) == ""


@pytest.mark.parametrize(
    ("twist_db", "expected"),
    [(0.0, "1"), (6.0, "1"), (7.5, "1"), (10.0, ""), (-3.0, "1"), (-6.0, "")],
)
def test_twist_limits(twist_db: float, expected: str) -> None:
    # Positive: the row (low) tone is louder (normal twist, <= 8 dB); negative: reverse twist (<= 4 dB).
    assert _keys(silence(20), digit_tone("1", 80, level_dbm0=-10, twist_db=twist_db), silence(60)) == expected


def test_frequency_within_tolerance_is_accepted() -> None:
    for factor in (0.985, 1.015):
        sig = tone((ROW_FREQS[1] * factor,), 80, level_dbm0=-10) + tone((COL_FREQS[1] * factor,), 80, level_dbm0=-10)
        assert _keys(silence(20), sig, silence(60)) == "5"


def test_a_single_frequency_or_a_wrong_pair_is_not_a_key() -> None:
    assert _keys(silence(20), tone((770.0,), 200, level_dbm0=-5), silence(60)) == ""
    assert _keys(silence(20), tone((697.0, 770.0), 200, level_dbm0=-5), silence(60)) == ""  # two rows


@pytest.mark.parametrize("ms", [10, 15, 20])
def test_short_tones_are_rejected_at_every_alignment(ms: int) -> None:
    for offset in range(0, 20, 2):
        assert _keys(silence(offset), digit_tone("7", ms), silence(100)) == "", (ms, offset)


@pytest.mark.parametrize("ms", [40, 50, 80])
def test_tones_of_40ms_and_more_are_detected_at_every_alignment(ms: int) -> None:
    for offset in range(0, 20, 2):
        assert _keys(silence(offset), digit_tone("7", ms), silence(100)) == "7", (ms, offset)


def test_a_held_key_is_one_press_and_a_40ms_gap_separates_presses() -> None:
    assert _keys(silence(20), digit_tone("9", 1500), silence(80)) == "9"
    assert _keys(silence(20), digit_tone("3", 60), silence(40), digit_tone("3", 60), silence(80)) == "33"
    # A 10 ms drop-out inside a held key is not a new press.
    assert _keys(silence(20), digit_tone("3", 100), silence(10), digit_tone("3", 100), silence(80)) == "3"


def test_temperature_entry_sequence() -> None:
    parts = [silence(50)]
    for d in "37*5#":
        parts += [digit_tone(d, 70, level_dbm0=-12), silence(70)]
    assert _keys(*parts) == "37*5#"


def test_speech_does_not_produce_keys() -> None:
    """Talk-off: about a minute of synthesized Mandarin and other voices yields no key at all."""
    texts = [
        ("ni3 hao3, zhe4 li3 shi4 she4 qu1 wei4 sheng1 fu2 wu4 zhong1 xin1 fang2 yi4 sui2 fang3", "cmn-latn-pinyin"),
        ("zui4 jin4 shi2 si4 tian1, you3 mei2 you3 fa1 shao1, ke2 sou4, fa2 li4 zhe4 xie1 zheng4 zhuang4", "cmn-latn-pinyin"),
        ("wo3 de5 ti3 wen1 shi4 san1 shi2 qi1 du4 er4, mei2 you3 chu1 guo4 ben3 shi4", "cmn-latn-pinyin"),
        ("san1 qi1 xing1 hao4 wu3 jing3 hao4, yi1 er4 san1 si4 wu3 liu4 qi1 ba1 jiu3 ling2", "cmn-latn-pinyin"),
        ("The quick brown fox jumps over the lazy dog, one two three four five six seven eight nine", "en"),
        ("안녕하세요 저는 학생입니다 오늘 날씨가 좋습니다", "ko"),
        ("ni3 hao3 qing3 wen4 shi4 zhang1 san1 ma5 shi4 de5 wo3 jiu4 shi4", "cmn-latn-pinyin"),
    ]
    pcm = b"".join(espeak(t, voice=v, speed=s) for t, v in texts for s in (120, 170, 220))
    assert len(pcm) / 16000 > 40  # seconds of speech checked
    assert detect_digits(pcm) == ""


def test_tone_flag_covers_the_key_press() -> None:
    det = DtmfDetector()
    pcm = to_pcm(np.concatenate([silence(40), digit_tone("2", 100), silence(100)]))
    frames = [det.process(pcm[i : i + 320]) for i in range(0, len(pcm), 320)]
    assert [f.digit for f in frames if f.digit] == ["2"]
    first_tone = next(i for i, f in enumerate(frames) if f.tone)
    first_digit = next(i for i, f in enumerate(frames) if f.digit)
    assert first_tone <= first_digit  # the VAD can be told before the key is confirmed
    assert not frames[-1].tone and det.active is None


def test_bad_input() -> None:
    with pytest.raises(DtmfError, match="320 bytes"):
        DtmfDetector().process(b"\x00" * 100)
    with pytest.raises(DtmfError, match="not a DTMF key"):
        digit_tone("x")
