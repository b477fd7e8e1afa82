"""Voice activity on telephone frames and the endpointer state machine (exact frame counts)."""

from __future__ import annotations

import numpy as np
import pytest

from asr.turn import Endpointer, Phase, TurnEvent, TurnParams
from asr.vad import Vad, VadError
from tests.asr_audio import espeak, to_pcm


def _frames(pcm: bytes) -> list[bytes]:
    return [pcm[i : i + 320] for i in range(0, len(pcm) - 319, 320)]


def test_vad_on_speech_silence_and_hiss() -> None:
    vad = Vad(2)
    speech = _frames(espeak("zui4 jin4 you3 mei2 you3 fa1 shao1 ke2 sou4"))
    voiced = sum(vad.is_speech(f) for f in speech)
    assert voiced / len(speech) > 0.6
    assert not any(vad.is_speech(b"\x00" * 320) for _ in range(10))
    rng = np.random.default_rng(1)
    hiss = _frames(to_pcm(rng.normal(0, 20, 8000)))  # line hiss far below speech level
    assert sum(vad.is_speech(f) for f in hiss) == 0


def test_vad_rejects_bad_frames_and_modes() -> None:
    with pytest.raises(VadError, match="320 bytes"):
        Vad().is_speech(b"\x00" * 160)
    with pytest.raises(VadError, match="0..3"):
        Vad(5)


def _run(ep: Endpointer, pattern: list[bool]) -> list[tuple[int, TurnEvent]]:
    out: list[tuple[int, TurnEvent]] = []
    for i, v in enumerate(pattern):
        ev = ep.push(v)
        if ev is not TurnEvent.NONE:
            out.append((i, ev))
    return out


def test_speech_start_needs_3_voiced_of_5_and_turn_ends_after_trailing_silence() -> None:
    ep = Endpointer(TurnParams(trailing_silence_ms=700))
    ep.start_listening(5.0)
    pattern = [False] * 10 + [True, False, True, False, True] + [True] * 20 + [False] * 40
    events = _run(ep, pattern)
    assert events == [(14, TurnEvent.SPEECH_START), (34 + 35, TurnEvent.END_OF_TURN)]
    assert ep.phase is Phase.IDLE
    assert ep.speech_ms == 21 * 20  # from the start frame to the last voiced frame


def test_a_pause_shorter_than_the_trailing_silence_does_not_end_the_turn() -> None:
    ep = Endpointer(TurnParams(trailing_silence_ms=600))  # 30 frames
    ep.start_listening(5.0)
    events = _run(ep, [True] * 10 + [False] * 29 + [True] * 10 + [False] * 30)
    # The 29-frame pause is part of the turn; it ends on the 30th silent frame after index 48.
    assert events == [(2, TurnEvent.SPEECH_START), (48 + 30, TurnEvent.END_OF_TURN)]


def test_no_input_fires_after_exactly_the_listen_time() -> None:
    ep = Endpointer()
    ep.start_listening(2.0)  # 100 frames
    events = _run(ep, [False] * 150)
    assert events == [(99, TurnEvent.NO_INPUT)]
    assert ep.push(True) is TurnEvent.NONE  # idle after the timeout


def test_max_utterance_cuts_a_monologue() -> None:
    ep = Endpointer(TurnParams(max_utterance_s=1.0))
    ep.start_listening(5.0)
    events = _run(ep, [True] * 80)
    assert events == [(2, TurnEvent.SPEECH_START), (2 + 49, TurnEvent.MAX_UTTERANCE)]


def test_barge_in_after_300ms_of_speech_over_a_prompt() -> None:
    ep = Endpointer(TurnParams(barge_in_ms=300))
    ep.start_prompt()
    events = _run(ep, [False] * 5 + [True] * 30)
    assert events == [(7, TurnEvent.SPEECH_START), (7 + 14, TurnEvent.BARGE_IN)]
    assert ep.barged_in and ep.in_speech
    # The prompt stops; listening continues the same utterance to its end.
    ep.start_listening(5.0)
    events = _run(ep, [True] * 5 + [False] * 35)
    assert events == [(39, TurnEvent.END_OF_TURN)]


def test_a_cough_over_a_prompt_is_dropped() -> None:
    ep = Endpointer(TurnParams(barge_in_ms=300, trailing_silence_ms=700))
    ep.start_prompt()
    events = _run(ep, [True] * 8 + [False] * 40)
    assert events == [(2, TurnEvent.SPEECH_START), (7 + 35, TurnEvent.SPEECH_DISCARDED)]
    assert not ep.in_speech and ep.phase is Phase.PROMPT


def test_idle_ignores_audio_and_params_are_checked() -> None:
    ep = Endpointer()
    assert _run(ep, [True] * 50) == []
    ep.start_listening(1.0)
    ep.stop()
    assert _run(ep, [True] * 50) == []
    with pytest.raises(ValueError, match="start_frames"):
        TurnParams(start_frames=6, start_window=5)
    with pytest.raises(ValueError, match="trailing_silence_ms"):
        TurnParams(trailing_silence_ms=10)
