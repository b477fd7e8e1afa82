"""The telephony contract: what every backend (the simulated network, Asterisk AMI + AudioSocket) offers
the campaign engine, and how it reports what went wrong.

Lifecycle. A backend is an async context manager: `async with backend:` calls `start()` (connect to the
PBX, open the media server) and `stop()` (hang up what is still ours, close everything). `close()` is
kept as an alias of `stop()`. `start()` of a backend that cannot work at all (bad trunk pattern,
credentials refused) raises `TelephonyConfigError`; one whose peer is only unreachable right now raises
`TelephonyUnavailable` (the engine retries later).

Calls. An attempt is identified by *our own* channel id (a uuid stored before dialling; for Asterisk
the AMI `ChannelId` and the AudioSocket uuid) and bounded by *our own* deadline.
- `originate(request)` places one call and returns how it ended (`OriginateResult`), for an answered
  call with its conversation: `media` (an audio `MediaSession`, dialer/media.py) or `text` (a
  `TextChannel`, for backends that exchange text, like the simulated network). A backend never dials
  one channel id twice (`DuplicateChannel`).
- `hangup(channel_id)` ends one of our calls from our side, at any point (ringing or answered);
  idempotent, and a no-op for an unknown or finished channel.
- `reconcile(owned)`: after a restart, which of the channel ids we believe we own are still up on
  the PBX (the engine hangs them up and records them as interrupted).
- `health()`: the backend's own view (connected, trunk registered), read by the circuit breaker
  before it lets calls through again.
- `transfer(channel_id, target)`: optional; `supports_transfer` says whether it exists. Backends
  without it raise `TransferUnsupported`.

Error taxonomy (what the engine charges to whom):
1. **Resident outcome**: `originate()` *returns* an `OriginateResult` whose `outcome` is a
   `CallOutcome` (answered, no answer, busy, switched off / rejected, invalid number, failed). It is an
   attempt of the resident: it counts toward the attempt caps and is retried per policy.
2. **Transient system fault**: `originate()` *raises* `TelephonyUnavailable` (backend down, AMI
   disconnected) or `TrunkCongestion` (trunk out of channels, SIP 503, Q.850 34/38/41/42) *before the
   call reached the resident*. It is never counted as an attempt; it trips the trunk's circuit breaker,
   which pauses dialing and resumes with backoff.
3. **Permanent system fault**: `TelephonyConfigError` (bad trunk configuration, dial pattern, auth)
   and, outside this package, a broken script: found before the first call; the campaign does not
   start or is paused with the message.

`outcome_for_cause()` maps Q.850 hang-up causes (and SIP codes via PJSIP's table, reference/dialer.md)
onto this taxonomy, so every backend classifies the same way.

Durations are reported by the backend (`ring_s`, `TextChannel.elapsed_s`) so the engine can place the
attempt on its own clock, wall or virtual.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Collection
from dataclasses import dataclass, field
from types import TracebackType
from typing import Protocol, Self

from dialer.media import MediaSession


class CallOutcome(enum.StrEnum):
    """How an originate that reached the network ended, for the resident (AMI Reason in brackets)."""

    answered = "answered"  # 4
    no_answer = "no_answer"  # 3, or our own deadline
    busy = "busy"  # 5
    congestion = "congestion"  # 8 for the resident's side: switched off, rejected, out of order
    failed = "failed"  # 0/1: the call failed at the far end for another reason
    invalid_number = "invalid_number"  # 0 with cause 1 (unallocated) / 28


# ----------------------------------------------------------------------------- error taxonomy


class TelephonyError(RuntimeError):
    """A system fault of the telephony backend (never a resident's outcome)."""

    transient = False


class TelephonyUnavailable(TelephonyError):
    """Transient: the backend or the PBX cannot place calls right now (down, AMI disconnected).

    Raised before the call reached the resident: not an attempt of anyone; trips the breaker."""

    transient = True


class TrunkCongestion(TelephonyUnavailable):
    """Transient: the trunk refused the call for lack of capacity (SIP 503, Q.850 34/38/41/42)."""


class TelephonyConfigError(TelephonyError):
    """Permanent: the backend cannot work as configured (trunk pattern, credentials, dialplan)."""


class DuplicateChannel(TelephonyConfigError):
    """A channel id was given twice: the engine's bug; one attempt is never dialled twice."""


class TransferUnsupported(TelephonyError):
    """This backend cannot transfer calls."""


# Q.850 causes that mean the trunk (not the resident's phone) failed: retry later, charge no one.
TRUNK_FAULT_CAUSES = frozenset({34, 38, 41, 42, 47, 102})
_RESIDENT_CAUSES: dict[int, CallOutcome] = {
    1: CallOutcome.invalid_number,
    3: CallOutcome.invalid_number,
    22: CallOutcome.invalid_number,
    28: CallOutcome.invalid_number,
    16: CallOutcome.answered,
    17: CallOutcome.busy,
    18: CallOutcome.no_answer,
    19: CallOutcome.no_answer,
    20: CallOutcome.congestion,  # subscriber absent: switched off
    21: CallOutcome.congestion,  # call rejected
    27: CallOutcome.congestion,  # destination out of order
    31: CallOutcome.failed,
}


def outcome_for_cause(cause: int, text: str = "") -> CallOutcome:
    """The resident outcome of a Q.850 cause; raises `TrunkCongestion` for a trunk-side fault.

    Unknown causes are `failed` (a resident outcome: we cannot tell that it was ours)."""
    if cause in TRUNK_FAULT_CAUSES:
        raise TrunkCongestion(f"trunk refused the call: cause {cause} {text}".strip())
    return _RESIDENT_CAUSES.get(cause, CallOutcome.failed)


# ----------------------------------------------------------------------------- requests and results


@dataclass(frozen=True, slots=True)
class OriginateRequest:
    channel_id: str  # our uuid, unique per attempt; a backend must never dial one channel_id twice
    phone: str  # E.164
    caller_id: str
    timeout_s: float  # ring time before no_answer
    attempt_no: int = 1
    deadline: dt.datetime | None = None  # our own hard end of the whole call (aware UTC)
    trunk: str = "default"  # the trunk (config telephony.trunks) this call goes out on


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


@dataclass(frozen=True, slots=True)
class Health:
    """A backend's view of itself, for the circuit breaker and the status screens."""

    ok: bool
    detail: str = ""


class Telephony(Protocol):
    """A telephony backend: the simulated network, Asterisk AMI + AudioSocket. See the module docstring."""

    name: str
    supports_transfer: bool

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def close(self) -> None: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    async def originate(self, request: OriginateRequest) -> OriginateResult: ...

    async def hangup(self, channel_id: str) -> None: ...

    async def reconcile(self, owned: Collection[str]) -> set[str]: ...

    def health(self) -> Health: ...

    async def transfer(self, channel_id: str, target: str) -> None: ...


class TelephonyBase:
    """Shared lifecycle plumbing for backends: `async with`, `close()` as `stop()`, no transfer."""

    name = "base"
    supports_transfer = False

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def close(self) -> None:
        await self.stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def transfer(self, channel_id: str, target: str) -> None:
        raise TransferUnsupported(f"the {self.name} backend cannot transfer calls (channel {channel_id})")
