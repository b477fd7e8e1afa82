"""Per-frame cost of the voice runner's two per-frame analyses: DtmfDetector.process and Vad.is_speech.

The runner calls both for every 20 ms frame of every live call, on its event loop. This times the
current code ("after") against the frozen copies of the first versions that the equivalence tests hold
("before": tests/test_dtmf_equivalence.py, tests/test_vad_equivalence.py) on three kinds of frames:

- silent: line hiss (gaussian, RMS 20, about -64 dBFS), below both energy gates;
- speech: an espeak-ng Mandarin sentence at 8 kHz, all its frames (`speech_share_over_dtmf_gate` says
  how many pass the DTMF detector's silent-frame gate, i.e. take the Goertzel path);
- tone: a held key (digit 5 at -10 dBm0), the detector in its key-on state.

Each figure is microseconds per frame: the median over `--repeats` runs of `--frames` calls each, the
before and after runs interleaved; one instance per kind, warmed up first, fed the kind's frames in order
(cycled). `runner_pair` is what the runner does per frame: process(), then is_speech() unless a tone is on.
Absolute figures move with the machine's load; before and after of one run are comparable.

Prints one JSON object. Usage: python bench/frame_bench.py [--repeats 7] [--frames 20000]
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from asr.dtmf import DtmfDetector, digit_tone  # noqa: E402
from asr.vad import Vad  # noqa: E402
from tests.asr_audio import espeak, to_pcm  # noqa: E402
from tests.test_dtmf_equivalence import ReferenceDtmfDetector  # noqa: E402
from tests.test_vad_equivalence import ReferenceVad  # noqa: E402

FRAME = 320


def _frames(pcm: bytes) -> list[bytes]:
    return [pcm[i : i + FRAME] for i in range(0, len(pcm) - FRAME + 1, FRAME)]


def corpora() -> dict[str, list[bytes]]:
    rng = np.random.default_rng(0)
    speech = espeak("ni3 hao3, zhe4 li3 shi4 she4 qu1 wei4 sheng1 fu2 wu4 zhong1 xin1, zui4 jin4 you3 mei2 you3 fa1 shao1")
    return {
        "silent": _frames(to_pcm(rng.normal(0.0, 20.0, 8000 * 5))),
        "speech": _frames(speech),
        "tone": _frames(to_pcm(digit_tone("5", 5000, level_dbm0=-10.0))),
    }


def per_frame_us(step: Callable[[bytes], object], frames: list[bytes], n: int) -> float:
    feed = list(itertools.islice(itertools.cycle(frames), n))
    gc.disable()
    try:
        t0 = time.perf_counter()
        for f in feed:
            step(f)
        elapsed = time.perf_counter() - t0
    finally:
        gc.enable()
    return elapsed / n * 1e6


def runner_pair(det: DtmfDetector | ReferenceDtmfDetector, vad: Vad | ReferenceVad) -> Callable[[bytes], object]:
    def step(pcm: bytes) -> object:
        res = det.process(pcm)
        return False if res.tone else vad.is_speech(pcm)

    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--frames", type=int, default=20000, help="calls per timed run")
    args = ap.parse_args()
    kinds = corpora()
    out: dict[str, object] = {}
    for kind, frames in kinds.items():
        steps: dict[str, dict[str, Callable[[bytes], object]]] = {
            "dtmf": {"before": ReferenceDtmfDetector().process, "after": DtmfDetector().process},
            "vad": {"before": ReferenceVad().is_speech, "after": Vad().is_speech},
            "runner_pair": {
                "before": runner_pair(ReferenceDtmfDetector(), ReferenceVad()),
                "after": runner_pair(DtmfDetector(), Vad()),
            },
        }
        for what, impls in steps.items():
            runs: dict[str, list[float]] = {"before": [], "after": []}
            for step in impls.values():
                per_frame_us(step, frames, len(frames))  # warm-up, and the state a stream would be in
            for _ in range(args.repeats):
                for label, step in impls.items():
                    runs[label].append(per_frame_us(step, frames, args.frames))
            before = statistics.median(runs["before"])
            after = statistics.median(runs["after"])
            out[f"{what}_us_{kind}"] = {"before": round(before, 2), "after": round(after, 2), "speedup": round(before / after, 2)}
    out["speech_share_over_dtmf_gate"] = round(share_over_dtmf_gate(kinds["speech"]), 2)
    out["frames_per_kind"] = {k: len(v) for k, v in kinds.items()}
    out["repeats"] = args.repeats
    out["calls_per_run"] = args.frames
    print(json.dumps(out))


def share_over_dtmf_gate(frames: list[bytes]) -> float:
    """The share of frames that pass the detector's silent-frame gate (and so compute the Goertzel powers)."""
    floor = DtmfDetector()._floor
    prev = 0.0
    passed = 0
    for pcm in frames:
        x = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
        e1, e2 = float(x[:80] @ x[:80]), float(x[80:] @ x[80:])
        passed += not (prev + e1 < floor and e1 + e2 < floor)
        prev = e2
    return passed / len(frames)


if __name__ == "__main__":
    main()
