"""The recognizer interface the dialog runner talks to, and a scripted double for tests and benchmarks.

A `Recognizer` is shared by all calls of a process (it owns the model, the thread pool or the server
address). Each call opens one `AsrStream`; the stream recognizes one utterance at a time:

    stream = await recognizer.open_stream(call_id="...")
    stream.set_hints(["有", "没有"])          # phrase hints for the next utterance (a grammar where supported)
    await stream.feed(pcm_8k)                # 8 kHz s16le telephone audio, any chunk size, in order
    stream.partial                           # best guess so far (for barge-in decisions, logs)
    text, confidence = await stream.finish() # ends the utterance; the stream is ready for the next one
    await stream.cancel()                    # or: drop the utterance (it was a key press, a cough)
    await stream.close()                     # the call is over

Resampling to the engine's rate is the stream's business, so the runner only ever handles 8 kHz audio.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple, Protocol


class AsrError(RuntimeError):
    """Recognition failed (engine or server error); the message names the engine and the call."""


class AsrResult(NamedTuple):
    """The final result of one utterance: words separated by spaces (as Vosk emits them) and a 0..1 confidence."""

    text: str
    confidence: float


class AsrStream(Protocol):
    @property
    def partial(self) -> str: ...

    def set_hints(self, hints: Sequence[str]) -> None: ...

    async def feed(self, pcm_8k: bytes) -> None: ...

    async def finish(self) -> AsrResult: ...

    async def cancel(self) -> None: ...

    async def close(self) -> None: ...


class Recognizer(Protocol):
    name: str

    async def open_stream(self, *, call_id: str = "") -> AsrStream: ...

    async def close(self) -> None: ...


# ----------------------------------------------------------------------------- scripted double


Reply = tuple[str, float]
DEFAULT_CONFIDENCE = 0.9


class ScriptedRecognizer:
    """A recognizer double: each finished utterance gets the next scripted reply, after a delay.

    `replies` is either a list consumed in order by all streams, or a function `(call_id, n) -> reply`
    (n counts finished utterances of that call from 0); a reply is `(text, confidence)` or just the text. The delay models a real engine's final-result
    latency; `cost_s` burns that much CPU per fed chunk (a fixed-cost stand-in for decoding in benchmarks).
    Utterances that are cancelled consume no reply. Every finished utterance is logged in `log` as
    (call_id, hints, bytes of 8 kHz audio received, reply).
    """

    name = "scripted"

    def __init__(
        self,
        replies: Sequence[Reply | str] | Callable[[str, int], Reply | str] = (),
        *,
        delay_s: float = 0.0,
        cost_s: float = 0.0,
    ) -> None:
        self._replies: list[Reply | str] | None = None if callable(replies) else list(replies)
        self._fn: Callable[[str, int], Reply | str] | None = replies if callable(replies) else None
        self.delay_s = delay_s
        self.cost_s = cost_s
        self.log: list[tuple[str, tuple[str, ...], int, Reply]] = []
        self.streams_opened = 0

    def next_reply(self, call_id: str, n: int) -> Reply:
        """The reply for utterance `n` of `call_id`; a bare string gets DEFAULT_CONFIDENCE; none left: ("", 0.0)."""
        if self._fn is not None:
            reply = self._fn(call_id, n)
        else:
            assert self._replies is not None
            reply = self._replies.pop(0) if self._replies else ("", 0.0)
        if isinstance(reply, str):
            return (reply, DEFAULT_CONFIDENCE)
        return (str(reply[0]), float(reply[1]))

    async def open_stream(self, *, call_id: str = "") -> ScriptedStream:
        self.streams_opened += 1
        return ScriptedStream(self, call_id)

    async def close(self) -> None:
        return None


class ScriptedStream:
    def __init__(self, owner: ScriptedRecognizer, call_id: str) -> None:
        self._owner = owner
        self._call_id = call_id
        self._hints: tuple[str, ...] = ()
        self._bytes = 0
        self._n = 0
        self._closed = False

    @property
    def partial(self) -> str:
        return "…" if self._bytes else ""

    def set_hints(self, hints: Sequence[str]) -> None:
        self._hints = tuple(hints)

    async def feed(self, pcm_8k: bytes) -> None:
        if self._closed:
            raise AsrError(f"scripted recognizer: stream of call {self._call_id} is closed")
        self._bytes += len(pcm_8k)
        if self._owner.cost_s:
            end = time.thread_time() + self._owner.cost_s
            while time.thread_time() < end:
                pass

    async def finish(self) -> AsrResult:
        reply = self._owner.next_reply(self._call_id, self._n)
        self._owner.log.append((self._call_id, self._hints, self._bytes, reply))
        self._n += 1
        self._bytes = 0
        if self._owner.delay_s:
            await asyncio.sleep(self._owner.delay_s)
        return AsrResult(*reply)

    async def cancel(self) -> None:
        self._bytes = 0

    async def close(self) -> None:
        self._closed = True
