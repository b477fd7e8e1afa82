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
- Decoding runs in a thread pool sized to the cores (the cffi binding releases the GIL, so threads decode
  in parallel). Backpressure: each stream has a bounded queue of pending chunks; `feed()` waits when it is
  full, so a slow machine slows the feeders instead of growing memory.
- The final result's confidence is the mean per-word confidence (`SetWords(True)`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from asr.base import AsrError, AsrResult
from asr.resample import ASR_RATE, StreamResampler

log = logging.getLogger(__name__)

UNK = "[unk]"
_MAX_WORD_CHARS = 8

_models: dict[str, Any] = {}
_models_lock = threading.Lock()


def _vosk() -> Any:
    import vosk

    vosk.SetLogLevel(-2)  # errors only: Kaldi warnings go to stderr, not to our logging
    return vosk


def shared_model(path: str | os.PathLike[str]) -> Any:
    """The process-wide `vosk.Model` for a model directory, loaded on first use.

    Raises:
        AsrError: the directory is missing or is not a Vosk model.
    """
    p = Path(path).expanduser().resolve()
    key = str(p)
    with _models_lock:
        model = _models.get(key)
        if model is not None:
            return model
        if not (p / "am").is_dir() and not (p / "final.mdl").exists():
            raise AsrError(
                f"vosk: no model at {p} (expected a Vosk model directory with am/ and graph/); "
                "download one with `outreach models download vosk-small-cn`"
            )
        log.info("loading Vosk model %s", p)
        try:
            model = _vosk().Model(key)
        except Exception as exc:  # the binding raises a bare Exception
            raise AsrError(f"vosk: cannot load the model at {p}: {exc}") from exc
        _models[key] = model
        return model


def loaded_models() -> list[str]:
    """Directories of the models loaded in this process (for diagnostics and tests)."""
    with _models_lock:
        return sorted(_models)


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
    ) -> None:
        self.model_path = str(model_path)
        self.model = shared_model(model_path)
        self.grammar_ok = supports_grammar(model_path)
        self.threads = threads or os.cpu_count() or 1
        self.pool = ThreadPoolExecutor(self.threads, thread_name_prefix="vosk")
        self.chunk_bytes = ASR_RATE * 2 * chunk_ms // 1000
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
        self.pool.shutdown(wait=True, cancel_futures=True)


class VoskStream:
    """One call's recognizer. Jobs (audio chunks, final, cancel) run in order on the shared pool."""

    def __init__(self, owner: VoskRecognizer, call_id: str) -> None:
        self._owner = owner
        self.call_id = call_id
        self._rec: Any = None
        self._grammar: list[str] | None = None
        self._rec_grammar: list[str] | None = None
        self._resampler = StreamResampler()
        self._buf = bytearray()
        self._queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue(owner.max_queued_chunks)
        self._worker: asyncio.Task[None] | None = None
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
        self._buf += self._resampler.process(pcm_8k)
        while len(self._buf) >= self._owner.chunk_bytes:
            chunk = bytes(self._buf[: self._owner.chunk_bytes])
            del self._buf[: self._owner.chunk_bytes]
            await self._put(("audio", chunk))

    async def finish(self) -> AsrResult:
        self._check()
        self._buf += self._resampler.flush()
        if self._buf:
            await self._put(("audio", bytes(self._buf)))
            self._buf.clear()
        fut: asyncio.Future[AsrResult] = asyncio.get_running_loop().create_future()
        await self._put(("final", fut))
        result = await fut
        self._partial = ""
        return result

    async def cancel(self) -> None:
        self._check()
        self._resampler.reset()
        self._buf.clear()
        fut: asyncio.Future[AsrResult] = asyncio.get_running_loop().create_future()
        await self._put(("cancel", fut))
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

    def _check(self) -> None:
        if self._closed:
            raise AsrError(f"vosk: stream of call {self.call_id} is closed")
        if self._error is not None:
            raise AsrError(f"vosk: recognition failed for call {self.call_id}: {self._error}") from self._error

    async def _put(self, item: tuple[str, Any]) -> None:
        if self._worker is None:
            self._worker = asyncio.create_task(self._run(), name=f"vosk-{self.call_id}")
        await self._queue.put(item)  # waits when the call is too far ahead of the decoder

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        pool = self._owner.pool
        while True:
            kind, arg = await self._queue.get()
            try:
                if kind == "audio":
                    await loop.run_in_executor(pool, self._accept, arg)
                elif kind == "final":
                    res = await loop.run_in_executor(pool, self._final)
                    if not arg.done():
                        arg.set_result(res)
                elif kind == "cancel":
                    await loop.run_in_executor(pool, self._reset)
                    if not arg.done():
                        arg.set_result(AsrResult("", 0.0))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.error("vosk: call %s: %s", self.call_id, exc)
                self._error = exc
                if kind in ("final", "cancel") and not arg.done():
                    arg.set_exception(AsrError(f"vosk: recognition failed for call {self.call_id}: {exc}"))

    # The methods below run in a pool thread, one at a time per stream.

    def _ensure_rec(self) -> Any:
        if self._rec is not None and self._rec_grammar == self._grammar:
            return self._rec
        vosk = _vosk()
        if self._rec is None:
            if self._grammar is not None:
                rec = vosk.KaldiRecognizer(self._owner.model, ASR_RATE, json.dumps(self._grammar, ensure_ascii=False))
            else:
                rec = vosk.KaldiRecognizer(self._owner.model, ASR_RATE)
            rec.SetWords(self._owner.words)
            self._rec = rec
        elif self._grammar is not None:
            self._rec.SetGrammar(json.dumps(self._grammar, ensure_ascii=False))
        else:
            # No API returns a grammar recognizer to free decoding: start a fresh one.
            rec = vosk.KaldiRecognizer(self._owner.model, ASR_RATE)
            rec.SetWords(self._owner.words)
            self._rec = rec
        self._rec_grammar = self._grammar
        return self._rec

    def _accept(self, chunk: bytes) -> None:
        rec = self._ensure_rec()
        if rec.AcceptWaveform(chunk):
            _collect(json.loads(rec.Result()), self._texts, self._confs)
            self._partial = " ".join(self._texts)
        else:
            partial = json.loads(rec.PartialResult()).get("partial", "")
            self._partial = " ".join([*self._texts, *(t for t in partial.split() if t != UNK)])

    def _final(self) -> AsrResult:
        rec = self._ensure_rec()
        _collect(json.loads(rec.FinalResult()), self._texts, self._confs)
        text = " ".join(self._texts)
        conf = sum(self._confs) / len(self._confs) if self._confs else 0.0
        self._texts = []
        self._confs = []
        return AsrResult(text, round(conf, 4))

    def _reset(self) -> None:
        if self._rec is not None:
            self._rec.Reset()
        self._texts = []
        self._confs = []
