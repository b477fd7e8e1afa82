"""The prompt cache: telephone-ready WAV files keyed by (engine, voice, settings, text).

Layout under `tts.cache_dir`::

    <cache_dir>/<key[0:2]>/<key[2:4]>/<key>.wav    8 kHz mono s16 WAV
    <cache_dir>/<key[0:2]>/<key[2:4]>/<key>.json   what it is: engine, voice, settings, text

`key` is the sha256 of the JSON list [engine, voice, settings_key, text] (text NFC-normalised and
stripped). Files are written atomically (temp file + rename), so a crash never leaves a half WAV and
concurrent renders of the same prompt are harmless.

Rules for calls: every prompt is rendered before a campaign (`render_all`, `outreach prompts render`);
a live call only reads the cache (`PromptPlayer`), and when the primary engine's file is missing it may
fall back to the offline espeak engine (local, fast) only if `tts.fallback_offline` allows it. Network
TTS is never awaited on a call.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import string
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from common.atomic import atomic_write_bytes
from tts.audio import AudioFormatError, duration_s, read_wav, write_wav
from tts.base import TtsEngine, TtsError

log = logging.getLogger(__name__)


class TtsConfig(Protocol):
    """The `tts` config section (outreach.config.TtsConfig), typed structurally so tts/ does not import outreach/."""

    @property
    def engine(self) -> str: ...
    @property
    def voice(self) -> str: ...
    @property
    def espeak_voice(self) -> str: ...
    @property
    def rate(self) -> str: ...
    @property
    def pitch(self) -> str: ...
    @property
    def volume(self) -> str: ...
    @property
    def cache_dir(self) -> str: ...
    @property
    def fallback_offline(self) -> bool: ...


class PromptMissingError(LookupError):
    """Prompts a campaign needs are not in the cache (and no fallback is allowed); names them."""

    def __init__(self, missing: Sequence[str], engine: str, voice: str, cache_dir: str | Path) -> None:
        self.missing = list(missing)
        shown = "; ".join(repr(t) for t in self.missing[:5])
        more = f" (and {len(self.missing) - 5} more)" if len(self.missing) > 5 else ""
        super().__init__(
            f"{len(self.missing)} prompt(s) not rendered for {engine}/{voice} in {cache_dir}: {shown}{more}. "
            "Run `outreach prompts render --script FILE` first, or set tts.fallback_offline: true."
        )


def normalize_prompt(text: str) -> str:
    """The form of a prompt text that is hashed: NFC, surrounding whitespace removed."""
    return unicodedata.normalize("NFC", text).strip()


class PromptCache:
    """Content-addressed store of rendered prompts (8 kHz mono s16 WAV)."""

    def __init__(self, cache_dir: str | Path) -> None:
        self.root = Path(cache_dir)

    @staticmethod
    def key(engine: TtsEngine, text: str) -> str:
        payload = json.dumps(
            [engine.name, engine.voice, engine.settings_key(), normalize_prompt(text)],
            ensure_ascii=False,
            separators=(",", ":"),
        )
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    def path_for(self, engine: TtsEngine, text: str) -> Path:
        k = self.key(engine, text)
        return self.root / k[:2] / k[2:4] / f"{k}.wav"

    def has(self, engine: TtsEngine, text: str) -> bool:
        return self.path_for(engine, text).is_file()

    def get(self, engine: TtsEngine, text: str) -> bytes | None:
        """The cached PCM (8 kHz mono s16) or None. A corrupt or unreadable file is logged and treated as missing."""
        path = self.path_for(engine, text)
        try:
            return read_wav(path)
        except AudioFormatError as exc:
            if path.exists():
                log.warning("prompt cache: unreadable %s (%s); treating as missing", path, exc)
            return None
        except OSError as exc:  # permissions, a folder where the file should be, I/O errors
            log.warning("prompt cache: cannot read %s (%s); treating as missing", path, exc)
            return None

    def put(self, engine: TtsEngine, text: str, pcm: bytes) -> Path:
        """Store PCM for (engine, text) atomically; returns the WAV path."""
        path = self.path_for(engine, text)
        write_wav(path, pcm)
        meta = {
            "engine": engine.name,
            "voice": engine.voice,
            "settings": engine.settings_key(),
            "text": normalize_prompt(text),
            "seconds": round(duration_s(pcm), 3),
        }
        atomic_write_bytes(path.with_suffix(".json"), json.dumps(meta, ensure_ascii=False, indent=1).encode())
        return path


# ----------------------------------------------------------------------------- engines


def make_engine(cfg: TtsConfig, offline: bool = False) -> TtsEngine:
    """The engine `cfg` asks for; `offline=True` always gives the local espeak engine."""
    from tts.espeak import EspeakEngine

    if offline or cfg.engine == "espeak":
        return EspeakEngine(voice=cfg.espeak_voice, rate=cfg.rate, pitch=cfg.pitch)
    from tts.edge import EdgeTtsEngine

    return EdgeTtsEngine(voice=cfg.voice, rate=cfg.rate, pitch=cfg.pitch, volume=cfg.volume)


def default_concurrency(engine: TtsEngine) -> int:
    """Network TTS gently (the service bans bursts), local espeak on every core."""
    if engine.name == "edge":
        return 2
    return max(1, os.cpu_count() or 1)


# ----------------------------------------------------------------------------- batch rendering


@dataclass(frozen=True, slots=True)
class RenderFailure:
    text: str
    error: str


@dataclass(slots=True)
class RenderReport:
    """What a batch render did. `ok` is False if any text failed."""

    engine: str
    voice: str
    total: int = 0
    rendered: int = 0
    cached: int = 0
    failures: list[RenderFailure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def as_dict(self) -> dict[str, Any]:
        return {
            "engine": self.engine,
            "voice": self.voice,
            "total": self.total,
            "rendered": self.rendered,
            "cached": self.cached,
            "failed": len(self.failures),
            "failures": [{"text": f.text, "error": f.error} for f in self.failures],
        }

    def merge(self, other: RenderReport) -> None:
        self.total += other.total
        self.rendered += other.rendered
        self.cached += other.cached
        self.failures.extend(other.failures)


# progress(done, total, text, ok): called once per unique text, after it is rendered or found cached
Progress = Callable[[int, int, str, bool], None]


def unique_prompts(texts: Iterable[str]) -> list[str]:
    """Normalised, non-empty, de-duplicated texts in first-seen order."""
    seen: dict[str, None] = {}
    for t in texts:
        n = normalize_prompt(t)
        if n:
            seen.setdefault(n, None)
    return list(seen)


async def render_all(
    texts: Iterable[str],
    engine: TtsEngine,
    cache: PromptCache,
    progress: Progress | None = None,
    *,
    concurrency: int | None = None,
    force: bool = False,
) -> RenderReport:
    """Render every text not yet cached, `concurrency` at a time; failures are reported per text.

    Never raises for a text's failure (TtsError lands in the report); `force` re-renders cached texts.
    """
    todo = unique_prompts(texts)
    report = RenderReport(engine=engine.name, voice=engine.voice, total=len(todo))
    done = 0
    queue = iter(todo)  # shared by the workers: at most `concurrency` renders run, however many texts

    async def one(text: str) -> None:
        nonlocal done
        ok = True
        if not force and cache.has(engine, text):
            report.cached += 1
        else:
            try:
                pcm = await engine.synthesize(text)
                await asyncio.to_thread(cache.put, engine, text, pcm)
                report.rendered += 1
            except (TtsError, OSError) as exc:
                ok = False
                report.failures.append(RenderFailure(text, str(exc)))
                log.info("prompt render failed: %s", exc)
        done += 1
        if progress is not None:
            progress(done, report.total, text, ok)

    async def worker() -> None:
        for text in queue:
            await one(text)

    workers = min(len(todo), concurrency or default_concurrency(engine))
    async with asyncio.TaskGroup() as tg:
        for _ in range(workers):
            tg.create_task(worker())
    # keep the failure list in input order, whatever order the tasks finished in
    order = {t: i for i, t in enumerate(todo)}
    report.failures.sort(key=lambda f: order.get(f.text, 0))
    return report


def missing_prompts(texts: Iterable[str], engine: TtsEngine, cache: PromptCache) -> list[str]:
    """The texts (normalised, unique, in order) that have no cached audio for `engine`."""
    return [t for t in unique_prompts(texts) if not cache.has(engine, t)]


# ----------------------------------------------------------------------------- scripts and contacts


class ScriptPrompts(Protocol):
    """What the prompt tools need from dialogs.script.Script (structural, so tts/ does not import dialogs/)."""

    def all_prompts(self) -> list[str]: ...

    def render(self, template: str, contact: Mapping[str, Any]) -> str: ...


_PROBE = "\u2063probe\u2063"


def template_fields(template: str) -> list[str]:
    """The str.format field names of a template ([] for plain text or broken braces)."""
    try:
        return [f for _, f, _, _ in string.Formatter().parse(template) if f]
    except ValueError:
        return []


def needs_contact(script: ScriptPrompts, template: str) -> bool:
    """True if a contact's data changes what `template` says (e.g. {name}); False for plain text and
    for templates that only use the script's constants (e.g. {center})."""
    fields = template_fields(template)
    if not fields:
        return False
    probe = {f: _PROBE for f in fields}
    return script.render(template, probe) != script.render(template, {})


def static_prompts(script: ScriptPrompts) -> list[str]:
    """Every prompt of a script that is the same for all contacts, filled with the script's constants."""
    return unique_prompts(script.render(t, {}) for t in script.all_prompts() if not needs_contact(script, t))


def template_prompts(script: ScriptPrompts) -> list[str]:
    """The prompt templates of a script that need a contact's fields before they can be rendered."""
    return [t for t in unique_prompts(script.all_prompts()) if needs_contact(script, t)]


def contact_prompts(script: ScriptPrompts, contacts: Iterable[Mapping[str, Any]]) -> list[str]:
    """The per-contact texts of every templated prompt, for these contacts (deduplicated, statics left out)."""
    templates = template_prompts(script)
    if not templates:
        return []
    texts = [script.render(t, contact) for contact in contacts for t in templates]
    statics = set(static_prompts(script))
    return [t for t in unique_prompts(texts) if t not in statics]


async def prerender_for_contacts(
    script: ScriptPrompts,
    contacts: Iterable[Mapping[str, Any]],
    engine: TtsEngine,
    cache: PromptCache,
    progress: Progress | None = None,
    *,
    concurrency: int | None = None,
) -> RenderReport:
    """Render the templated prompts of `script` filled in for each contact (e.g. the next batch to call).

    Call it for a batch of contacts before their calls are placed; static prompts are left to
    `outreach prompts render`. Contacts whose prompts failed show in the report's failures.
    """
    return await render_all(
        contact_prompts(script, contacts), engine, cache, progress, concurrency=concurrency
    )


# ----------------------------------------------------------------------------- at call time


@dataclass(frozen=True, slots=True)
class PromptCheck:
    """Result of `check_prompts`: which prompts lack primary-engine audio, and whether that is acceptable."""

    missing: list[str]
    fallback: bool  # missing prompts will be spoken by the offline engine

    @property
    def ready(self) -> bool:
        return not self.missing or self.fallback


class PromptPlayer:
    """Audio for prompt texts during calls: from the cache only, never waiting on network TTS.

    Lookup order for a text: the primary engine's cached file; then, if `tts.fallback_offline` is true,
    the offline engine's cached file, else a live espeak render (local, tens of ms) that is cached for
    the next call. With fallback off, a missing prompt raises PromptMissingError.
    """

    def __init__(self, cfg: TtsConfig, cache: PromptCache | None = None) -> None:
        self.cfg = cfg
        self.cache = cache or PromptCache(cfg.cache_dir)
        self.primary = make_engine(cfg)
        self.offline = make_engine(cfg, offline=True)
        self.fallback_allowed = cfg.fallback_offline
        self._memo: dict[str, bytes] = {}
        self._memo_bytes = 0
        self.memo_limit_bytes = 64 * 1024 * 1024

    def check(self, texts: Iterable[str]) -> PromptCheck:
        missing = missing_prompts(texts, self.primary, self.cache)
        return PromptCheck(missing=missing, fallback=bool(missing) and self.fallback_allowed)

    def require(self, texts: Iterable[str]) -> PromptCheck:
        """Raise PromptMissingError unless every text is cached or the offline fallback is allowed."""
        result = self.check(texts)
        if not result.ready:
            raise PromptMissingError(result.missing, self.primary.name, self.primary.voice, self.cache.root)
        if result.missing:
            log.warning(
                "%d prompt(s) not rendered with %s; the offline voice will speak them",
                len(result.missing),
                self.primary.name,
            )
        return result

    async def audio(self, text: str) -> bytes:
        """8 kHz s16 mono PCM for `text` (see the class docstring for the lookup order)."""
        key = normalize_prompt(text)
        hit = self._memo.get(key)
        if hit is not None:
            return hit
        pcm = await asyncio.to_thread(self.cache.get, self.primary, key)
        if pcm is None and self.fallback_allowed:
            if self.offline.name != self.primary.name or self.offline.voice != self.primary.voice:
                pcm = await asyncio.to_thread(self.cache.get, self.offline, key)
            if pcm is None:
                log.warning("prompt not pre-rendered; speaking it with the offline engine now: %r", key)
                pcm = await self.offline.synthesize(key)
                try:
                    await asyncio.to_thread(self.cache.put, self.offline, key, pcm)
                except OSError as exc:  # the call still gets its prompt; only the next call renders it again
                    log.warning("prompt cache: cannot store %r in %s: %s", key, self.cache.root, exc)
        if pcm is None:
            raise PromptMissingError([key], self.primary.name, self.primary.voice, self.cache.root)
        if self._memo_bytes + len(pcm) <= self.memo_limit_bytes:
            self._memo[key] = pcm
            self._memo_bytes += len(pcm)
        return pcm


def check_prompts(cfg: TtsConfig, texts: Iterable[str]) -> PromptCheck:
    """Before a campaign starts: which prompts are missing, and whether the offline fallback covers them."""
    return PromptPlayer(cfg).check(texts)


def require_prompts(cfg: TtsConfig, texts: Iterable[str]) -> PromptCheck:
    """Before a campaign starts: raise PromptMissingError (naming the prompts) if it must not start."""
    return PromptPlayer(cfg).require(texts)
