"""An in-memory media session pair: the robot's `MediaSession` cross-wired with a scripted caller.

For tests and benchmarks (in the spirit of aiortc's `dummy_connection_pair`): no sockets, but the same
timing as a phone line. The caller's "microphone" produces one 20 ms frame per frame period, whether it
is speaking or silent (a PBX sends audio continuously), key presses are signalled out of band in order
with the audio, and either side may hang up.

The caller runs its own pacing task (`start()`), or a driver calls `tick()` for many callers at once
(the benchmark does, so simulated callers cost little CPU next to the code under test). `frame_period_s`
shortens the 20 ms period to run a dialog faster than real time in tests.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import deque
from collections.abc import Callable, Collection, Coroutine
from typing import Any

from common.audio import FRAME_BYTES, SILENCE_FRAME
from dialer.base import (
    CallOutcome,
    DuplicateChannel,
    Health,
    OriginateRequest,
    OriginateResult,
    TelephonyBase,
    TelephonyUnavailable,
)
from dialer.media import (
    AudioFrame,
    DtmfEvent,
    HangupEvent,
    MediaClosed,
    MediaEvent,
    check_frame,
)

FRAME_PERIOD_S = 0.020


class MemoryMediaSession:
    """The robot's side (implements dialer.media.MediaSession)."""

    def __init__(self, call_id: str, caller: MemoryCaller) -> None:
        self._call_id = call_id
        self._caller = caller
        self._inbox: asyncio.Queue[MediaEvent] = asyncio.Queue()
        self._hangup: HangupEvent | None = None
        self.sent_frames = 0

    @property
    def call_id(self) -> str:
        return self._call_id

    async def receive(self) -> MediaEvent:
        if self._hangup is not None and self._inbox.empty():
            return self._hangup
        event = await self._inbox.get()
        if isinstance(event, HangupEvent):
            self._hangup = event
        return event

    async def send_audio(self, pcm: bytes) -> None:
        if self._hangup is not None or self._caller.hung_up:
            raise MediaClosed(f"call {self._call_id} has ended")
        check_frame(pcm)
        self.sent_frames += 1
        self._caller._hear(pcm)

    async def hangup(self) -> None:
        if self._hangup is None:
            self._hangup = HangupEvent("robot")
            self._inbox.put_nowait(self._hangup)
        self._caller._robot_hung_up()

    def _deliver(self, event: MediaEvent) -> None:
        if self._hangup is None:
            self._inbox.put_nowait(event)


class MemoryCaller:
    """The far end: plays audio in real-time frames, presses keys, hangs up, and records what it heard."""

    def __init__(self, call_id: str, *, frame_period_s: float = FRAME_PERIOD_S, keep_heard: bool = True) -> None:
        self.call_id = call_id
        self.frame_period_s = frame_period_s
        self.session = MemoryMediaSession(call_id, self)
        self.keep_heard = keep_heard
        self.heard = bytearray()  # everything the robot sent, when keep_heard
        self.heard_frames = 0
        self.heard_voice_frames = 0  # frames that were not digital silence
        self.hung_up = False  # either side ended the call
        self.robot_hung_up = False
        self._mic: deque[bytes | DtmfEvent] = deque()
        self._play_done: deque[tuple[int, asyncio.Future[None]]] = deque()
        self._queued = 0  # items ever queued on the mic
        self._sent = 0  # items ever taken off the mic
        self._waiters: list[tuple[Callable[[], bool], asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None
        self._voice_run = 0
        self._silence_run = 0
        self.frame_times: list[float] = []  # monotonic time of each voice frame heard (first of a run)
        self.max_gap_s = 0.0  # the longest wait between two frames from the robot (an audio gap)
        self._last_heard: float | None = None

    # ------------------------------------------------------------------ pacing

    def start(self) -> None:
        """Run the microphone in its own task (one frame per period)."""
        if self._task is None:
            self._task = asyncio.create_task(self._pace(), name=f"caller-{self.call_id}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def _pace(self) -> None:
        loop = asyncio.get_running_loop()
        next_t = loop.time()
        while not self.hung_up:
            self.tick()
            next_t += self.frame_period_s
            delay = next_t - loop.time()
            if delay < -10 * self.frame_period_s:
                next_t = loop.time()  # fell far behind (a stalled test machine): do not burst
                delay = 0
            await asyncio.sleep(max(delay, 0))

    def tick(self) -> None:
        """Send the next 20 ms of the microphone (speech, silence, or queued key presses first)."""
        if self.hung_up:
            return
        while self._mic and isinstance(self._mic[0], DtmfEvent):
            self.session._deliver(self._mic.popleft())  # type: ignore[arg-type]
            self._advance()
        if self._mic:
            frame = self._mic.popleft()
            assert isinstance(frame, bytes)
            self._advance()
        else:
            frame = SILENCE_FRAME
        self.session._deliver(AudioFrame(frame))
        self._check_waiters()

    def _advance(self) -> None:
        self._sent += 1
        while self._play_done and self._play_done[0][0] <= self._sent:
            _, fut = self._play_done.popleft()
            if not fut.done():
                fut.set_result(None)

    # ------------------------------------------------------------------ what the caller does

    async def play(self, pcm: bytes, *, wait: bool = True) -> None:
        """Speak `pcm` (8 kHz s16le): queued after what is already queued, padded to whole frames."""
        if len(pcm) % FRAME_BYTES:
            pcm = pcm + b"\x00" * (FRAME_BYTES - len(pcm) % FRAME_BYTES)
        for i in range(0, len(pcm), FRAME_BYTES):
            self._mic.append(pcm[i : i + FRAME_BYTES])
        await self._mark(wait)

    async def silence(self, seconds: float, *, wait: bool = True) -> None:
        """Stay silent for `seconds` of audio (queued like speech)."""
        await self.play(SILENCE_FRAME * max(1, round(seconds / 0.02)), wait=wait)

    async def press(self, digit: str, *, wait: bool = True) -> None:
        """An out-of-band key press (as AudioSocket's DTMF message), in order with the queued audio."""
        self._mic.append(DtmfEvent(digit))
        await self._mark(wait)

    async def hangup(self) -> None:
        """The caller hangs up now."""
        if not self.hung_up:
            self.hung_up = True
            self._mic.clear()
            self.session._deliver(HangupEvent("caller"))
            self._release_all()

    async def _mark(self, wait: bool) -> None:
        self._queued = self._sent + len(self._mic)
        if not wait:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._play_done.append((self._queued, fut))
        if self.hung_up:
            fut.set_result(None)
        await fut

    async def wait_until(self, cond: Callable[[], bool], timeout_s: float = 10.0) -> None:
        """Wait until `cond()` holds (checked after every frame sent and heard)."""
        if cond():
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((cond, fut))
        async with asyncio.timeout(timeout_s):
            await fut

    async def wait_for_prompt(self, *, min_frames: int = 5, timeout_s: float = 10.0) -> None:
        """Wait until the robot has been talking for `min_frames` frames in a row."""
        await self.wait_until(lambda: self._voice_run >= min_frames or self.hung_up, timeout_s)

    async def wait_for_silence(self, *, frames: int = 10, timeout_s: float = 10.0) -> None:
        """Wait until the robot talked and then was silent for `frames` frames (its prompt ended)."""
        seen = self.heard_voice_frames

        def done() -> bool:
            return self.hung_up or (self.heard_voice_frames > seen and self._silence_run >= frames)

        await self.wait_until(done, timeout_s)

    # ------------------------------------------------------------------ robot -> caller

    def _hear(self, pcm: bytes) -> None:
        t = time.monotonic()
        if self._last_heard is not None and t - self._last_heard > self.max_gap_s:
            self.max_gap_s = t - self._last_heard
        self._last_heard = t
        self.heard_frames += 1
        if self.keep_heard:
            self.heard += pcm
        if pcm.count(0) == len(pcm):
            self._silence_run += 1
            self._voice_run = 0
        else:
            if self._voice_run == 0:
                self.frame_times.append(time.monotonic())
            self.heard_voice_frames += 1
            self._voice_run += 1
            self._silence_run = 0
        if self._waiters:
            self._check_waiters()

    def _robot_hung_up(self) -> None:
        self.robot_hung_up = True
        self.hung_up = True
        self._mic.clear()
        self._release_all()

    def _check_waiters(self) -> None:
        if not self._waiters:
            return
        keep = []
        for cond, fut in self._waiters:
            if fut.done():
                continue
            if cond():
                fut.set_result(None)
            else:
                keep.append((cond, fut))
        self._waiters = keep

    def _release_all(self) -> None:
        for _, fut in self._play_done:
            if not fut.done():
                fut.set_result(None)
        self._play_done.clear()
        self._check_waiters()


def memory_media_pair(
    call_id: str | None = None, *, frame_period_s: float = FRAME_PERIOD_S, keep_heard: bool = True
) -> tuple[MemoryMediaSession, MemoryCaller]:
    """A connected (robot session, caller) pair. Call `caller.start()` to run the caller's microphone."""
    caller = MemoryCaller(call_id or uuid.uuid4().hex, frame_period_s=frame_period_s, keep_heard=keep_heard)
    return caller.session, caller


class MemoryTelephony(TelephonyBase):
    """A telephony backend over in-memory media sessions (dialer.base.Telephony): every answered call
    is a `MemoryMediaSession` cross-wired with a `MemoryCaller` that `resident(caller, request)` drives.

    For the engine's end-to-end tests and the loop benchmark: the campaign engine places calls, the voice
    runner talks over real 20 ms frames, the caller side is scripted. `outcome(request)` decides how a call
    ends before answering (default: answered after `ring_s`); `go_down()` makes originate raise.
    """

    name = "memory"
    supports_transfer = False

    def __init__(
        self,
        resident: Callable[[MemoryCaller, OriginateRequest], Coroutine[Any, Any, None]],
        *,
        frame_period_s: float = FRAME_PERIOD_S,
        ring_s: float = 0.0,
        outcome: Callable[[OriginateRequest], CallOutcome] | None = None,
        keep_heard: bool = False,
        start_callers: bool = True,
    ) -> None:
        self._resident = resident
        self.frame_period_s = frame_period_s
        self.ring_s = ring_s
        self._outcome = outcome
        self.keep_heard = keep_heard
        self.start_callers = start_callers
        self.callers: dict[str, MemoryCaller] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._dialed: set[str] = set()
        self.down_reason: str | None = None
        self.originated: list[tuple[float, str]] = []  # (loop time, channel id) of every dial

    def go_down(self, reason: str = "memory backend down") -> None:
        self.down_reason = reason

    def come_up(self) -> None:
        self.down_reason = None

    def health(self) -> Health:
        return Health(self.down_reason is None, self.down_reason or f"{len(self.live())} calls up")

    def live(self) -> list[str]:
        return [cid for cid, c in self.callers.items() if not c.hung_up]

    async def originate(self, request: OriginateRequest) -> OriginateResult:
        if request.channel_id in self._dialed:
            raise DuplicateChannel(f"channel {request.channel_id} was already dialled; refusing to dial it twice")
        if self.down_reason is not None:
            raise TelephonyUnavailable(self.down_reason)
        self._dialed.add(request.channel_id)
        self.originated.append((asyncio.get_running_loop().time(), request.channel_id))
        outcome = self._outcome(request) if self._outcome is not None else CallOutcome.answered
        if self.ring_s:
            await asyncio.sleep(self.ring_s)
        if outcome != CallOutcome.answered:
            return OriginateResult(request.channel_id, outcome, self.ring_s, f"memory {outcome.value}")
        session, caller = memory_media_pair(request.channel_id, frame_period_s=self.frame_period_s,
                                            keep_heard=self.keep_heard)
        self.callers[request.channel_id] = caller
        if self.start_callers:
            caller.start()
        self._tasks[request.channel_id] = asyncio.create_task(self._resident(caller, request),
                                                              name=f"resident-{request.channel_id}")
        return OriginateResult(request.channel_id, CallOutcome.answered, self.ring_s, "16 NORMAL_CLEARING",
                               media=session)

    async def hangup(self, channel_id: str) -> None:
        caller = self.callers.get(channel_id)
        if caller is not None and not caller.hung_up:
            await caller.session.hangup()

    async def reconcile(self, owned: Collection[str]) -> set[str]:
        return {cid for cid in owned if cid in self.callers and not self.callers[cid].hung_up}

    async def stop(self) -> None:
        for cid in list(self.callers):
            await self.hangup(cid)
        for caller in self.callers.values():
            await caller.stop()
        for t in self._tasks.values():
            t.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        self._tasks.clear()
