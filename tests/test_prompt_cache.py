"""tts/cache.py: content-addressed prompt cache, batch rendering, campaign checks, call-time lookup."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from outreach.config import TtsConfig
from tts import audio
from tts.base import TtsError
from tts.cache import (
    PromptCache,
    PromptMissingError,
    PromptPlayer,
    check_prompts,
    make_engine,
    missing_prompts,
    needs_contact,
    prerender_for_contacts,
    render_all,
    require_prompts,
    static_prompts,
    template_prompts,
)
from tts.edge import EdgeTtsEngine
from tts.espeak import EspeakEngine


class CountingEngine:
    """A TtsEngine that renders a fixed tone, slowly, recording how many renders overlap."""

    name = "counting"

    def __init__(self, voice: str = "v1", fail: set[str] | None = None) -> None:
        self.voice = voice
        self.fail = fail or set()
        self.active = 0
        self.max_active = 0
        self.calls: list[str] = []

    def settings_key(self) -> str:
        return "s=1"

    async def synthesize(self, text: str) -> bytes:
        self.calls.append(text)
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            await asyncio.sleep(0.01)
            if text in self.fail:
                raise TtsError(f"counting: refused {text!r}")
            return (b"\x10\x00\xf0\xff" * 400)[: 2 * 800]
        finally:
            self.active -= 1


class TinyScript:
    """The prompt part of dialogs.script.Script: templates, constants, per-contact rendering."""

    def __init__(self, prompts: list[str], constants: dict[str, str] | None = None) -> None:
        self.prompts = prompts
        self.constants = constants or {}

    def all_prompts(self) -> list[str]:
        return list(self.prompts)

    def render(self, template: str, contact: Mapping[str, Any]) -> str:
        values = {"name": "", **{k: str(v) for k, v in contact.items() if k == "name"}, **self.constants}
        return template.format_map(values)


def test_key_covers_engine_voice_settings_and_text(tmp_path: Path) -> None:
    cache = PromptCache(tmp_path)
    e1 = CountingEngine("v1")
    k = cache.key(e1, "您好")
    assert k == cache.key(CountingEngine("v1"), "  您好\n")  # surrounding whitespace does not matter
    assert len(k) == 64 and int(k, 16) >= 0
    assert k != cache.key(CountingEngine("v2"), "您好")
    assert k != cache.key(e1, "您好。")
    assert cache.key(EspeakEngine(), "您好") != cache.key(EspeakEngine(rate="+10%"), "您好")
    assert cache.key(EspeakEngine(), "您好") != cache.key(EdgeTtsEngine(), "您好")


def test_put_get_layout(tmp_path: Path) -> None:
    cache = PromptCache(tmp_path / "prompts")
    eng = CountingEngine()
    assert not cache.has(eng, "你好") and cache.get(eng, "你好") is None
    pcm = b"\x01\x00" * 800
    path = cache.put(eng, "你好", pcm)
    k = cache.key(eng, "你好")
    assert path == tmp_path / "prompts" / k[:2] / k[2:4] / f"{k}.wav"
    assert cache.has(eng, "你好") and cache.get(eng, "你好") == pcm
    meta = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    assert meta == {"engine": "counting", "voice": "v1", "settings": "s=1", "text": "你好", "seconds": 0.1}
    assert sorted(p.name for p in path.parent.iterdir()) == [f"{k}.json", f"{k}.wav"]  # no temp files


def test_corrupt_file_counts_as_missing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cache = PromptCache(tmp_path)
    eng = CountingEngine()
    path = cache.put(eng, "你好", b"\x01\x00" * 10)
    path.write_bytes(b"garbage")
    assert cache.get(eng, "你好") is None
    assert "unreadable" in caplog.text


def test_templates() -> None:
    script = TinyScript(["您好，{name}", "这里是{center}", "有没有发烧？", "有没有发烧？", "括号{{不是}}模板"], {"center": "社区"})
    assert needs_contact(script, "{name}您好")
    assert not needs_contact(script, "您好")
    assert not needs_contact(script, "这里是{center}")  # a script constant, same for everyone
    # constants are filled in, contact templates left to per-contact rendering
    assert static_prompts(script) == ["这里是社区", "有没有发烧？", "括号{不是}模板"]
    assert template_prompts(script) == ["您好，{name}"]


async def test_render_all_renders_then_caches(tmp_path: Path) -> None:
    cache = PromptCache(tmp_path)
    eng = EspeakEngine()
    seen: list[tuple[int, int, str, bool]] = []
    texts = ["您好", "有没有咳嗽？", "您好", "体温37.3度"]
    report = await render_all(texts, eng, cache, progress=lambda *a: seen.append(a))
    assert (report.total, report.rendered, report.cached, report.ok) == (3, 3, 0, True)
    assert sorted(s[0] for s in seen) == [1, 2, 3] and all(s[1] == 3 and s[3] for s in seen)
    for t in texts:
        pcm = cache.get(eng, t)
        assert pcm is not None and audio.duration_s(pcm) > 0.2
        assert audio.active_level_dbfs(pcm) == pytest.approx(-20, abs=0.5)
    again = await render_all(texts, eng, cache)
    assert (again.rendered, again.cached) == (0, 3)
    forced = await render_all(texts[:1], eng, cache, force=True)
    assert (forced.rendered, forced.cached) == (1, 0)
    assert missing_prompts([*texts, "新的"], eng, cache) == ["新的"]


async def test_render_all_reports_failures_per_text(tmp_path: Path) -> None:
    cache = PromptCache(tmp_path)
    report = await render_all(["你好", "。。。", "谢谢", "！"], EspeakEngine(), cache)
    assert report.rendered == 2
    assert [f.text for f in report.failures] == ["。。。", "！"]
    assert "nothing speakable" in report.failures[0].error
    d = report.as_dict()
    assert d["failed"] == 2 and d["total"] == 4 and d["engine"] == "espeak"
    assert missing_prompts(["你好", "谢谢", "。。。"], EspeakEngine(), cache) == ["。。。"]


async def test_render_all_is_bounded(tmp_path: Path) -> None:
    eng = CountingEngine(fail={"t3"})
    report = await render_all([f"t{i}" for i in range(12)], eng, PromptCache(tmp_path), concurrency=3)
    assert eng.max_active == 3
    assert report.rendered == 11 and [f.text for f in report.failures] == ["t3"]


async def test_prerender_for_contacts(tmp_path: Path) -> None:
    cache = PromptCache(tmp_path)
    eng = CountingEngine()
    script = TinyScript(["您好，{name}", "有没有发烧？"])
    contacts = [{"name": "张三"}, {"name": "李四"}, {"name": "张三"}]
    report = await prerender_for_contacts(script, contacts, eng, cache)
    assert report.rendered == 2  # static prompt left to `prompts render`; duplicate contact once
    assert sorted(eng.calls) == sorted(["您好，张三", "您好，李四"])
    assert cache.has(eng, "您好，李四") and not cache.has(eng, "有没有发烧？")
    assert (await prerender_for_contacts(TinyScript(["再见"]), contacts, eng, cache)).total == 0


def tts_cfg(tmp_path: Path, **kw: Any) -> TtsConfig:
    return TtsConfig(cache_dir=str(tmp_path / "prompts"), **kw)


def test_make_engine(tmp_path: Path) -> None:
    cfg = tts_cfg(tmp_path, engine="edge", voice="zh-CN-YunxiNeural", rate="-10%")
    e = make_engine(cfg)
    assert isinstance(e, EdgeTtsEngine) and e.voice == "zh-CN-YunxiNeural" and e.rate == "-10%"
    off = make_engine(cfg, offline=True)
    assert isinstance(off, EspeakEngine) and off.voice == "cmn-latn-pinyin" and off.speed == 135
    assert isinstance(make_engine(tts_cfg(tmp_path)), EspeakEngine)


async def test_campaign_check_names_missing_prompts(tmp_path: Path) -> None:
    cfg = tts_cfg(tmp_path, engine="edge", fallback_offline=False)
    texts = ["您好", "有没有发烧？"]
    with pytest.raises(PromptMissingError) as err:
        require_prompts(cfg, texts)
    assert err.value.missing == texts
    assert "2 prompt(s) not rendered for edge/zh-CN-XiaoxiaoNeural" in str(err.value)
    assert "'有没有发烧？'" in str(err.value) and "outreach prompts render" in str(err.value)
    # render one with the configured engine's identity: only the other is missing
    PromptCache(cfg.cache_dir).put(make_engine(cfg), "您好", b"\x01\x00" * 800)
    check = check_prompts(cfg, texts)
    assert check.missing == ["有没有发烧？"] and not check.ready
    # with the offline fallback allowed the campaign may start
    fallback = check_prompts(tts_cfg(tmp_path, engine="edge", fallback_offline=True), texts)
    assert fallback.ready and fallback.fallback and fallback.missing == ["有没有发烧？"]


async def test_player_reads_cache_and_never_calls_network(tmp_path: Path) -> None:
    cfg = tts_cfg(tmp_path, engine="edge", fallback_offline=True)
    player = PromptPlayer(cfg)
    cached = b"\x02\x00" * 1600
    player.cache.put(player.primary, "您好", cached)
    assert await player.audio("您好") == cached
    # not pre-rendered with edge: spoken by espeak now (local), and cached under espeak's key
    pcm = await player.audio("谢谢您的配合")
    assert audio.duration_s(pcm) > 0.5
    assert player.cache.get(player.offline, "谢谢您的配合") == pcm
    assert not player.cache.has(player.primary, "谢谢您的配合")


async def test_player_without_fallback_refuses(tmp_path: Path) -> None:
    player = PromptPlayer(tts_cfg(tmp_path, engine="edge", fallback_offline=False))
    with pytest.raises(PromptMissingError, match="'再见'"):
        await player.audio("再见")


async def test_player_espeak_primary_renders_live_when_allowed(tmp_path: Path) -> None:
    player = PromptPlayer(tts_cfg(tmp_path, engine="espeak", fallback_offline=True))
    first = await player.audio("请问您贵姓？")
    assert player.cache.get(player.primary, "请问您贵姓？") == first
    assert await PromptPlayer(tts_cfg(tmp_path)).audio("请问您贵姓？") == first


async def test_unusable_cache_never_breaks_a_call(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # A folder where a prompt's WAV should be: read as missing, not an exception in the call.
    cache = PromptCache(tmp_path / "c")
    eng = CountingEngine()
    cache.path_for(eng, "你好").mkdir(parents=True)
    assert cache.get(eng, "你好") is None and "cannot read" in caplog.text
    # A cache root that cannot hold files: the offline engine's live render is still played.
    (tmp_path / "file").write_text("x", encoding="utf-8")
    player = PromptPlayer(TtsConfig(cache_dir=str(tmp_path / "file"), engine="espeak", fallback_offline=True))
    pcm = await player.audio("请问您贵姓？")
    assert audio.duration_s(pcm) > 0.5
    assert "cannot store '请问您贵姓？'" in caplog.text
