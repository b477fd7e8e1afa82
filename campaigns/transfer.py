"""Transfer to a human: an answered call whose dialog ends asking for a person goes to the human queue.

When the resident asked for a person (dialog outcome `human_requested`) or the script's rules flagged a
high risk, and the telephony backend can transfer and the human queue is staffed now, the hang-up that
ends the dialog becomes a transfer (for Asterisk: AMI Redirect into the queue's context, the channel
carrying the attempt id) and the record's outcome says `transferred`. Otherwise, or if the transfer
fails, the call is hung up as before and the existing callback path applies (an escalation for a
community worker to call back).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from dialer.base import Telephony, TelephonyError
from dialer.media import MediaEvent, MediaSession
from dialogs.types import ScreeningResult

log = logging.getLogger(__name__)

TRANSFERRED = "transferred"


def wants_person(result: ScreeningResult) -> bool:
    """The dialog ended asking for a person: the resident asked, or the answers are high-risk."""
    return result.outcome == "human_requested" or (result.risk == "high" and result.outcome == "completed")


class TransferOnEnd:
    """A `MediaSession` around the call's own whose `hangup()` transfers when the dialog asks for it."""

    def __init__(
        self,
        media: MediaSession,
        result: Callable[[], ScreeningResult],
        telephony: Telephony,
        target: str,
        staffed: Callable[[], bool],
    ) -> None:
        self._media = media
        self._result = result
        self._telephony = telephony
        self._target = target
        self._staffed = staffed
        self._done = False
        self.transferred = False

    @property
    def call_id(self) -> str:
        return self._media.call_id

    async def receive(self) -> MediaEvent:
        return await self._media.receive()

    async def send_audio(self, pcm: bytes) -> None:
        await self._media.send_audio(pcm)

    async def hangup(self) -> None:
        if self._done:
            await self._media.hangup()
            return
        self._done = True
        result = self._result()
        if wants_person(result) and self._staffed():
            try:
                await self._telephony.transfer(self.call_id, self._target)
            except TelephonyError as exc:
                log.warning("call %s: transfer to the human queue failed (%s); hanging up", self.call_id, exc)
            else:
                self.transferred = True
                result.turns.append({"kind": "transfer", "target": self._target, "was": result.outcome})
                result.outcome = TRANSFERRED
                return
        await self._media.hangup()
