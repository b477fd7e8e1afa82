"""`outreach prompts render|check|play`: the real CLI with real espeak-ng; edge-tts against the local fake."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import wave
from dataclasses import dataclass
from pathlib import Path

from typer.testing import CliRunner

from dialogs.script import load_script
from outreach.cli import app
from outreach.config import load_config
from tests.test_tts_edge import FakeEdge, fake_edge, speech_mp3  # noqa: F401  (fixtures)
from tts.cache import PromptCache, make_engine, static_prompts, template_prompts

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "dialogs" / "scripts" / "covid_screening.yaml"
OUTREACH = Path(sys.executable).parent / "outreach"


def outreach(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTREACH_")}
    return subprocess.run(
        [str(OUTREACH), "--config", str(cwd / "config.yaml"), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
    )


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str


def cli(cwd: Path, *args: str) -> Run:
    """The same CLI in-process (typer's runner): fast, one import for the whole test set."""
    res = CliRunner().invoke(app, ["--config", str(cwd / "config.yaml"), *args])
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        raise res.exception
    return Run(res.exit_code, res.stdout, res.stderr)


def setup_config(tmp_path: Path, extra: str = "") -> Path:
    (tmp_path / "config.yaml").write_text(f"tts:\n  cache_dir: {tmp_path / 'prompts'}\n{extra}", encoding="utf-8")
    return tmp_path / "prompts"


def test_render_script_with_offline_engine(tmp_path: Path) -> None:
    """The acceptance check, through the installed `outreach` command."""
    cache_dir = setup_config(tmp_path)
    script = load_script(SCRIPT)
    statics = static_prompts(script)
    templated = template_prompts(script)
    assert statics and templated

    first = outreach(tmp_path, "prompts", "render", "--script", str(SCRIPT))
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == [
        f"espeak/cmn-latn-pinyin: {len(statics)} prompt(s): {len(statics)} rendered, 0 already cached, "
        f"0 failed -> {cache_dir}",
        f"{len(templated)} prompt template(s) use contact fields; they are rendered per contact before calls",
    ]
    # every static prompt is an 8 kHz mono s16 WAV in the cache, under the configured engine's key
    cfg = load_config(tmp_path / "config.yaml")
    cache, eng = PromptCache(cfg.tts.cache_dir), make_engine(cfg.tts)
    wavs = sorted(cache_dir.rglob("*.wav"))
    assert len(wavs) == len(statics)
    for text in statics:
        path = cache.path_for(eng, text)
        with wave.open(str(path)) as w:
            assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
            assert w.getnframes() > 8000 * 0.5
    assert "这里是社区卫生服务中心防疫随访" not in "".join(statics)  # {center} prompts need {name} too
    assert "不好意思，打扰您了。再见！" in statics

    again = cli(tmp_path, "prompts", "render", "--script", str(SCRIPT), "--json")
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    assert report == {
        "engine": "espeak",
        "voice": "cmn-latn-pinyin",
        "total": len(statics),
        "rendered": 0,
        "cached": len(statics),
        "failed": 0,
        "failures": [],
        "cache_dir": str(cache_dir),
        "templated": len(templated),
    }

    check = cli(tmp_path, "prompts", "check", "--script", str(SCRIPT))
    assert check.returncode == 0 and check.stdout == "all prompts rendered for espeak/cmn-latn-pinyin\n"


def test_check_lists_missing_prompts(tmp_path: Path) -> None:
    setup_config(tmp_path)
    cli(tmp_path, "prompts", "render", "--text", "您好")
    p = cli(tmp_path, "prompts", "check", "--text", "您好", "--text", "再见")
    assert p.returncode == 1
    assert p.stdout == "1 prompt(s) not rendered for espeak/cmn-latn-pinyin:\n  再见\n"
    j = cli(tmp_path, "prompts", "check", "--text", "再见", "--engine", "edge", "--json")
    assert j.returncode == 1
    assert json.loads(j.stdout) == {"engine": "edge", "voice": "zh-CN-XiaoxiaoNeural", "missing": ["再见"]}


def test_render_reports_failures_and_exits_1(tmp_path: Path) -> None:
    setup_config(tmp_path)
    p = cli(tmp_path, "prompts", "render", "--text", "您好", "--text", "。。。")
    assert p.returncode == 1
    assert "1 rendered, 0 already cached, 1 failed" in p.stdout
    assert p.stderr.startswith("failed: '。。。': espeak: nothing speakable")


def test_play_writes_wav(tmp_path: Path) -> None:
    setup_config(tmp_path)
    out = tmp_path / "listen" / "t.wav"
    missing = cli(tmp_path, "prompts", "play", "您的体温是37.3度", "--out", str(out))
    assert missing.returncode == 2 and "the folder" in missing.stderr and "listen does not exist" in missing.stderr
    out.parent.mkdir()
    p = cli(tmp_path, "prompts", "play", "您的体温是37.3度", "--out", str(out))
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith(f"wrote {out} (") and p.stdout.endswith("8000 Hz mono, from espeak)\n")
    with wave.open(str(out)) as w:
        assert (w.getframerate(), w.getnchannels()) == (8000, 1)
    again = cli(tmp_path, "prompts", "play", "您的体温是37.3度", "--out", str(out))
    assert again.stdout.endswith("from cache)\n")


def test_bad_input_exits_2(tmp_path: Path) -> None:
    setup_config(tmp_path)
    p = cli(tmp_path, "prompts", "render")
    assert p.returncode == 2 and "give --script FILE or at least one --text TEXT" in p.stderr
    p = cli(tmp_path, "prompts", "render", "--text", "你好", "--engine", "festival")
    assert p.returncode == 2 and "--engine must be one of espeak, edge, got 'festival'" in p.stderr
    p = cli(tmp_path, "prompts", "render", "--script", str(tmp_path / "nope.yaml"))
    assert p.returncode == 2 and "nope.yaml" in p.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("nodes: [\n", encoding="utf-8")
    p = cli(tmp_path, "prompts", "render", "--script", str(bad))
    assert p.returncode == 2 and "bad.yaml" in p.stderr
    p = cli(tmp_path, "prompts", "play", "  ", "--out", str(tmp_path / "x.wav"))
    assert p.returncode == 2 and "TEXT is empty" in p.stderr
    (tmp_path / "config.yaml").write_text("tts:\n  rate: fast\n", encoding="utf-8")
    p = cli(tmp_path, "prompts", "play", "你好", "--out", str(tmp_path / "x.wav"))
    assert p.returncode == 2 and "tts.rate must look like" in p.stderr


async def test_render_with_edge_engine_in_process(tmp_path: Path, fake_edge: FakeEdge) -> None:  # noqa: F811
    # in-process so the real edge-tts client can be pointed at the local fake service; the CLI runs its
    # own event loop in a worker thread while this test's loop serves the fake
    setup_config(tmp_path)
    runner = CliRunner()
    args = ["--config", str(tmp_path / "config.yaml"), "prompts"]
    render = [*args, "render", "--engine", "edge", "--text", "您好", "--text", "再见", "--json"]
    res = await asyncio.to_thread(runner.invoke, app, render)
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["rendered"] == 2
    assert fake_edge.handshakes == 2
    res = runner.invoke(app, [*args, "check", "--engine", "edge", "--text", "您好", "--text", "再见"])
    assert res.exit_code == 0 and res.stdout == "all prompts rendered for edge/zh-CN-XiaoxiaoNeural\n"


def test_play_still_writes_the_file_when_the_cache_is_not_writable(tmp_path: Path) -> None:
    # tts.cache_dir names a file, not a folder: nothing can be cached, but staff still get their WAV
    (tmp_path / "not-a-dir").write_text("x", encoding="utf-8")
    (tmp_path / "config.yaml").write_text(f"tts:\n  cache_dir: {tmp_path / 'not-a-dir'}\n", encoding="utf-8")
    out = tmp_path / "t.wav"
    p = cli(tmp_path, "prompts", "play", "您好", "--out", str(out))
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith(f"wrote {out} (") and p.stdout.endswith("8000 Hz mono, from espeak)\n")
    assert f"warning: not stored in the prompt cache {tmp_path / 'not-a-dir'}: " in p.stderr
    with wave.open(str(out)) as w:
        assert (w.getframerate(), w.getnchannels()) == (8000, 1) and w.getnframes() > 8000 * 0.3
