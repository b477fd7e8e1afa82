"""The telephony interface the campaign engine talks to. One small surface for every backend.

A call attempt is identified by *our own* channel id (a uuid we generate and store before dialling;
for Asterisk it becomes the AMI `ChannelId` and the AudioSocket uuid) and bounded by *our own*
deadline. `originate()` returns how the attempt ended; an answered call carries a conversation:

- `media`: an audio `MediaSession` (dialer/media.py), for backends with real audio (AudioSocket);
- `text`: a `TextChannel`, for backends that exchange text directly (the simulated network): prompts
  go out as text, replies come back as recognised text, key presses, silence or a hang-up.

The dialer knows nothing about dialogs: whoever asked for the call runs its dialog over the channel.
Durations are reported by the backend (`ring_s`, `TextChannel.elapsed_s`) so the engine can place the
attempt on its own clock, wall or virtual.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, field
from typing import Protocol

from dialer.media import MediaSession


class CallOutcome(enum.StrEnum):
    """How an originate ended (AMI OriginateResponse Reason in brackets)."""

    answered = "answered"  # 4
    no_answer = "no_answer"  # 3, our own deadline
    busy = "busy"  # 5
    congestion = "congestion"  # 8: switched off, network busy, rejected
    failed = "failed"  # 0/1: trunk or request failure
    invalid_number = "invalid_number"  # 0 with cause 1 (unallocated) / 28


class TelephonyError(RuntimeError):
    """The backend cannot place calls at all (not: a call failed, which is an outcome)."""


@dataclass(frozen=True, slots=True)
class OriginateRequest:
    channel_id: str  # our uuid, unique per attempt; a backend must never dial one channel_id twice
    phone: str  # E.164
    caller_id: str
    timeout_s: float  # ring time before no_answer
    attempt_no: int = 1
    deadline: dt.datetime | None = None  # our own hard end of the whole call (aware UTC)


@dataclass(frozen=True, slots=True)
class ListenSpec:
    """What the dialog waits for next: the backend's view of a `dialogs.types.Listen`."""

    node: str
    expect: str  # yes_no, temperature, choice, free_text
    field: str | None = None
    no_input_s: float = 5.0
    hints: tuple[str, ...] = ()
    dtmf: tuple[tuple[str, str], ...] = ()  # key -> meaning
    dtmf_terminator: str | None = None


@dataclass(frozen=True, slots=True)
class Reply:
    """What came back for one listen: `kind` is speech, dtmf, no_input or hangup."""

    kind: str
    text: str = ""
    confidence: float = 1.0


class TextChannel(Protocol):
    """An answered call in text mode."""

    @property
    def channel_id(self) -> str: ...

    @property
    def elapsed_s(self) -> float:
        """Seconds since the call was answered, on the backend's timeline."""
        ...

    @property
    def hung_up(self) -> bool: ...

    async def say(self, text: str, node: str, *, barge_in: bool = True) -> None:
        """Play a prompt (the caller may hang up meanwhile: check `hung_up`)."""
        ...

    async def listen(self, spec: ListenSpec) -> Reply: ...

    async def hangup(self) -> None:
        """End the call from our side; idempotent."""
        ...


@dataclass(slots=True)
class OriginateResult:
    channel_id: str
    outcome: CallOutcome
    ring_s: float  # seconds from originate to answer (or to the failure)
    cause: str | None = None  # Q.850-style cause text for exports
    text: TextChannel | None = None
    media: MediaSession | None = None
    extra: dict[str, str] = field(default_factory=dict)


class Telephony(Protocol):
    """A telephony backend: the simulated network now, Asterisk AMI + AudioSocket later."""

    name: str

    async def originate(self, request: OriginateRequest) -> OriginateResult: ...

    async def close(self) -> None: ...
