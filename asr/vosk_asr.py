"""Streaming recognition with Vosk (Kaldi) in-process.

- One `vosk.Model` per model directory, loaded once and shared by every call (`shared_model`); the model is
  read-only and safe to share between threads.
- One `KaldiRecognizer` per call at 16 kHz: telephone audio is upsampled 8 -> 16 kHz with soxr first (the
  small Chinese model rejects 8 kHz). A recognizer is never used by two threads at once: each stream runs
  its jobs one after another.
- Phrase hints become a grammar where the model supports one (a lookahead model with `graph/HCLr.fst` and
  `graph/Gr.fst`; the big static models ignore hints). Vosk looks every space-separated token up in the
  model's vocabulary and silently drops missing ones, which breaks unsegmented Chinese phrases ("没有发烧"
  is not one word). So each phrase is segmented into vocabulary words (longest match, checked with
  `vosk_model_find_word`), phrases that cannot be are left out, and "[unk]" is always added so off-grammar
  speech maps to [unk] instead of a forced grammar word. The list is passed as real UTF-8 JSON
  (`ensure_ascii=False`): escaped \\uXXXX tokens are not found.
- Decoding runs in a pool of threads sized to the cores (the cffi binding releases the GIL, so threads
  decode in parallel). The pool serves latency-critical work first: a stream whose utterance has ended
  (final result, or a cancel) goes before every stream's bulk audio, and a chunk of it already waiting in
  the pool is moved up with it. Each stream hands its waiting chunks (and the final that follows them)
  to the pool as one job. Without that, calls ending their turns together waited for every other call's
  audio, twice (last chunk, then final): the reply latency, not the CPU, limited the calls a core takes.
  Backpressure: each stream has a bounded queue of pending chunks; `feed()` waits when it is full, so a
  slow machine slows the feeders instead of growing memory.
- The decoding threads run at a lower CPU priority than the rest of the process (`asr.decode_nice`,
  default 10: Linux niceness of those threads only). The event loop carries every call's audio, and a
  decoding backlog only delays replies, while a starved loop makes every call's audio stutter. With the
  same priority, two busy decoding threads and the loop thread share two cores evenly. At 70 Vosk calls
  on two cores: loop lag p99 20.1 ms and 0.30 % of frames late at the same priority, 11.8 ms and none
  late niced, for a reply latency p95 of 207 ms instead of 120 ms (bench/asterisk_bench.py,
  docs/performance.md).
- The final result's confidence is the mean per-word confidence (`SetWords(True)`).
- Cost per second of audio: the acoustic network is most of it, and Kaldi evaluates it in chunks of
  `--frames-per-chunk` input frames (default 20, i.e. 200 ms). Small chunks make small matrix products,
  and most of the time went into packing them (`sgemm_incopy`). `asr.frames_per_chunk` > 0 loads the
  model with that chunk size unless its own `conf/model.conf` sets one. Vosk reads the option from
  model.conf only, so the model is then loaded through a temporary overlay directory: links to the
  model's files and a copy of model.conf with the option added. Off by default: on the Korean test model
  in grammar mode 51 frames cut the CPU per second of audio from 0.035 to 0.023, but it changes the
  online i-vector timing and with it some transcripts (one test utterance lost its first word; 29 vs 30
  exact of 80 synthesized ones; docs/performance.md). A center can turn it on after checking it on its
  own recordings.
- Audio is resampled once per 200 ms chunk (not per 20 ms frame), and the partial result is asked for
  at most once a second of audio: both ran for every call's every frame or chunk.
"""

from __future__ import annotations

import asyncio
import functools
import heapq
import itertools
import json
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from asr.base import AsrError, AsrResult
from asr.resample import ASR_RATE, StreamResampler
from common.audio import TELEPHONE_RATE

log = logging.getLogger(__name__)

UNK = "[unk]"
_MAX_WORD_CHARS = 8
DEFAULT_FRAMES_PER_CHUNK = 0  # 0: as the model says (Kaldi's default is 20); see the module docstring
DEFAULT_DECODE_NICE = 10  # niceness added to the decoding threads (0: same priority as the event loop)
_PARTIAL_EVERY = 5  # chunks (of 200 ms) between two partial results

_models: dict[str, Any] = {}
_models_lock = threading.Lock()


def _vosk() -> Any:
    import vosk

    vosk.SetLogLevel(-2)  # errors only: Kaldi warnings go to stderr, not to our logging
    return vosk


def _conf_sets(conf: Path, option: str) -> bool:
    try:
        lines = conf.read_text(encoding="utf-8").splitlines()
    except OSError:
        return False
    return any(line.strip().startswith(f"--{option}=") for line in lines)


def needs_overlay(p: Path, frames_per_chunk: int) -> bool:
    """Whether model directory p must be loaded through an overlay to get `frames_per_chunk`."""
    conf = p / "conf" / "model.conf"
    return frames_per_chunk > 0 and conf.is_file() and not _conf_sets(conf, "frames-per-chunk")


def write_overlay(p: Path, dest: Path, frames_per_chunk: int) -> None:
    """Fill the empty directory `dest` with links to model p's files and a model.conf with the chunk size."""
    for entry in p.iterdir():
        if entry.name != "conf":
            (dest / entry.name).symlink_to(entry)
    (dest / "conf").mkdir()
    for entry in (p / "conf").iterdir():
        if entry.name != "model.conf":
            (dest / "conf" / entry.name).symlink_to(entry)
    text = (p / "conf" / "model.conf").read_text(encoding="utf-8")
    if text and not text.endswith("\n"):
        text += "\n"
    (dest / "conf" / "model.conf").write_text(f"{text}--frames-per-chunk={frames_per_chunk}\n", encoding="utf-8")


def _load(p: Path, frames_per_chunk: int) -> Any:
    """`vosk.Model` for directory p, through a temporary overlay when the chunk size must be added
    (Vosk reads every file while the model loads, so the overlay goes away right after)."""
    if not needs_overlay(p, frames_per_chunk):
        return _vosk().Model(str(p))
    with tempfile.TemporaryDirectory(prefix="outreach-vosk-") as tmp:
        write_overlay(p, Path(tmp), frames_per_chunk)
        return _vosk().Model(tmp)


def shared_model(path: str | os.PathLike[str], *, frames_per_chunk: int = DEFAULT_FRAMES_PER_CHUNK) -> Any:
    """The process-wide `vosk.Model` for a model directory (and chunk setting), loaded on first use.

    Raises:
        AsrError: the directory is missing or is not a Vosk model.
    """
    p = Path(path).expanduser().resolve()
    key = f"{p}#{frames_per_chunk}"
    with _models_lock:
        model = _models.get(key)
        if model is not None:
            return model
        if not (p / "am").is_dir() and not (p / "final.mdl").exists():
            raise AsrError(
                f"vosk: no model at {p} (expected a Vosk model directory with am/ and graph/); "
                "download one with `outreach models download vosk-small-cn`"
            )
        log.info("loading Vosk model %s (frames per chunk %s)", p, frames_per_chunk or "as the model says")
        try:
            model = _load(p, frames_per_chunk)
        except OSError as exc:
            raise AsrError(f"vosk: cannot prepare the model at {p}: {exc}") from exc
        except Exception as exc:  # the binding raises a bare Exception
            raise AsrError(f"vosk: cannot load the model at {p}: {exc}") from exc
        _models[key] = model
        return model


def loaded_models() -> list[str]:
    """Directories of the models loaded in this process (for diagnostics and tests)."""
    with _models_lock:
        return sorted({k.rsplit("#", 1)[0] for k in _models})


def supports_grammar(model_path: str | os.PathLike[str]) -> bool:
    """True for lookahead models (HCLr.fst + Gr.fst), which accept a runtime grammar."""
    g = Path(model_path) / "graph"
    return (g / "HCLr.fst").exists() and (g / "Gr.fst").exists()


def segment_phrase(model: Any, phrase: str) -> list[str] | None:
    """Split a phrase into vocabulary words: spaced tokens as given, unspaced runs by longest match.

    Returns None when some part is not in the vocabulary (Vosk would silently drop it).
    """
    words: list[str] = []
    for token in phrase.split():
        if model.vosk_model_find_word(token) >= 0:
            words.append(token)
            continue
        i = 0
        while i < len(token):
            for j in range(min(len(token), i + _MAX_WORD_CHARS), i, -1):
                if model.vosk_model_find_word(token[i:j]) >= 0:
                    words.append(token[i:j])
                    i = j
                    break
            else:
                return None
    return words or None


def build_grammar(model: Any, hints: Sequence[str]) -> list[str] | None:
    """The grammar phrase list for `hints`, or None for free recognition (no usable hint)."""
    phrases: list[str] = []
    for hint in hints:
        words = segment_phrase(model, hint)
        if words is None:
            log.warning("vosk: hint %r is not in the model's vocabulary; left out of the grammar", hint)
            continue
        joined = " ".join(words)
        if joined not in phrases:
            phrases.append(joined)
    if not phrases:
        return None
    return [*phrases, UNK]


def _collect(result: dict[str, Any], texts: list[str], confs: list[float]) -> None:
    words = result.get("result") or []
    if words:
        for w in words:
            if w.get("word") == UNK:
                continue
            texts.append(str(w.get("word", "")))
            confs.append(float(w.get("conf", 0.0)))
        return
    for token in str(result.get("text", "")).split():
        if token != UNK:
            texts.append(token)
            confs.append(1.0)


URGENT = 0  # an utterance ended: the reply waits for this job
BULK = 1  # audio of an utterance still going on


class DecodeJob:
    """One job in the `DecodePool`; `future` (on the submitting loop) gets its result."""

    __slots__ = ("fn", "future", "loop", "priority", "taken")

    def __init__(self, fn: Callable[[], Any], priority: int, loop: asyncio.AbstractEventLoop) -> None:
        self.fn = fn
        self.priority = priority
        self.loop = loop
        self.future: asyncio.Future[Any] = loop.create_future()
        self.taken = False


def _settle(fut: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if fut.done():
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)


class DecodePool:
    """Decoding threads taking jobs by priority (URGENT before BULK), first come first served within one.

    `escalate()` moves a job that is still waiting up to a higher priority (a lazy heap: the old entry is
    skipped when it comes up, since the job was taken already).
    """

    def __init__(self, threads: int, *, name: str = "vosk", nice: int = 0) -> None:
        self.threads = threads
        self.nice = nice
        self._heap: list[tuple[int, int, DecodeJob | None]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._stopping = False
        self._workers = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True) for i in range(threads)
        ]
        for w in self._workers:
            w.start()

    def submit(self, fn: Callable[[], Any], priority: int = BULK) -> DecodeJob:
        """Queue `fn` for a decoding thread; await `job.future` on the running loop for its result."""
        job = DecodeJob(fn, priority, asyncio.get_running_loop())
        with self._cond:
            if self._stopping:
                raise AsrError("vosk: the decoding pool is shut down")
            heapq.heappush(self._heap, (priority, next(self._seq), job))
            self._cond.notify()
        return job

    def escalate(self, job: DecodeJob, priority: int = URGENT) -> None:
        with self._cond:
            if job.taken or job.priority <= priority:
                return
            job.priority = priority
            heapq.heappush(self._heap, (priority, next(self._seq), job))
            self._cond.notify()

    def pending(self) -> int:
        with self._cond:
            return sum(1 for _, _, j in self._heap if j is not None and not j.taken)

    def shutdown(self, wait: bool = True) -> None:
        """Stop the threads; jobs still waiting are dropped (their futures are cancelled)."""
        with self._cond:
            if self._stopping:
                return
            self._stopping = True
            dropped = [j for _, _, j in self._heap if j is not None and not j.taken]
            for j in dropped:
                j.taken = True
            self._heap.clear()
            for _ in self._workers:
                heapq.heappush(self._heap, (-1, next(self._seq), None))
            self._cond.notify_all()
        for j in dropped:
            try:
                j.loop.call_soon_threadsafe(j.future.cancel)
            except RuntimeError:  # that loop is closed already
                pass
        if wait:
            for w in self._workers:
                if w is not threading.current_thread():
                    w.join()

    def _lower_priority(self) -> None:
        """Make this decoding thread (only it: Linux niceness is per thread) yield to the event loop."""
        if self.nice <= 0 or not hasattr(os, "setpriority"):
            return
        tid = threading.get_native_id()
        try:
            os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + self.nice))
        except OSError as exc:  # a sandbox that forbids it: decoding still works, at the loop's priority
            log.warning("vosk: cannot lower the priority of decoding thread %s: %s", tid, exc)

    def _work(self) -> None:
        self._lower_priority()
        while True:
            with self._cond:
                while not self._heap:
                    self._cond.wait()
                _, _, job = heapq.heappop(self._heap)
                if job is None:
                    return
                if job.taken:
                    continue
                job.taken = True
            result: Any = None
            error: BaseException | None = None
            try:
                result = job.fn()
            except BaseException as exc:  # handed to the awaiting coroutine
                error = exc
            try:
                job.loop.call_soon_threadsafe(_settle, job.future, result, error)
            except RuntimeError:  # the loop is closed: nobody waits for this any more
                pass


class VoskRecognizer:
    """In-process Vosk: one shared model, one recognizer per call, a bounded pool of decoding threads."""

    name = "vosk"

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        *,
        threads: int = 0,
        chunk_ms: int = 200,
        max_queued_chunks: int = 25,
        words: bool = True,
        frames_per_chunk: int = DEFAULT_FRAMES_PER_CHUNK,
        decode_nice: int = DEFAULT_DECODE_NICE,
    ) -> None:
        self.model_path = str(model_path)
        self.frames_per_chunk = frames_per_chunk
        self.model = shared_model(model_path, frames_per_chunk=frames_per_chunk)
        self.grammar_ok = supports_grammar(model_path)
        self.threads = threads or os.cpu_count() or 1
        self.pool = DecodePool(self.threads, name="vosk", nice=decode_nice)
        self.chunk_bytes = ASR_RATE * 2 * chunk_ms // 1000
        self.chunk_bytes_8k = self.chunk_bytes * TELEPHONE_RATE // ASR_RATE
        self.max_queued_chunks = max_queued_chunks
        self.words = words
        self._grammar_cache: dict[tuple[str, ...], list[str] | None] = {}
        self._closed = False

    def grammar_for(self, hints: Sequence[str]) -> list[str] | None:
        if not self.grammar_ok or not hints:
            return None
        key = tuple(hints)
        if key not in self._grammar_cache:
            self._grammar_cache[key] = build_grammar(self.model, key)
        return self._grammar_cache[key]

    async def open_stream(self, *, call_id: str = "") -> VoskStream:
        if self._closed:
            raise AsrError("vosk: the recognizer is closed")
        return VoskStream(self, call_id)

    async def close(self) -> None:
        self._closed = True
        await asyncio.to_thread(self.pool.shutdown, wait=True)


class VoskStream:
    """One call's recognizer. Jobs (audio chunks, final, cancel) run in order on the shared pool."""

    def __init__(self, owner: VoskRecognizer, call_id: str) -> None:
        self._owner = owner
        self.call_id = call_id
        self._rec: Any = None
        self._grammar: list[str] | None = None  # for the next chunk fed (set on the loop)
        self._want: list[str] | None = None  # of the chunk being decoded (pool thread)
        self._rec_grammar: list[str] | None = None
        self._resampler = StreamResampler()
        self._raw = bytearray()  # 8 kHz audio not yet resampled (resampled a chunk at a time)
        self._buf = bytearray()
        self._chunks = 0  # audio chunks decoded since the last partial result
        self._queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue(owner.max_queued_chunks)
        self._worker: asyncio.Task[None] | None = None
        self._inflight: DecodeJob | None = None  # this stream's job in the pool, if any
        self._error: BaseException | None = None
        self._texts: list[str] = []
        self._confs: list[float] = []
        self._partial = ""
        self._closed = False

    @property
    def partial(self) -> str:
        return self._partial

    def set_hints(self, hints: Sequence[str]) -> None:
        """Hints for the next utterance (applied before its first chunk is decoded)."""
        self._grammar = self._owner.grammar_for(hints)

    async def feed(self, pcm_8k: bytes) -> None:
        self._check()
        self._raw += pcm_8k
        if len(self._raw) < self._owner.chunk_bytes_8k:
            return
        self._resample_raw()
        while len(self._buf) >= self._owner.chunk_bytes:
            chunk = bytes(self._buf[: self._owner.chunk_bytes])
            del self._buf[: self._owner.chunk_bytes]
            await self._put(("audio", (chunk, self._grammar)))

    async def finish(self) -> AsrResult:
        self._check()
        self._resample_raw()
        self._buf += self._resampler.flush()
        if self._buf:
            await self._put(("audio", (bytes(self._buf), self._grammar)))
            self._buf.clear()
        fut: asyncio.Future[AsrResult] = asyncio.get_running_loop().create_future()
        await self._put(("final", fut))
        self._urgent()
        result = await fut
        self._partial = ""
        return result

    async def cancel(self) -> None:
        self._check()
        self._resampler.reset()
        self._raw.clear()
        self._buf.clear()
        fut: asyncio.Future[AsrResult] = asyncio.get_running_loop().create_future()
        await self._put(("cancel", fut))
        self._urgent()
        await fut
        self._partial = ""

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
        self._rec = None

    # ------------------------------------------------------------------ internals

    def _resample_raw(self) -> None:
        """Move the 8 kHz audio gathered so far through the resampler (one call per chunk, not per frame)."""
        if self._raw:
            self._buf += self._resampler.process(bytes(self._raw))
            self._raw.clear()

    def _check(self) -> None:
        if self._closed:
            raise AsrError(f"vosk: stream of call {self.call_id} is closed")
        if self._error is not None:
            raise AsrError(f"vosk: recognition failed for call {self.call_id}: {self._error}") from self._error

    async def _put(self, item: tuple[str, Any]) -> None:
        if self._worker is None:
            self._worker = asyncio.create_task(self._run(), name=f"vosk-{self.call_id}")
        await self._queue.put(item)  # waits when the call is too far ahead of the decoder

    def _urgent(self) -> None:
        """The utterance ended: this stream's job waiting in the pool (if any) goes before bulk audio."""
        job = self._inflight
        if job is not None:
            self._owner.pool.escalate(job, URGENT)

    async def _run(self) -> None:
        pool = self._owner.pool
        queue = self._queue
        while True:
            ops = [await queue.get()]
            # Whatever else is queued goes along in the same job, up to and including a final or cancel.
            while ops[-1][0] == "audio" and not queue.empty():
                ops.append(queue.get_nowait())
            priority = BULK if ops[-1][0] == "audio" else URGENT
            job = pool.submit(functools.partial(self._decode, ops), priority)
            self._inflight = job
            try:
                results: list[AsrResult | None] = await job.future
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.error("vosk: call %s: %s", self.call_id, exc)
                self._error = exc
                for kind, arg in ops:
                    if kind in ("final", "cancel") and not arg.done():
                        arg.set_exception(AsrError(f"vosk: recognition failed for call {self.call_id}: {exc}"))
                continue
            finally:
                self._inflight = None
            for (kind, arg), res in zip(ops, results, strict=True):
                if kind in ("final", "cancel") and not arg.done():
                    arg.set_result(res)

    def _decode(self, ops: list[tuple[str, Any]]) -> list[AsrResult | None]:
        """Run a batch of this stream's jobs in order (in a pool thread)."""
        out: list[AsrResult | None] = []
        for kind, arg in ops:
            if kind == "audio":
                self._want = arg[1]  # the hints in force when the chunk was fed, never later ones
                self._accept(arg[0])
                out.append(None)
            elif kind == "final":
                out.append(self._final())
            else:
                self._reset()
                out.append(AsrResult("", 0.0))
        return out

    # The methods below run in a pool thread, one at a time per stream.

    def _ensure_rec(self) -> Any:
        grammar = self._want
        if self._rec is not None and self._rec_grammar == grammar:
            return self._rec
        vosk = _vosk()
        if self._rec is None:
            if grammar is not None:
                rec = vosk.KaldiRecognizer(self._owner.model, ASR_RATE, json.dumps(grammar, ensure_ascii=False))
            else:
                rec = vosk.KaldiRecognizer(self._owner.model, ASR_RATE)
            rec.SetWords(self._owner.words)
            self._rec = rec
        elif grammar is not None:
            self._rec.SetGrammar(json.dumps(grammar, ensure_ascii=False))
        else:
            # No API returns a grammar recognizer to free decoding: start a fresh one.
            rec = vosk.KaldiRecognizer(self._owner.model, ASR_RATE)
            rec.SetWords(self._owner.words)
            self._rec = rec
        self._rec_grammar = grammar
        return self._rec

    def _accept(self, chunk: bytes) -> None:
        rec = self._ensure_rec()
        if rec.AcceptWaveform(chunk):
            _collect(json.loads(rec.Result()), self._texts, self._confs)
            self._partial = " ".join(self._texts)
            self._chunks = 0
            return
        self._chunks += 1
        if self._chunks >= _PARTIAL_EVERY:  # nothing decides on partials: a glimpse a second is enough
            self._chunks = 0
            partial = json.loads(rec.PartialResult()).get("partial", "")
            self._partial = " ".join([*self._texts, *(t for t in partial.split() if t != UNK)])

    def _final(self) -> AsrResult:
        rec = self._ensure_rec()
        _collect(json.loads(rec.FinalResult()), self._texts, self._confs)
        text = " ".join(self._texts)
        conf = sum(self._confs) / len(self._confs) if self._confs else 0.0
        self._texts = []
        self._confs = []
        self._chunks = 0
        return AsrResult(text, round(conf, 4))

    def _reset(self) -> None:
        if self._rec is not None:
            self._rec.Reset()
        self._texts = []
        self._confs = []
