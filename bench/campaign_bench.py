"""Benchmark: a 100,000-resident campaign on the simulated network in virtual time.

Prints one JSON object: {"residents", "calls", "calls_per_s", "wall_s", "peak_rss_mb", ...}.
`calls_per_s` is finished call attempts (all outcomes) per wall-clock second of the campaign run,
including claiming, the dialog engine + NLU for every answered call, and all database writes.
`answered_calls_per_s` and `completed_screenings_per_s` count only answered calls and finished screenings.

    python bench/campaign_bench.py [--residents N] [--db URL] [--profile FILE.html]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from campaigns.demo import run_demo
from outreach.commands.campaign import demo_settings
from outreach.config import Config

# Lines and pacing of a large deployment (a national vendor claimed 2,000 simultaneous calls).
BENCH_PACING = {"max_concurrent_calls": 600, "calls_per_second": 20.0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--residents", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=20201)
    ap.add_argument("--db", default=None, help="store URL (default: a SQLite file in a temp folder)")
    ap.add_argument("--profile", default=None, help="write a pyinstrument HTML profile here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="campaign-bench-") as tmp:
        profiler: Any = None
        if args.profile:
            from pyinstrument import Profiler

            profiler = Profiler()
            profiler.start()
        t0 = time.perf_counter()
        result = run_demo(
            demo_settings(Config(), seed=args.seed), Path(tmp), residents=args.residents, pacing=BENCH_PACING,
            write_exports=False, store_url=args.db,
        )
        wall = time.perf_counter() - t0
        if profiler is not None:
            profiler.stop()
            Path(args.profile).write_text(profiler.output_html(), encoding="utf-8")
    s = result.summary
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({
        "residents": s["residents"],
        "calls": s["calls"],
        "calls_per_s": round(s["calls"] / wall, 1),
        "answered_calls_per_s": round(s["answered"] / wall, 1),
        "completed_screenings_per_s": round(s["completed"] / wall, 1),
        "wall_s": round(wall, 2),
        "peak_rss_mb": round(rss_kb / 1024, 1),
        "answered": s["answered"],
        "completed": s["completed"],
        "unreachable": s["unreachable"],
        "unfinished": s["unfinished"],
        "simulated_days": s["virtual_days"],
    }))


if __name__ == "__main__":
    main()
