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

from asr.base import Recognizer, ScriptedRecognizer
from asr.dtmf import digit_tone
from dialer.memory import MemoryCaller, memory_media_pair
from dialogs.nlu.builtin import BuiltinNlu
from dialogs.runner import FramePacer, RunnerError, RunnerSettings, RunReport, run_dialog
from dialogs.script import Script, load_script
from tests.asr_audio import beep, espeak, silence, to_pcm

ROOT = Path(__file__).resolve().parent.parent
PERIOD = 0.004  # 5x real time
MS_PER_CHAR = 100  # prompt stand-in length (the greeting is short: ~1.9 s here)


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
    """Run the default script over an in-memory call with a scripted recognizer double."""
    asr = ScriptedRecognizer(replies, delay_s=0.08 * period / 0.02)  # ~80 ms final-result latency, scaled
    report, caller = await call_with(script, resident, asr, tmp_path, period=period, **settings)
    return report, caller, asr


async def call_with(
    script: Script,
    resident: Resident,
    asr: Recognizer,
    tmp_path: Path,
    *,
    period: float = PERIOD,
    **settings: object,
) -> tuple[RunReport, MemoryCaller]:
    """Run the default script over an in-memory call with the given recognizer."""
    session = script.new_session({"name": "张三"}, BuiltinNlu())
    media, caller = memory_media_pair("call-1", frame_period_s=period)
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
    return report, caller


def answers(report: RunReport) -> dict[str, object]:
    return {k: v.value for k, v in report.result.answers.items()}


async def answer_each_prompt(c: MemoryCaller, speech: bytes, turns: int = 5) -> None:
    """A resident who lets each prompt finish, then says `speech`; until the robot hangs up."""
    for _ in range(turns):
        await c.wait_for_silence(frames=15)
        if c.hung_up:
            return
        await c.play(speech)


async def test_a_whole_screening_by_voice(script: Script, speech: bytes, tmp_path: Path) -> None:
    async def resident(c: MemoryCaller) -> None:
        await answer_each_prompt(c, speech)

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
    done = runner.invoke(app, ["--config", str(cfg), "--db", f"sqlite:///{tmp_path / 'store.db'}", "purge", "--older-than", "30"])
    assert done.exit_code == 0 and "deleted 1 answer audio file(s)" in done.output
    assert not old.exists() and new.exists() and other.exists()
    bad = runner.invoke(app, ["--config", str(cfg), "purge", "--older-than", "-1"])
    assert bad.exit_code == 2 and "--older-than" in bad.output


async def test_a_dead_media_stream_ends_the_call(script: Script, tmp_path: Path) -> None:
    # The line goes quiet mid-greeting: no audio, no hang-up message (a PBX that died, a cut TCP path
    # that never closed). After media_timeout_s without any frame the runner treats it as a hang-up.
    async def resident(c: MemoryCaller) -> None:
        await c.wait_for_prompt(min_frames=10)
        await c.stop()  # the microphone stops: not one more frame reaches the robot

    report, caller, asr = await call(script, resident, [], tmp_path, media_timeout_s=0.5)
    assert report.hangup_by == "media_timeout"
    assert report.result.outcome == "hung_up" and report.result.answers == {}
    assert caller.robot_hung_up  # the robot released the call
    assert [t["kind"] for t in report.turns] == ["hangup"]
    assert asr.log == []
    # It waited for the timeout: at least 0.5 s of frames (at this frame period) after the last one in.
    assert report.frames_out - report.frames_in >= round(0.5 / PERIOD)


def test_purge_rejects_nan_and_keeps_a_folder_a_call_just_made(tmp_path: Path) -> None:
    import os
    import time

    from typer.testing import CliRunner

    from outreach.cli import app
    from outreach.commands.media import purge_answer_audio

    audio = tmp_path / "answers"
    old = audio / "2020-01-01" / "a-01-symptoms.wav"
    old.parent.mkdir(parents=True)
    old.write_bytes(b"x" * 100)
    fresh_dir = audio / "2099-01-01"  # a call just created it and is about to write its answer there
    fresh_dir.mkdir()
    month_ago = time.time() - 31 * 86400
    for p in (old, old.parent):
        os.utime(p, (month_ago, month_ago))
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"turn:\n  audio_dir: {audio}\n", encoding="utf-8")
    # "nan" parses as a float; it used to compare as "older than anything" and delete every file
    bad = CliRunner().invoke(app, ["--config", str(cfg), "purge", "--older-than", "nan"])
    assert bad.exit_code == 2 and "--older-than" in bad.output and old.exists()
    with pytest.raises(ValueError, match="older-than"):
        purge_answer_audio(audio, float("nan"))
    report = purge_answer_audio(audio, 30)
    # the emptied old day folder goes (deleting its file made it look new); the fresh one stays
    assert (report.files, report.dirs_removed) == (1, 1)
    assert not old.parent.exists() and fresh_dir.is_dir()
    report = purge_answer_audio(audio, 0)
    assert (report.files, report.dirs_removed) == (0, 0) and fresh_dir.is_dir()


async def test_recognition_failure_does_not_deafen_the_call(script: Script, speech: bytes, tmp_path: Path) -> None:
    # asr.engine vosk-server with the server down (a port nobody listens on): the answer counts as not
    # understood, the robot re-prompts, and keys still work. It used to kill the listener: the call went
    # deaf, then ended as a media timeout.
    import socket

    from asr.vosk_server import VoskServerRecognizer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: connections are refused

    async def resident(c: MemoryCaller) -> None:
        await c.wait_for_silence(frames=15)
        await c.play(speech)  # not recognized: the server is down
        await c.wait_for_silence(frames=15)  # the no-match re-prompt
        await c.press("1")
        await c.wait_for_prompt(min_frames=5)
        await c.hangup()

    asr = VoskServerRecognizer(f"ws://127.0.0.1:{port}", connect_timeout_s=2.0)
    report, _ = await call_with(script, resident, asr, tmp_path, media_timeout_s=3.0)
    assert report.hangup_by == "caller"
    first, second = report.turns[0], report.turns[1]
    assert (first["node"], first["kind"], first["text"], first["confidence"]) == ("greeting", "speech", "", 0.0)
    assert first["asr_error"] is True and first["latency_ms"] is not None
    assert (second["node"], second["kind"], second["text"]) == ("greeting", "dtmf", "1")
    assert report.result.answers["identity_confirmed"].value is True


@pytest.mark.parametrize("by_keys", [False, True])
async def test_the_media_bench_residents_really_answer(script: Script, speech: bytes, by_keys: bool) -> None:
    # bench/media_bench.py's simulated resident used to look for the robot's audio inside its own tick,
    # where it never arrives, so it never answered: every bench "dialog" was no-input re-prompts.
    import importlib.util

    spec = importlib.util.spec_from_file_location("media_bench", ROOT / "bench" / "media_bench.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    KEY_ANSWERS, REPLIES, Resident, key_audio = bench.KEY_ANSWERS, bench.REPLIES, bench.Resident, bench.key_audio

    media, caller = memory_media_pair("bench-1", frame_period_s=PERIOD)
    resident = Resident(caller, speech, [key_audio(d) for d in KEY_ANSWERS] if by_keys else None)
    asr = ScriptedRecognizer(lambda call_id, n: REPLIES[n % len(REPLIES)])
    settings = RunnerSettings(frame_period_s=PERIOD, keep_answer_audio="none")

    async def drive() -> None:
        while not caller.hung_up:
            resident.tick()
            await asyncio.sleep(PERIOD)

    driver = asyncio.create_task(drive())
    try:
        async with asyncio.timeout(30):
            report = await run_dialog(script.new_session({"name": "张三"}, BuiltinNlu()), media, asr, prompt_audio, settings)
    finally:
        driver.cancel()
    assert report.result.outcome == "completed"
    assert [t["kind"] for t in report.turns] == (["dtmf"] * 5 if by_keys else ["speech"] * 5)
    assert resident.answers == 5


async def test_a_key_pressed_while_the_robot_thinks_does_not_answer_the_next_question(
    script: Script, speech: bytes, tmp_path: Path
) -> None:
    # An elderly resident says "是的" and then also presses 1, as the prompt told them. The key arrives
    # after the end of their turn, while the answer is being recognized: it belongs to the question
    # just answered, not to the next one (1 there would mean "yes, I have symptoms").
    async def resident(c: MemoryCaller) -> None:
        await c.wait_for_silence(frames=15)
        await c.play(speech)
        # The turn ends 700 ms after the last voiced frame (the speech ends with ~300 ms of quiet) ...
        await c.silence(0.72)
        await c.press("1")  # ... so the key comes ~0.35 s later, while the robot is still recognizing
        await c.wait_for_silence(frames=15)  # intro + symptoms question
        await c.play(speech)
        await c.wait_for_prompt(min_frames=5)
        await c.hangup()

    asr = ScriptedRecognizer(["是的", "没有"], delay_s=1.0 * PERIOD / 0.02)  # a slow final result: 1 s
    report, _ = await call_with(script, resident, asr, tmp_path)
    assert [(t["node"], t["kind"], t["text"]) for t in report.turns] == [
        ("greeting", "speech", "是的"),
        ("symptoms", "speech", "没有"),
    ]
    assert answers(report) == {"identity_confirmed": True, "has_symptoms": False}


async def test_concurrent_calls_share_one_frame_pacer(script: Script, speech: bytes, tmp_path: Path) -> None:
    # One pacer task ticks every call's player (not a task and a timer per call and frame); it ends
    # with the last call, and every frame a call sent reached its caller.

    async def resident(c: MemoryCaller) -> None:
        await answer_each_prompt(c, speech)

    def pacer_tasks() -> list[str]:
        return [t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith("frame-pacer")]

    seen: list[int] = []

    async def watch() -> None:
        while True:
            seen.append(len(pacer_tasks()))
            await asyncio.sleep(PERIOD * 10)

    watcher = asyncio.create_task(watch())
    runs = await asyncio.gather(*(call(script, resident, ["是的", "没有", "没有", "没有", "做了"], tmp_path)
                                  for _ in range(3)))
    watcher.cancel()
    assert max(seen) == 1 and len(seen) > 10
    pacer = FramePacer.for_loop(PERIOD)
    assert len(pacer) == 0 and pacer.ticks > 0
    await asyncio.sleep(PERIOD * 3)
    assert pacer_tasks() == []
    for report, caller, _ in runs:
        assert report.result.outcome == "completed"
        assert caller.heard_frames == report.frames_out > 0


async def test_the_recognizer_gets_a_short_silence_tail_and_every_pause_inside_the_answer(
    script: Script, speech: bytes, tmp_path: Path
) -> None:
    # The endpointer waits 700 ms of silence to end the turn; the recognizer needs only a short tail
    # (turn.recognizer_tail_ms, 300 ms) after the last word: the rest is never decoded. A pause inside
    # the answer longer than the tail (500 ms here) is sent in full once the resident speaks again.
    x = np.frombuffer(speech, dtype="<i2")
    loud = np.flatnonzero(np.abs(x) > 300)
    word = x[loud[0] : loud[-1] + 1].tobytes()  # the speech without espeak's own leading/trailing silence

    async def resident(c: MemoryCaller) -> None:
        await c.wait_for_silence(frames=15)
        await c.play(word + to_pcm(silence(500)) + word)
        await c.wait_for_silence(frames=15)
        await c.hangup()

    report, _, asr = await call(script, resident, ["是的"], tmp_path, keep_answer_audio="all")
    first = report.turns[0]
    assert (first["node"], first["kind"], first["text"]) == ("greeting", "speech", "是的")
    with wave.open(str(tmp_path / "answers" / first["audio"])) as w:
        kept = w.getnframes() * 2  # everything the turn heard: pre-roll, the answer, 700 ms of silence
    fed = asr.log[0][2]
    assert kept >= 2 * len(word) + 500 * 16  # the kept audio has the whole answer and the pause
    assert fed == kept - (700 - 300) * 16  # only the end of the trailing silence is missing (16 bytes/ms)


async def test_a_recognizer_tail_longer_than_the_turns_silence_sends_everything(
    script: Script, speech: bytes, tmp_path: Path
) -> None:
    async def resident(c: MemoryCaller) -> None:
        await c.wait_for_silence(frames=15)
        await c.play(speech)
        await c.wait_for_silence(frames=15)
        await c.hangup()

    report, _, asr = await call(script, resident, ["是的"], tmp_path, keep_answer_audio="all", recognizer_tail_ms=1000)
    with wave.open(str(tmp_path / "answers" / report.turns[0]["audio"])) as w:
        assert asr.log[0][2] == w.getnframes() * 2
    with pytest.raises(RunnerError, match="recognizer_tail_ms"):
        RunnerSettings(recognizer_tail_ms=10)
