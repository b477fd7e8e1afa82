"""The voice dialog runner: drives one `DialogSession` over one answered call's `MediaSession`.

Per call it runs a listener task next to the controller (the `run()` coroutine), and a player:

- the *player* sends one 20 ms frame per frame period: the current prompt, else silence (a PBX expects
  continuous audio). The players of all calls are ticked by one shared pacer per event loop (one timer
  for every call instead of one task and timer per call and frame: the per-frame cost of 200 calls was
  what made the loop lag). A new prompt's first frame goes out at once, so the reply latency does not
  include a wait for the next tick; that frame counts as the next tick's, so the call stays at real time;
- the *listener* reads the caller's events: every audio frame goes through the in-band DTMF detector and
  the VAD into the endpointer (`asr.turn`); speech is streamed to the recognizer from a little before its
  detected start (pre-roll) to the end of the turn, except that a run of silence is sent only up to
  `recognizer_tail_ms`: the rest is held back and sent when speech resumes, or dropped when the turn
  ends (the endpointer waits `trailing_silence_ms` to decide that, but the recognizer needs only a short
  tail to close the last word, and decoding is most of a call's CPU); key presses (in-band or out-of-band) and hang-ups are
  passed on at once.

The controller turns actions into audio and listening and feeds the engine's events back:

- `Say`: play the prompt. If it may be interrupted and a `Listen` follows, the resident's speech of at
  least `barge_in_ms` (or a key) stops it and the rest of the batch's prompts; what they said is
  recognized as the answer. Shorter sounds (a cough, "嗯") are dropped and the prompt goes on.
- `Listen`: wait for the end of the turn (trailing silence), a key, or the no-input time; then send
  `Utterance`/`Dtmf`/`NoInput` to the engine. An engine that returns no actions (e.g. collecting a
  multi-key entry) keeps the same `Listen` going.
- `End`: after its prompt has played, hang up.

Per turn it records the recognized text, confidence and the reply latency: from the end-of-turn decision
(or key, or no-input timeout) to the first audio frame of the reply. The records are returned in
`RunReport.turns` and merged into the engine's own entries in `result.turns` (what goes into
`CallAttempt.turns`). The resident's answer audio is kept as a WAV file under `audio_dir` when config says
so (default: risk questions only) and referenced from the answer (`Utterance.audio_ref`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
import time
import weakref
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from asr.base import AsrError, AsrResult, AsrStream, Recognizer
from asr.dtmf import DtmfDetector
from asr.turn import Endpointer, Phase, TurnEvent, TurnParams
from asr.vad import Vad
from common.atomic import atomic_write_bytes
from common.audio import FRAME_BYTES, FRAME_MS, SILENCE_FRAME, TELEPHONE_RATE
from dialer.media import (
    AudioFrame,
    DtmfEvent,
    MediaClosed,
    MediaSession,
)
from dialogs.conversation import advance, resolve
from dialogs.types import (
    Action,
    DialogSession,
    Dtmf,
    End,
    Event,
    HangUp,
    Listen,
    NoInput,
    Say,
    ScreeningResult,
    Utterance,
)
from tts.audio import wav_bytes

log = logging.getLogger(__name__)

PromptAudio = Callable[[str], Awaitable[bytes]]
KEEP_MODES = ("none", "risk", "all")


class RunnerError(RuntimeError):
    """The runner was misconfigured or the dialog cannot go on (the message names the call)."""


@dataclass(frozen=True, slots=True)
class RunnerSettings:
    """Turn-taking and recording settings (see config section `turn`)."""

    trailing_silence_ms: int = 700
    barge_in_ms: int = 300
    max_utterance_s: float = 15.0
    keep_answer_audio: str = "risk"  # none | risk | all
    audio_dir: str = "./var/answers"
    vad_mode: int = 2
    inband_dtmf: bool = True
    preroll_frames: int = 10  # audio kept from before the detected speech start (200 ms)
    recognizer_tail_ms: int = 300  # silence after speech still sent to the recognizer (the rest waits)
    frame_period_s: float = 0.020  # shorter in tests: the whole dialog runs faster than real time
    media_timeout_s: float = 10.0  # no audio from the call at all for this long: treat as hung up

    def __post_init__(self) -> None:
        if self.keep_answer_audio not in KEEP_MODES:
            raise RunnerError(f"keep_answer_audio must be one of {', '.join(KEEP_MODES)}, got {self.keep_answer_audio!r}")
        if self.frame_period_s <= 0:
            raise RunnerError(f"frame_period_s must be > 0, got {self.frame_period_s}")
        if self.recognizer_tail_ms < FRAME_MS:
            raise RunnerError(f"recognizer_tail_ms must be >= {FRAME_MS}, got {self.recognizer_tail_ms}")

    @classmethod
    def from_config(cls, turn: Any, **overrides: Any) -> RunnerSettings:
        """From `Config.turn` (outreach.config.TurnConfig); keyword arguments override fields."""
        base = cls(
            trailing_silence_ms=turn.trailing_silence_ms,
            barge_in_ms=turn.barge_in_ms,
            max_utterance_s=turn.max_utterance_s,
            recognizer_tail_ms=turn.recognizer_tail_ms,
            keep_answer_audio=turn.keep_answer_audio,
            audio_dir=turn.audio_dir,
        )
        return replace(base, **overrides) if overrides else base


@dataclass(slots=True)
class RunReport:
    """What one call produced: the engine's result, the runner's turn records, who hung up."""

    result: ScreeningResult
    turns: list[dict[str, Any]] = field(default_factory=list)
    hangup_by: str = "robot"  # robot | caller | media_timeout
    frames_in: int = 0
    frames_out: int = 0

    @property
    def reply_latencies_ms(self) -> list[float]:
        return [t["latency_ms"] for t in self.turns if t.get("latency_ms") is not None]


async def run_dialog(
    session: DialogSession,
    media: MediaSession,
    recognizer: Recognizer,
    prompt_audio: PromptAudio,
    settings: RunnerSettings | None = None,
) -> RunReport:
    """Run a whole conversation; returns when it ended (the call is hung up by then)."""
    return await DialogRunner(session, media, recognizer, prompt_audio, settings).run()


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:64] or "x"


def write_wav(path: Path, pcm: bytes, rate: int = TELEPHONE_RATE) -> None:
    """Write s16le mono PCM as a WAV file atomically (common.atomic; missing folders are created)."""
    atomic_write_bytes(path, wav_bytes(pcm, rate), parents=True)


class DialogRunner:
    def __init__(
        self,
        session: DialogSession,
        media: MediaSession,
        recognizer: Recognizer,
        prompt_audio: PromptAudio,
        settings: RunnerSettings | None = None,
    ) -> None:
        self.session = session
        self.media = media
        self.recognizer = recognizer
        self.prompt_audio = prompt_audio
        self.settings = s = settings or RunnerSettings()
        self.call_id = media.call_id
        self._endpointer = Endpointer(
            TurnParams(
                trailing_silence_ms=s.trailing_silence_ms,
                barge_in_ms=s.barge_in_ms,
                max_utterance_s=s.max_utterance_s,
            )
        )
        self._vad = Vad(s.vad_mode)
        self._dtmf = DtmfDetector() if s.inband_dtmf else None
        self._preroll: deque[bytes] = deque(maxlen=max(s.preroll_frames, self._endpointer.lookback_frames))
        self._signals: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
        self._stream: AsrStream | None = None
        self._asr_active = False  # the current utterance is being streamed to the recognizer
        self._asr_failed = False  # the recognizer failed on the current utterance: stop feeding it
        self._tail_frames = max(1, s.recognizer_tail_ms // FRAME_MS)
        self._unvoiced = 0  # unvoiced frames in a row sent to the recognizer in this utterance
        self._held: list[bytes] = []  # silence past the tail: sent if speech resumes, else dropped
        self._hints: tuple[str, ...] = ()
        self._capture: bytearray | None = None
        self._keep_current = False
        self._accept_keys = False
        # Player state.
        self._prompt: bytes = b""
        self._pos = 0
        self._prompt_gen = 0
        self._pacer: FramePacer | None = None
        self._ahead = False  # a prompt's first frame went out before its tick: skip that tick
        self._ticks = 0
        self._tx_error: BaseException | None = None
        self._rx_task: asyncio.Task[None] | None = None
        self._latency_pending: tuple[float, list[dict[str, Any]]] | None = None
        self._last_rx = 0.0
        self._turn_no = 0
        self._listen_gen = 0
        self._closed = False
        self.report = RunReport(result=session.result)

    # ================================================================== controller

    async def run(self) -> RunReport:
        loop = asyncio.get_running_loop()
        self._last_rx = loop.time()
        self._stream = await self.recognizer.open_stream(call_id=self.call_id)
        self._rx_task = asyncio.create_task(self._rx_loop(), name=f"runner-rx-{self.call_id}")
        self._pacer = FramePacer.for_loop(self.settings.frame_period_s)
        self._pacer.add(self)
        try:
            await self._converse()
        finally:
            await self._shutdown()
        self.report.result = self.session.result
        return self.report

    async def _converse(self) -> None:
        actions: list[Action] = await resolve(self.session, self.session.start())
        listen: Listen | None = None
        while True:
            says = [a for a in actions if isinstance(a, Say)]
            end = next((a for a in actions if isinstance(a, End)), None)
            new_listen = next((a for a in actions if isinstance(a, Listen)), None)
            if new_listen is not None:
                listen = new_listen
            elif end is None and says:
                new_listen = listen  # prompts without a Listen: answer the last question again
            event: Event | None = None
            record: dict[str, Any] | None = None
            if says:
                event, record = await self._play_batch(says, new_listen if end is None else None)
            if isinstance(event, HangUp):
                await self._handle(event, None)
                return
            if end is not None or self.session.done:
                await self._hang_up()
                return
            if listen is None:
                raise RunnerError(f"call {self.call_id}: the dialog asked for nothing to listen to ({actions!r})")
            if event is None:
                event, record = await self._listen(listen)
            actions = await self._handle(event, record)
            if isinstance(event, HangUp):
                return
            if not actions and not self.session.done:
                # e.g. a digit of a multi-key entry: keep listening to the same question, no prompt
                actions = [listen]

    async def _handle(self, event: Event, record: dict[str, Any] | None) -> list[Action]:
        before = len(self.session.result.turns)
        actions = await advance(self.session, event)  # awaits the NLU: the player keeps sending frames
        if record is None:
            return actions
        t0 = record.pop("t0", None)
        engine_turns = self.session.result.turns[before:]
        extra = {k: v for k, v in record.items() if k not in ("node", "text", "confidence", "turn", "kind")}
        for t in engine_turns:
            t.update(extra)
        if t0 is not None and any(isinstance(a, Say) for a in actions):
            self._latency_pending = (t0, [record, *engine_turns])
        return actions

    async def _play_batch(self, says: list[Say], listen: Listen | None) -> tuple[Event | None, dict[str, Any] | None]:
        """Play prompts in order; returns an event that interrupted them (key, hang-up) and its record.

        A key pressed before these prompts began (while the last answer was being recognized) belonged
        to the question already answered: it is dropped, never taken as the answer to the next one.
        """
        ep = self._endpointer
        batch_t0 = time.perf_counter()
        for say in says:
            audio = await self.prompt_audio(say.text)
            interruptible = say.barge_in and listen is not None
            if interruptible:
                assert listen is not None
                self._prepare_listen(listen)
                ep.start_prompt()
            else:
                ep.stop()
                self._accept_keys = False
            gen = await self._play(audio)
            while True:
                sig = await self._signals.get()
                kind = sig[0]
                if kind == "prompt_done":
                    if sig[1] == gen:
                        break
                elif kind == "hangup":
                    self._stop_prompt()
                    return HangUp(), None
                elif kind == "barge_in" and interruptible:
                    self._stop_prompt()
                    log.debug("call %s: barge-in during %s", self.call_id, say.node)
                    return None, None
                elif kind == "digit" and sig[2] < batch_t0:
                    log.info("call %s: key %s pressed before the prompt for %s began; ignored", self.call_id, sig[1], say.node)
                elif kind == "digit" and interruptible:
                    assert listen is not None
                    self._stop_prompt()
                    ep.stop()
                    rec = self._new_record(listen.node, barge_in=True)
                    rec.update(kind="dtmf", text=sig[1], confidence=1.0, source=sig[3], t0=sig[2])
                    return Dtmf(sig[1]), rec
                # anything else is stale: a no-input timer of an earlier listen, a late barge-in
        return None, None

    def _new_record(self, node: str, *, barge_in: bool) -> dict[str, Any]:
        self._turn_no += 1
        rec: dict[str, Any] = {"turn": self._turn_no, "node": node, "barge_in": barge_in, "latency_ms": None}
        self.report.turns.append(rec)
        return rec

    def _prepare_listen(self, listen: Listen) -> None:
        self._hints = listen.hints
        mode = self.settings.keep_answer_audio
        self._keep_current = mode == "all" or (mode == "risk" and listen.risk)
        self._accept_keys = True

    async def _listen(self, listen: Listen) -> tuple[Event, dict[str, Any]]:
        """Wait for the answer to `listen`; returns the engine event and this turn's record."""
        self._prepare_listen(listen)
        ep = self._endpointer
        rec = self._new_record(listen.node, barge_in=ep.barged_in)
        self._listen_gen += 1
        ep.start_listening(listen.no_input_s)
        while True:
            sig = await self._signals.get()
            kind = sig[0]
            if kind == "hangup":
                rec.update(kind="hangup", text=None, confidence=None)
                return HangUp(), rec
            if kind == "no_input" and sig[2] == self._listen_gen:
                rec.update(kind="no_input", text=None, confidence=None, t0=sig[1])
                return NoInput(), rec
            if kind == "digit":
                rec.update(kind="dtmf", text=sig[1], confidence=1.0, source=sig[3], t0=sig[2])
                return Dtmf(sig[1]), rec
            if kind == "end_of_turn":
                t0, speech_ms, capture, reason, failed = sig[1], sig[2], sig[3], sig[4], sig[5]
                utt, asr_error = await self._recognize(listen, capture, failed)
                rec.update(
                    kind="speech",
                    text=utt.text,
                    confidence=utt.confidence,
                    speech_ms=speech_ms,
                    asr_ms=round((time.perf_counter() - t0) * 1000, 1),
                    audio=utt.audio_ref,
                    t0=t0,
                )
                if reason == "max_utterance":
                    rec["cut"] = True
                if asr_error:
                    rec["asr_error"] = True
                return utt, rec
            # barge_in / prompt_done / an earlier listen's no_input are stale here

    async def _recognize(self, listen: Listen, capture: bytes | None, failed: bool) -> tuple[Utterance, bool]:
        """The final result of the utterance (and whether recognition failed), keeping its audio if asked.

        A failed recognition gives empty text with confidence 0: the engine treats it as not understood.
        """
        assert self._stream is not None
        ref: str | None = None
        finish = self._finish_utterance(failed)
        if capture:
            name = f"{_safe(self.call_id)}-{self._turn_no:02d}-{_safe(listen.node)}.wav"
            day = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
            rel = f"{day}/{name}"
            path = Path(self.settings.audio_dir) / rel
            asr, written = await asyncio.gather(finish, asyncio.to_thread(write_wav, path, capture), return_exceptions=True)
            if isinstance(written, OSError):
                log.error("call %s: cannot keep answer audio at %s: %s", self.call_id, path, written)
            elif isinstance(written, BaseException):
                raise written
            else:
                ref = rel
            if isinstance(asr, BaseException):
                raise asr
        else:
            asr = await finish
        if asr is None:
            return Utterance("", 0.0, ref), True
        return Utterance(asr.text, asr.confidence, ref), False

    async def _finish_utterance(self, failed: bool) -> AsrResult | None:
        """The recognizer's final result; None when it failed (now or while the audio was fed)."""
        assert self._stream is not None
        if failed:
            try:
                await self._stream.cancel()  # do not let a half-fed utterance leak into the next one
            except AsrError:
                pass
            return None
        try:
            return await self._stream.finish()
        except AsrError as exc:
            log.error("call %s: %s", self.call_id, exc)
            return None

    async def _hang_up(self) -> None:
        self._stop_prompt()
        await self.media.hangup()
        self.report.hangup_by = "robot"

    async def _shutdown(self) -> None:
        self._closed = True
        if self._pacer is not None:
            self._pacer.discard(self)
        task = self._rx_task
        if task is not None:
            if not task.done():
                task.cancel()
            try:
                await task
            except (asyncio.CancelledError, MediaClosed):
                pass
        if self._stream is not None:
            await self._stream.close()
        await self.media.hangup()
        if self._tx_error is not None:
            raise self._tx_error

    # ================================================================== player

    async def _play(self, audio: bytes) -> int:
        if len(audio) % FRAME_BYTES:
            audio = audio + b"\x00" * (FRAME_BYTES - len(audio) % FRAME_BYTES)
        self._prompt_gen += 1
        self._prompt = audio
        self._pos = 0
        if not audio:
            self._signals.put_nowait(("prompt_done", self._prompt_gen))
            return self._prompt_gen
        pacer = self._pacer
        if not self._ahead and pacer is not None and pacer.has(self):
            # The first frame now: the reply latency has no wait for the tick in it. When the tick is
            # due within half a period this frame stands for it (the tick is skipped: the gap to the
            # following one stays under 1.5 periods); earlier in the period, skipping would leave the
            # peer a gap of nearly two periods, so the call runs one frame ahead instead.
            self._ahead = pacer.next_t - asyncio.get_running_loop().time() <= pacer.period_s / 2
            try:
                await self._send_frame()
            except MediaClosed:
                pacer.discard(self)
        return self._prompt_gen

    def _stop_prompt(self) -> None:
        self._prompt = b""
        self._pos = 0

    async def _tick(self, now: float) -> bool:
        """One frame period of this call (called by the pacer); False when the player is done."""
        if self._closed:
            return False
        if self._ahead:
            self._ahead = False
        else:
            try:
                await self._send_frame()
            except MediaClosed:
                return False
        self._ticks += 1
        if self._ticks % 50 == 0 and now - self._last_rx > self.settings.media_timeout_s:
            log.warning("call %s: no audio from the call for %.1f s; treating it as hung up",
                        self.call_id, self.settings.media_timeout_s)
            self.report.hangup_by = "media_timeout"
            self._signals.put_nowait(("hangup", "media_timeout"))
            return False
        return True

    def _tick_failed(self, exc: BaseException) -> None:
        """Sending failed with something other than the end of the call: end the call, raise it at shutdown."""
        log.error("call %s: sending audio failed: %r", self.call_id, exc)
        self._tx_error = exc
        self._signals.put_nowait(("hangup", "send_failed"))

    async def _send_frame(self) -> None:
        prompt = self._prompt
        if prompt:
            pos = self._pos
            self._pos = pos + FRAME_BYTES
            await self.media.send_audio(prompt[pos : pos + FRAME_BYTES])
            if pos == 0 and self._latency_pending is not None:
                t0, targets = self._latency_pending
                self._latency_pending = None
                ms = round((time.perf_counter() - t0) * 1000, 2)
                for t in targets:
                    t["latency_ms"] = ms
            if self._pos >= len(prompt):
                self._prompt = b""
                self._signals.put_nowait(("prompt_done", self._prompt_gen))
        else:
            await self.media.send_audio(SILENCE_FRAME)
        self.report.frames_out += 1

    # ================================================================== listener

    async def _rx_loop(self) -> None:
        loop = asyncio.get_running_loop()
        receive = self.media.receive
        while True:
            event = await receive()
            self._last_rx = loop.time()
            if isinstance(event, AudioFrame):
                self.report.frames_in += 1
                await self._on_audio(event.pcm)
            elif isinstance(event, DtmfEvent):
                await self._on_digit(event.digit, "out_of_band")
            else:
                if self.report.hangup_by != "media_timeout":
                    self.report.hangup_by = "robot" if event.cause == "robot" else "caller"
                self._signals.put_nowait(("hangup", event.cause))
                return

    async def _on_audio(self, pcm: bytes) -> None:
        if len(pcm) != FRAME_BYTES:
            log.debug("call %s: ignoring an audio frame of %d bytes", self.call_id, len(pcm))
            return
        ep = self._endpointer
        self._preroll.append(pcm)
        if ep.phase is Phase.IDLE:
            return
        tone = False
        if self._dtmf is not None:
            res = self._dtmf.process(pcm)
            tone = res.tone
            if res.digit is not None:
                await self._on_digit(res.digit, "in_band")
                return
        voiced = False if tone else self._vad.is_speech(pcm)
        if self._asr_active:
            if voiced:
                if self._held:
                    held, self._held = self._held, []
                    for frame in held:
                        await self._feed(frame)
                self._unvoiced = 0
                await self._feed(pcm)
            elif self._unvoiced < self._tail_frames:
                self._unvoiced += 1
                await self._feed(pcm)
            else:
                self._held.append(pcm)
            if self._capture is not None:
                self._capture += pcm
        ev = ep.push(voiced)
        if ev is TurnEvent.NONE:
            return
        if ev is TurnEvent.SPEECH_START:
            assert self._stream is not None
            self._stream.set_hints(self._hints)
            lookback = list(self._preroll)
            self._asr_active = True
            self._asr_failed = False
            self._unvoiced = 0
            self._held = []
            for frame in lookback:
                await self._feed(frame)
            self._capture = bytearray(b"".join(lookback)) if self._keep_current else None
        elif ev is TurnEvent.BARGE_IN:
            self._signals.put_nowait(("barge_in",))
        elif ev is TurnEvent.SPEECH_DISCARDED:
            await self._drop_utterance()
        elif ev in (TurnEvent.END_OF_TURN, TurnEvent.MAX_UTTERANCE):
            self._asr_active = False
            self._held = []
            capture = bytes(self._capture) if self._capture is not None else None
            self._capture = None
            reason = "max_utterance" if ev is TurnEvent.MAX_UTTERANCE else "silence"
            failed, self._asr_failed = self._asr_failed, False
            self._signals.put_nowait(("end_of_turn", time.perf_counter(), ep.speech_ms, capture, reason, failed))
            ep.reset_speech()
        elif ev is TurnEvent.NO_INPUT:
            self._signals.put_nowait(("no_input", time.perf_counter(), self._listen_gen))

    async def _on_digit(self, digit: str, source: str) -> None:
        if not self._accept_keys:
            log.debug("call %s: key %s ignored (no question open)", self.call_id, digit)
            return
        t0 = time.perf_counter()
        if self._endpointer.in_speech:
            await self._drop_utterance()
        self._signals.put_nowait(("digit", digit, t0, source))

    async def _feed(self, pcm: bytes) -> None:
        """Stream audio to the recognizer. A recognizer failure (a server down, an engine error) must not
        kill the listener: the utterance is then answered as not understood, and keys keep working."""
        if self._asr_failed:
            return
        assert self._stream is not None
        try:
            await self._stream.feed(pcm)
        except AsrError as exc:
            self._asr_failed = True
            log.error("call %s: recognition failed; this answer counts as not understood: %s", self.call_id, exc)

    async def _drop_utterance(self) -> None:
        self._endpointer.reset_speech()
        self._capture = None
        self._asr_failed = False
        self._held = []
        if self._asr_active:
            self._asr_active = False
            assert self._stream is not None
            try:
                await self._stream.cancel()
            except AsrError as exc:
                log.error("call %s: the recognizer failed to drop an utterance: %s", self.call_id, exc)


class FramePacer:
    """Ticks the players of every call on one event loop once per frame period, from one task.

    One timer per frame period for all calls, instead of a task and a timer per call and frame. Deadlines
    are absolute (no drift); a pacer that fell behind catches up tick by tick, and after a stall of more
    than five periods it starts afresh instead of bursting. `MediaSession.send_audio` only queues a frame
    (it must not wait), so ticking 200 calls is 200 short calls in a row. The task ends when no call is left.
    """

    _by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[float, FramePacer]] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self, period_s: float) -> None:
        self.period_s = period_s
        self._players: dict[DialogRunner, None] = {}  # ordered: calls are ticked in the order they came
        self._task: asyncio.Task[None] | None = None
        self.ticks = 0
        self.resyncs = 0
        self.next_t = 0.0  # loop time the next tick is due

    @classmethod
    def for_loop(cls, period_s: float) -> FramePacer:
        """The running loop's pacer for this frame period."""
        pacers = cls._by_loop.setdefault(asyncio.get_running_loop(), {})
        pacer = pacers.get(period_s)
        if pacer is None:
            pacer = pacers[period_s] = cls(period_s)
        return pacer

    def __len__(self) -> int:
        return len(self._players)

    def has(self, player: DialogRunner) -> bool:
        return player in self._players

    def add(self, player: DialogRunner) -> None:
        self._players[player] = None
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=f"frame-pacer-{self.period_s * 1000:g}ms")

    def discard(self, player: DialogRunner) -> None:
        self._players.pop(player, None)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        period = self.period_s
        players = self._players
        next_t = self.next_t = loop.time()
        while players:
            now = loop.time()
            for player in list(players):
                try:
                    alive = await player._tick(now)
                except Exception as exc:  # one call's failure never stops the others' audio
                    player._tick_failed(exc)
                    alive = False
                if not alive:
                    players.pop(player, None)
            self.ticks += 1
            next_t += period
            delay = next_t - loop.time()
            if delay < -5 * period:
                self.resyncs += 1
                next_t = loop.time()  # the loop stalled: start afresh instead of bursting frames
                delay = 0.0
            self.next_t = next_t
            await asyncio.sleep(delay if delay > 0 else 0)
        self._task = None  # no reference to a finished loop stays behind (pacers are kept per loop, weakly)
