"""Residents calling back the robot's number (the caller ID they saw on a missed call).

The inbound dialplan context answers, announces the caller's number (AMI UserEvent) and connects the call
to the robot by AudioSocket. Here: the caller's number is looked up; when a running campaign still owes
that resident a call (the most recently started one), their contact is made due now and the call is held
for the dialer: the dialer's next "originate" for that contact takes this call instead of dialling, so
the screening runs through the normal pipeline (admission, one resident one call, caps, the record; the
attempt's cause says 居民回拨（呼入）). A caller with no open screening, or whose screening is not taken
within `take_within_s` (calling window closed, a call to them in progress, caps reached), hears a short
explanation of the line and may press 0 for the human queue (transferred while it is staffed), else the
call ends.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

from campaigns.contacts import InvalidValue, normalize_phone
from common.masking import mask_phone
from dialer.media import MediaSession
from dialogs.types import DialogSession, ScreeningResult
from results.inbound import OpenScreening, call_back_due
from results.store import Store

log = logging.getLogger(__name__)

MediaRunner = Callable[[DialogSession, MediaSession], Awaitable[tuple[ScreeningResult, float]]]


class Holder(Protocol):
    """The backend side (dialer.asterisk.backend.AsteriskTelephony)."""

    def hold_inbound(self, phone: str, session: Any, meta: dict[str, str]) -> asyncio.Future[str]: ...

    def release_inbound(self, phone: str, session: Any) -> bool: ...


class InboundDesk:
    """The backend's `on_inbound` handler."""

    def __init__(
        self,
        store: Store,
        holder: Holder,
        unknown_session: Callable[[], DialogSession],
        media_runner: MediaRunner,
        *,
        take_within_s: float = 8.0,
        now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.store = store
        self.holder = holder
        self.unknown_session = unknown_session
        self.media_runner = media_runner
        self.take_within_s = take_within_s
        self.now = now
        self.taken = 0
        self.explained = 0
        self._tasks: set[asyncio.Task[Any]] = set()

    def __call__(self, session: Any, meta: dict[str, str]) -> None:
        self._spawn(self._handle(session, meta))

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, session: Any, meta: dict[str, str]) -> None:
        raw = meta.get("caller", "")
        try:
            phone = normalize_phone(raw)
        except InvalidValue:
            phone = ""
        found: OpenScreening | None = None
        if phone:
            found = await asyncio.to_thread(call_back_due, self.store, phone, now=self.now())
        if found is not None:
            taken = self.holder.hold_inbound(phone, session, meta)
            try:
                channel_id = await asyncio.wait_for(asyncio.shield(taken), self.take_within_s)
            except (TimeoutError, asyncio.CancelledError):
                channel_id = None
            if channel_id is not None:
                self.taken += 1
                log.info("inbound call from %s: screening of campaign %s taken as attempt %s",
                         mask_phone(phone), found.campaign, channel_id)
                return
            if not self.holder.release_inbound(phone, session):
                return  # taken at the last moment
            log.info("inbound call from %s: campaign %s did not take it within %.0f s; explaining the line",
                     mask_phone(phone), found.campaign, self.take_within_s)
        else:
            log.info("inbound call from %s: no open screening; explaining the line", mask_phone(phone) if phone else "?")
        self.explained += 1
        try:
            await self.media_runner(self.unknown_session(), session)
        except Exception:
            log.exception("inbound call from %s failed", mask_phone(phone) if phone else "?")
            await session.hangup()
