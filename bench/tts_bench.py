"""Prompt synthesis and cache benchmark.

Prints one JSON object:
- espeak_prompts_per_s, espeak_ms_per_prompt, espeak_rtf: rendering the shipped script's static prompts
  with the offline engine (render_all, default concurrency); rtf = wall seconds / audio seconds.
- mp3_decode_rtf: the edge-tts path without the network: decode a 24 kHz MP3 + resample/trim/normalise,
  wall seconds per audio second.
- cache_get_us_p50/p95: reading one cached prompt WAV from disk (what a call does once per prompt).
- player_hit_us_p50: PromptPlayer.audio() for a prompt already in its memory memo.

    python bench/tts_bench.py [--rounds N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import lameenc

from dialogs.script import load_script
from outreach.config import TtsConfig
from tts import audio
from tts.cache import PromptCache, PromptPlayer, render_all, static_prompts
from tts.espeak import EspeakEngine

SCRIPT = Path(__file__).resolve().parent.parent / "dialogs" / "scripts" / "covid_screening.yaml"


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


async def main_async(rounds: int) -> dict[str, float | int]:
    texts = static_prompts(load_script(SCRIPT))
    eng = EspeakEngine()
    with tempfile.TemporaryDirectory() as tmp:
        cache = PromptCache(Path(tmp) / "prompts")
        t0 = time.perf_counter()
        report = await render_all(texts, eng, cache)
        render_s = time.perf_counter() - t0
        audio_s = sum(audio.duration_s(cache.get(eng, t) or b"") for t in texts)

        get_us: list[float] = []
        for _ in range(rounds):
            for t in texts:
                t1 = time.perf_counter()
                cache.get(eng, t)
                get_us.append((time.perf_counter() - t1) * 1e6)

        player = PromptPlayer(TtsConfig(cache_dir=str(cache.root)), cache)
        await player.audio(texts[0])
        hit_us: list[float] = []
        for _ in range(rounds * 10):
            t1 = time.perf_counter()
            await player.audio(texts[0])
            hit_us.append((time.perf_counter() - t1) * 1e6)

        # the edge path minus the network: 24 kHz MP3 of real speech -> telephone PCM
        pcm8 = cache.get(eng, texts[0]) or b""
        pcm24 = audio.resample_pcm(pcm8, 8000, 24000)
        enc = lameenc.Encoder()
        enc.set_bit_rate(48)
        enc.set_in_sample_rate(24000)
        enc.set_channels(1)
        mp3 = bytes(enc.encode(pcm24) + enc.flush())
        t1 = time.perf_counter()
        for _ in range(rounds):
            pcm, rate = audio.decode_mp3(mp3)
            audio.to_telephone(pcm, rate)
        decode_s = (time.perf_counter() - t1) / rounds

    return {
        "prompts": report.total,
        "failed": len(report.failures),
        "espeak_prompts_per_s": round(report.total / render_s, 1),
        "espeak_ms_per_prompt": round(render_s * 1000 / report.total, 1),
        "espeak_rtf": round(render_s / audio_s, 4),
        "audio_s": round(audio_s, 1),
        "mp3_decode_rtf": round(decode_s / audio.duration_s(pcm8), 4),
        "cache_get_us_p50": round(statistics.median(get_us), 1),
        "cache_get_us_p95": round(pct(get_us, 0.95), 1),
        "player_hit_us_p50": round(statistics.median(hit_us), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main_async(args.rounds))))


if __name__ == "__main__":
    main()
