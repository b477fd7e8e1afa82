"""Turn-taking: a pure endpointer state machine driven by per-frame voice activity.

Time is counted in 20 ms frames, so the machine is exact and independent of the wall clock (the frames
*are* the clock on a real call). The runner feeds one `push(voiced)` per received frame and acts on the
returned event:

- SPEECH_START: `start_frames` voiced frames within the last `start_window` frames;
- BARGE_IN: while a prompt plays, speech has lasted `barge_in_ms` (the prompt should stop);
- END_OF_TURN: after speech, `trailing_silence_ms` of unvoiced frames;
- MAX_UTTERANCE: speech went on for `max_utterance_s` (the turn is cut there);
- NO_INPUT: while listening, no speech started within the listen's no-input time;
- SPEECH_DISCARDED: speech that started during a prompt died down before it became a barge-in (a
  cough, a short "嗯"); the prompt goes on and whatever was captured is dropped.

Defaults follow reference/voicebot.md: 700 ms trailing silence (Pipecat 0.6 s, LiveKit 0.5 s minimum),
~5 s no-input, barge-in after ~300 ms of speech over a prompt.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass

from common.audio import FRAME_MS


class TurnEvent(enum.Enum):
    NONE = "none"
    SPEECH_START = "speech_start"
    BARGE_IN = "barge_in"
    SPEECH_DISCARDED = "speech_discarded"
    END_OF_TURN = "end_of_turn"
    MAX_UTTERANCE = "max_utterance"
    NO_INPUT = "no_input"


class Phase(enum.Enum):
    IDLE = "idle"  # neither prompting nor listening: frames are ignored
    PROMPT = "prompt"  # a prompt plays: speech may barge in
    LISTEN = "listen"  # waiting for the answer


@dataclass(frozen=True, slots=True)
class TurnParams:
    trailing_silence_ms: int = 700
    barge_in_ms: int = 300
    max_utterance_s: float = 15.0
    start_frames: int = 3
    start_window: int = 5

    def __post_init__(self) -> None:
        if not 1 <= self.start_frames <= self.start_window:
            raise ValueError(f"start_frames ({self.start_frames}) must be 1..start_window ({self.start_window})")
        if self.trailing_silence_ms < FRAME_MS or self.barge_in_ms < FRAME_MS or self.max_utterance_s <= 0:
            raise ValueError("trailing_silence_ms and barge_in_ms must be >= 20 ms, max_utterance_s > 0")


def _frames(ms: float) -> int:
    return max(1, round(ms / FRAME_MS))


class Endpointer:
    """One call's turn-taking state. Not thread-safe; pure (no clock, no I/O)."""

    def __init__(self, params: TurnParams | None = None) -> None:
        self.params = params or TurnParams()
        self._silence_end = _frames(self.params.trailing_silence_ms)
        self._barge_frames = _frames(self.params.barge_in_ms)
        self._max_frames = _frames(self.params.max_utterance_s * 1000)
        self._recent: deque[bool] = deque(maxlen=self.params.start_window)
        self.phase = Phase.IDLE
        self.in_speech = False
        self.barged_in = False
        self._speech_frames = 0  # frames since speech start (voiced or not)
        self._silence = 0
        self._waited = 0
        self._no_input_frames = 0

    # ------------------------------------------------------------------ phase changes

    def start_prompt(self) -> None:
        """A prompt that may be interrupted starts playing (speech in progress carries on)."""
        self.phase = Phase.PROMPT
        self.barged_in = False

    def start_listening(self, no_input_s: float) -> None:
        """The prompts are over (or were interrupted): wait for the answer, at most `no_input_s` for it to start."""
        self.phase = Phase.LISTEN
        self._waited = 0
        self._no_input_frames = _frames(no_input_s * 1000)

    def stop(self) -> None:
        """Ignore audio (a prompt that must not be interrupted, or the call is ending)."""
        self.phase = Phase.IDLE
        self.reset_speech()

    def reset_speech(self) -> None:
        """Forget the utterance in progress (it was a key press, or it was consumed)."""
        self.in_speech = False
        self.barged_in = False
        self._speech_frames = 0
        self._silence = 0
        self._recent.clear()

    @property
    def speech_ms(self) -> int:
        """Length of the utterance so far, from its start to its last voiced frame."""
        return (self._speech_frames - self._silence) * FRAME_MS

    @property
    def lookback_frames(self) -> int:
        """Frames before the SPEECH_START frame that belong to the utterance (keep them as pre-roll)."""
        return self.params.start_window

    # ------------------------------------------------------------------ the machine

    def push(self, voiced: bool) -> TurnEvent:
        """Advance by one 20 ms frame."""
        if self.phase is Phase.IDLE:
            return TurnEvent.NONE
        if not self.in_speech:
            self._recent.append(voiced)
            if voiced and sum(self._recent) >= self.params.start_frames:
                self.in_speech = True
                self._speech_frames = 1
                self._silence = 0
                self._recent.clear()
                return TurnEvent.SPEECH_START
            if self.phase is Phase.LISTEN:
                self._waited += 1
                if self._waited >= self._no_input_frames:
                    self.phase = Phase.IDLE
                    return TurnEvent.NO_INPUT
            return TurnEvent.NONE
        # In speech.
        self._speech_frames += 1
        self._silence = 0 if voiced else self._silence + 1
        if self.phase is Phase.PROMPT:
            if not self.barged_in and self._silence >= self._silence_end:
                # Speech died down before it became an interruption: a cough, a short backchannel.
                self.reset_speech()
                return TurnEvent.SPEECH_DISCARDED
            if not self.barged_in and self._speech_frames - self._silence >= self._barge_frames:
                self.barged_in = True
                return TurnEvent.BARGE_IN
            return TurnEvent.NONE
        if self._silence >= self._silence_end:
            self.phase = Phase.IDLE
            return TurnEvent.END_OF_TURN
        if self._speech_frames >= self._max_frames:
            self.phase = Phase.IDLE
            return TurnEvent.MAX_UTTERANCE
        return TurnEvent.NONE
