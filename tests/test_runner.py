"""The dialog runner over an in-memory phone line: the real engine and default script, scripted callers.

Time runs 5-10x faster than real time (a short frame period on both sides); the audio itself is unchanged,
and every timing decision is counted in 20 ms frames, so the outcome is the same as at real time.
"""

from __future__ import annotations

import asyncio
import wave
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from asr.base import ScriptedRecognizer
from asr.dtmf import digit_tone
from dialer.memory import MemoryCaller, memory_media_pair
from dialogs.nlu.builtin import BuiltinNlu
from dialogs.runner import RunnerError, RunnerSettings, RunReport, run_dialog
from dialogs.script import Script, load_script
from tests.asr_audio import beep, espeak, silence, to_pcm

ROOT = Path(__file__).resolve().parent.parent
PERIOD = 0.004  # 5x real time
MS_PER_CHAR = 25  # prompt stand-in length


@pytest.fixture(scope="module")
def script() -> Script:
    return load_script(ROOT / "dialogs" / "scripts" / "covid_screening.yaml")


@pytest.fixture(scope="module")
def speech() -> bytes:
    return espeak("shi4 de5, mei2 you3")  # about a second of Mandarin at 8 kHz


async def prompt_audio(text: str) -> bytes:
    return beep(MS_PER_CHAR * len(text))


def keys(text: str) -> bytes:
    parts = []
    for d in text:
        parts += [digit_tone(d, 80, level_dbm0=-10), silence(80)]
    return to_pcm(np.concatenate(parts))


Resident = Callable[[MemoryCaller], Coroutine[Any, Any, None]]


async def call(
    script: Script,
    resident: Resident,
    replies: list[str | tuple[str, float]],
    tmp_path: Path,
    *,
    period: float = PERIOD,
    **settings: object,
) -> tuple[RunReport, MemoryCaller, ScriptedRecognizer]:
    session = script.new_session({"name": "张三"}, BuiltinNlu())
    media, caller = memory_media_pair("call-1", frame_period_s=period)
    asr = ScriptedRecognizer(replies, delay_s=0.08 * period / 0.02)  # ~80 ms final-result latency, scaled
    cfg = RunnerSettings(frame_period_s=period, audio_dir=str(tmp_path / "answers"), **settings)  # type: ignore[arg-type]
    caller.start()
    task = asyncio.create_task(resident(caller))
    try:
        async with asyncio.timeout(30):
            report = await run_dialog(session, media, asr, prompt_audio, cfg)
        await asyncio.wait_for(task, 5)
    finally:
        task.cancel()
        await caller.stop()
    return report, caller, asr


def answers(report: RunReport) -> dict[str, object]:
    return {k: v.value for k, v in report.result.answers.items()}


async def test_a_whole_screening_by_voice(script: Script, speech: bytes, tmp_path: Path) -> None:
    async def resident(c: MemoryCaller) -> None:
        for _ in range(5):
            await c.wait_for_silence(frames=15)  # let the prompt finish, then answer
            if c.hung_up:
                return
            await c.play(speech)

    report, caller, asr = await call(script, resident, ["是的", "没有", "没有", "没有", "做了"], tmp_path)
    res = report.result
    assert res.outcome == "completed" and res.risk == "none"
    assert answers(report) == {
        "identity_confirmed": True,
        "has_symptoms": False,
        "traveled": False,
        "contact_case": False,
        "second_test_done": True,
    }
    assert report.hangup_by == "robot" and caller.robot_hung_up
    assert [t["kind"] for t in report.turns] == ["speech"] * 5
    assert [t["node"] for t in report.turns] == ["greeting", "symptoms", "travel", "contact", "second_test"]
    for t in report.turns:
        assert t["text"] in ("是的", "没有", "做了") and t["confidence"] == 0.9
        assert isinstance(t["latency_ms"], float) and t["latency_ms"] >= 0
        assert t["barge_in"] is False
    # The runner's figures are merged into the engine's turn records (what CallAttempt.turns stores).
    assert [t["latency_ms"] for t in res.turns] == [t["latency_ms"] for t in report.turns]
    # Recognition got the hints of each question and all of the resident's speech (plus pre-roll).
    assert all("没有" in hints for _, hints, _, _ in asr.log)
    assert all(nbytes >= len(speech) * 0.8 for _, _, nbytes, _ in asr.log)
    # Risk questions keep the answer audio (config default "risk"), others do not.
    kept = {t["node"]: t["audio"] for t in report.turns}
    assert kept["greeting"] is None and kept["second_test"] is None
    for node in ("symptoms", "travel", "contact"):
        ref = kept[node]
        assert isinstance(ref, str) and res.answers[{"symptoms": "has_symptoms", "travel": "traveled", "contact": "contact_case"}[node]].audio_ref == ref
        with wave.open(str(tmp_path / "answers" / ref)) as w:
            assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
            assert w.getnframes() >= len(speech) // 2
    assert sorted(p.name for p in (tmp_path / "answers").rglob("*.wav")) == [
        "call-1-02-symptoms.wav",
        "call-1-03-travel.wav",
        "call-1-04-contact.wav",
    ]
    assert not list((tmp_path / "answers").rglob("*.part"))


async def test_keys_out_of_band_and_in_band(script: Script, tmp_path: Path) -> None:
    async def resident(c: MemoryCaller) -> None:
        await c.wait_for_silence(frames=15)
        await c.press("1")  # greeting: yes (AudioSocket DTMF message)
        await c.wait_for_silence(frames=15)  # intro + symptoms prompt
        await c.play(keys("1"))  # symptoms: yes, as tones in the audio
        await c.wait_for_silence(frames=15)
        await c.play(keys("37*8#"))  # temperature by keys, in band
        for _ in range(3):
            await c.wait_for_silence(frames=15)
            await c.press("2")
        await c.wait_for_silence(frames=15)

    report, caller, asr = await call(script, resident, [], tmp_path, keep_answer_audio="none")
    res = report.result
    assert answers(report) == {
        "identity_confirmed": True,
        "has_symptoms": True,
        "temperature": 37.8,
        "traveled": False,
        "contact_case": False,
        "second_test_done": False,
    }
    assert res.outcome == "completed" and res.risk == "flagged" and res.reminder_needed
    assert [(t["kind"], t["text"], t.get("source")) for t in report.turns] == [
        ("dtmf", "1", "out_of_band"),
        ("dtmf", "1", "in_band"),
        ("dtmf", "3", "in_band"),
        ("dtmf", "7", "in_band"),
        ("dtmf", "*", "in_band"),
        ("dtmf", "8", "in_band"),
        ("dtmf", "#", "in_band"),
        ("dtmf", "2", "out_of_band"),
        ("dtmf", "2", "out_of_band"),
        ("dtmf", "2", "out_of_band"),
    ]
    assert asr.log == []  # key tones never reached the recognizer
    assert not (tmp_path / "answers").exists()


async def test_barge_in_stops_the_prompt_and_the_speech_is_the_answer(script: Script, speech: bytes, tmp_path: Path) -> None:
    heard_at_barge_in: list[int] = []

    async def resident(c: MemoryCaller) -> None:
        await c.wait_for_prompt(min_frames=20)  # 0.4 s into the greeting, the resident talks over it
        heard_at_barge_in.append(c.heard_voice_frames)
        await c.play(speech)
        heard_at_barge_in.append(c.heard_voice_frames)  # the turn has not ended yet: greeting frames only
        await c.wait_for_prompt(min_frames=5)
        await c.hangup()

    report, caller, asr = await call(script, resident, ["是的"], tmp_path)
    greeting = script.new_session({"name": "张三"}, BuiltinNlu()).start()[0]
    full_prompt_frames = MS_PER_CHAR * len(greeting.text) // 20  # type: ignore[union-attr]
    first = report.turns[0]
    assert first["node"] == "greeting" and first["kind"] == "speech" and first["barge_in"] is True
    assert report.result.answers["identity_confirmed"].value is True
    # The greeting stopped about 300 ms (15 frames) after the resident started, far before its end.
    started, after_speech = heard_at_barge_in
    assert started + 15 <= after_speech < started + 30 < full_prompt_frames
    assert report.result.outcome == "hung_up" and report.hangup_by == "caller"


async def test_a_cough_over_the_prompt_does_not_interrupt_it(script: Script, tmp_path: Path) -> None:
    cough = espeak("ke2", speed=300)[: 160 * 2 * 8]  # < 200 ms of sound

    async def resident(c: MemoryCaller) -> None:
        await c.wait_for_prompt(min_frames=20)
        await c.play(cough)
        await c.wait_for_silence(frames=15)
        await c.hangup()

    report, caller, asr = await call(script, resident, [], tmp_path)
    greeting = script.new_session({"name": "张三"}, BuiltinNlu()).start()[0]
    assert caller.heard_voice_frames >= MS_PER_CHAR * len(greeting.text) // 20  # type: ignore[union-attr]
    assert asr.log == [] and report.result.outcome == "hung_up"
    assert [t["kind"] for t in report.turns] == ["hangup"]


async def test_silence_leads_to_reprompts_then_no_response(script: Script, tmp_path: Path) -> None:
    async def resident(c: MemoryCaller) -> None:
        await c.wait_until(lambda: c.hung_up, timeout_s=25)

    report, caller, _ = await call(script, resident, [], tmp_path, period=0.001)
    assert report.result.outcome == "no_response"
    kinds = [t["kind"] for t in report.turns]
    assert kinds == ["no_input"] * len(kinds) and len(kinds) == 4  # 2 re-prompts, a keys-only prompt, the end
    assert all(t["latency_ms"] is not None for t in report.turns)
    assert caller.robot_hung_up


async def test_hang_up_in_the_middle_of_a_prompt(script: Script, tmp_path: Path) -> None:
    async def resident(c: MemoryCaller) -> None:
        await c.wait_for_prompt(min_frames=10)
        await c.hangup()

    report, caller, _ = await call(script, resident, [], tmp_path)
    assert report.result.outcome == "hung_up" and report.hangup_by == "caller"
    assert report.result.answers == {}


async def test_settings_are_checked(script: Script) -> None:
    with pytest.raises(RunnerError, match="keep_answer_audio"):
        RunnerSettings(keep_answer_audio="sometimes")
    from outreach.config import TurnConfig

    s = RunnerSettings.from_config(TurnConfig(trailing_silence_ms=800), frame_period_s=0.01)
    assert (s.trailing_silence_ms, s.frame_period_s, s.keep_answer_audio) == (800, 0.01, "risk")


def test_purge_deletes_old_answer_audio_only(tmp_path: Path) -> None:
    import os
    import time

    from typer.testing import CliRunner

    from outreach.cli import app

    audio = tmp_path / "answers"
    old = audio / "2020-01-01" / "a-01-symptoms.wav"
    new = audio / "2099-01-01" / "b-01-symptoms.wav"
    other = audio / "2020-01-01" / "notes.txt"
    for p in (old, new, other):
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x" * 1000)
    month_ago = time.time() - 31 * 86400
    os.utime(old, (month_ago, month_ago))
    os.utime(other, (month_ago, month_ago))
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"turn:\n  audio_dir: {audio}\n", encoding="utf-8")
    runner = CliRunner()
    dry = runner.invoke(app, ["--config", str(cfg), "purge", "--older-than", "30", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "would delete 1 answer audio file(s)" in dry.output and old.exists()
    done = runner.invoke(app, ["--config", str(cfg), "purge", "--older-than", "30"])
    assert done.exit_code == 0 and "deleted 1 answer audio file(s)" in done.output
    assert not old.exists() and new.exists() and other.exists()
    bad = runner.invoke(app, ["--config", str(cfg), "purge", "--older-than", "-1"])
    assert bad.exit_code == 2 and "--older-than" in bad.output
