"""The dialog engine's vocabulary: input events, output actions, and the screening result.

The engine is pure: a session receives events and returns actions. Whoever runs it (the simulated
network in text mode, the voice runner over a media session, `outreach dialog try`) turns actions
into speech/listening and feeds events back.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Protocol

from dialogs.nlu.types import Expectation, NluResult

# Outcome names a script may end with.
SCRIPT_OUTCOMES = (
    "completed",
    "callback_requested",
    "human_requested",
    "wrong_number",
    "opted_out",
    "no_response",
    "not_understood",
    "hung_up",
)
# Outcome names used everywhere (records, exports, web): plus `transferred`, set when the call was handed to
# a person in the human queue (campaigns.transfer), never by a script.
OUTCOMES = (*SCRIPT_OUTCOMES, "transferred")
RISK_LEVELS = ("none", "flagged", "high")


# ----------------------------------------------------------------------------- events (in)


@dataclass(frozen=True, slots=True)
class Utterance:
    """Recognized speech (or typed text) of the resident, with the recognizer's confidence."""

    text: str
    confidence: float = 1.0
    audio_ref: str | None = None  # kept answer audio, when the runner stored it


@dataclass(frozen=True, slots=True)
class Dtmf:
    """One key press: 0-9, *, #."""

    digit: str


@dataclass(frozen=True, slots=True)
class NoInput:
    """The resident said nothing within the listen timeout."""


@dataclass(frozen=True, slots=True)
class HangUp:
    """The resident hung up."""


@dataclass(frozen=True, slots=True)
class Understood:
    """The NLU's reading of the utterance an `Understand` action asked about."""

    result: NluResult


Event = Utterance | Dtmf | NoInput | HangUp | Understood


# ----------------------------------------------------------------------------- actions (out)


@dataclass(frozen=True, slots=True)
class Say:
    """Speak a prompt. `barge_in`: the resident may interrupt it (speech or keys)."""

    text: str
    node: str
    barge_in: bool = True


@dataclass(frozen=True, slots=True)
class Listen:
    """Wait for the resident's answer to node `node`.

    `expect` is one of yes_no, temperature, choice, free_text. `hints` are phrases a recognizer may
    use as a grammar; `dtmf` maps keys to meanings; `dtmf_terminator` ends multi-key entry (e.g. 37*5#).
    """

    node: str
    expect: str
    field: str | None = None  # the record field the answer goes to
    no_input_s: float = 5.0
    hints: tuple[str, ...] = ()
    dtmf: tuple[tuple[str, str], ...] = ()
    dtmf_terminator: str | None = None
    risk: bool = False  # a risk question: its answer audio is kept when config says "risk"


@dataclass(frozen=True, slots=True)
class End:
    """The conversation is over (after any preceding Say has been played)."""

    outcome: str


@dataclass(frozen=True, slots=True)
class Understand:
    """Understand `text` (the reply to node `node`): the driver awaits the NLU
    (`DialogSession.understand`) and sends the reading back as an `Understood` event.

    Only sessions created with `defer_nlu=True` emit it (live calls: the NLU may be a Rasa server
    over HTTP); it always comes alone."""

    text: str
    expect: Expectation
    node: str


Action = Say | Listen | End | Understand


# ----------------------------------------------------------------------------- result


@dataclass(slots=True)
class Answer:
    """One recorded answer."""

    field: str
    value: Any
    raw: str
    confidence: float
    nlu: str  # which NLU (or "dtmf") produced it
    intent: str
    uncertain: bool = False
    audio_ref: str | None = None
    detail: dict[str, Any] = dataclasses.field(default_factory=dict)  # NLU extras, e.g. {"symptoms": ["cough"]}

    def as_dict(self) -> dict[str, Any]:
        out = {
            "value": self.value,
            "raw": self.raw,
            "confidence": round(self.confidence, 3),
            "nlu": self.nlu,
            "intent": self.intent,
            "uncertain": self.uncertain,
            "audio": self.audio_ref,
        }
        if self.detail:
            out["detail"] = dict(self.detail)
        return out


@dataclass(slots=True)
class ScreeningResult:
    """The growing record of one conversation."""

    outcome: str | None = None
    risk: str = "none"
    reasons: list[str] = field(default_factory=list)
    answers: dict[str, Answer] = field(default_factory=dict)
    reminder_needed: bool = False
    escalate_human: bool = False  # a rule routed this record to a human callback
    opt_out: bool = False
    scam_suspected: bool = False  # the resident suspected a scam (你们是骗子吧); a hang-up after it is a refusal
    # For callback_requested: the time the resident asked for, as NLU parsed it (no clock here):
    # {"text": "下午三点", "delay_minutes": int | None, "day_offset": int, "time": "HH:MM" | None}
    callback_hint: dict[str, Any] | None = None
    turns: list[dict[str, Any]] = field(default_factory=list)

    @property
    def uncertain(self) -> list[str]:
        return [name for name, a in self.answers.items() if a.uncertain]

    def as_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "risk": self.risk,
            "reasons": list(self.reasons),
            "answers": {k: v.as_dict() for k, v in self.answers.items()},
            "uncertain": self.uncertain,
            "reminder_needed": self.reminder_needed,
        }


class DialogSession(Protocol):
    """One conversation. `start()` once, then `handle()` per event until `done`; an `Understand`
    action is answered with `handle(Understood(await session.understand(action)))`."""

    @property
    def done(self) -> bool: ...

    @property
    def result(self) -> ScreeningResult: ...

    def start(self) -> list[Action]: ...

    def handle(self, event: Event) -> list[Action]: ...

    async def understand(self, request: Understand) -> NluResult: ...
