"""The media-session protocol: what an answered call looks like to whoever talks on it.

Defined once here and implemented by every telephony backend (AudioSocket, the simulated network's
audio mode, in-memory test sessions). The dialog runner only consumes it.

Audio is signed 16-bit little-endian PCM, 8 kHz mono, in 20 ms frames of 320 bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from common.audio import FRAME_BYTES


@dataclass(frozen=True, slots=True)
class AudioFrame:
    """20 ms of the caller's audio (320 bytes s16le at 8 kHz)."""

    pcm: bytes


@dataclass(frozen=True, slots=True)
class DtmfEvent:
    """An out-of-band key press signalled by the PBX."""

    digit: str


@dataclass(frozen=True, slots=True)
class HangupEvent:
    """The call ended (caller hung up, or the PBX closed the session)."""

    cause: str = "caller"


MediaEvent = AudioFrame | DtmfEvent | HangupEvent


def check_frame(pcm: bytes) -> None:
    """Every backend's `send_audio` takes exactly one 20 ms frame of telephone audio."""
    if len(pcm) != FRAME_BYTES:
        raise ValueError(f"send_audio expects one 20 ms frame of {FRAME_BYTES} bytes, got {len(pcm)}")


class MediaClosed(ConnectionError):
    """Sending on a session whose call has ended."""


class MediaSession(Protocol):
    """One answered call's media.

    `receive()` returns the next event, in arrival order; after a HangupEvent it keeps returning
    HangupEvent. `send_audio()` queues one frame for the caller and returns without waiting (the
    caller of this method paces frames in real time: one pacer sends every call's frame in turn, so a
    `send_audio` that waited would delay all calls). `hangup()` ends the call from our side; idempotent.
    """

    @property
    def call_id(self) -> str: ...

    async def receive(self) -> MediaEvent: ...

    async def send_audio(self, pcm: bytes) -> None: ...

    async def hangup(self) -> None: ...
