"""Benchmark: the web console over HTTP on a big store: 100,000 escalations across 50 communities, 1,000,000
call attempts (200,000 residents in one campaign, 150,000 screening records).

Measures, through a real uvicorn server on 127.0.0.1 and an HTTP client: the worker queue (first page and a
filtered page), the resident page, and the staff dashboard's data. The dashboard's aggregates are cached by
the app for 3 s and refreshed in the background (every polling browser shares them): `dashboard_p95_ms` is
what a browser waits for, as the app runs; `dashboard_first_compute_ms` and `dashboard_refresh_compute_ms`
are the aggregate computations themselves (first: every hour counted; refresh: finished hours kept). Prints one
JSON line per database:

    {"db": "sqlite", "escalations": ..., "attempts": ..., "queue_p50_ms": ..., "queue_p95_ms": ...,
     "queue_filtered_p95_ms": ..., "resident_p95_ms": ..., "dashboard_p95_ms": ..., ...}

    python bench/web_bench.py [--db sqlite|postgres|both] [--escalations N] [--attempts N] [--requests N]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import re
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import uvicorn

from outreach.config import load_config
from outreach.services.accounts import add_user
from outreach.web.app import create_app
from results.bulk import analyze, load_rows
from results.dashboard import Timeline, campaign_dashboard
from results.store import Store

ROOT = Path(__file__).resolve().parent.parent
COMMUNITIES = [f"第{i:02d}社区" for i in range(1, 51)]
OUTCOMES = (["answered"] * 50 + ["no_answer"] * 30 + ["busy"] * 7 + ["congestion"] * 6 + ["invalid_number"] * 3
            + ["hung_up_early"] * 4)
KINDS = ["unreachable"] * 5 + ["flagged"] * 2 + ["callback_requested", "human_requested", "uncertain"]
START = dt.datetime(2026, 11, 23, 1, 0, tzinfo=dt.UTC)
PASSWORD = "bench password 1"


def fill(store: Store, *, residents: int, attempts: int, records: int, escalations: int, seed: int = 7) -> None:
    r = random.Random(seed)
    now = START
    load_rows(store, "campaigns", ["id", "name", "script_path", "script_sha256", "state", "timezone", "windows",
                                   "holidays", "pacing", "retry_policy", "contact_filter", "created_at"],
              [(1, "大规模筛查", "dialogs/scripts/covid_screening.yaml", "", "running", "Asia/Shanghai",
                {"daily": ["09:00-12:00", "14:00-20:00"]}, [], {"max_concurrent_calls": 600, "calls_per_second": 20},
                {}, {}, now)])
    community_of = [COMMUNITIES[i % len(COMMUNITIES)] for i in range(residents + 1)]

    def residents_rows() -> Iterator[tuple[Any, ...]]:
        for i in range(1, residents + 1):
            yield (i, f"居民{i}", f"+86139{i:08d}", community_of[i], f"{community_of[i]}{i % 300}栋", None, None, [],
                   "", "bench.csv", now, now)

    load_rows(store, "residents", ["id", "name", "phone", "community", "address", "national_id", "arrival_date",
                                   "tags", "note", "source_file", "created_at", "updated_at"], residents_rows())

    def contacts() -> Iterator[tuple[Any, ...]]:
        for i in range(1, residents + 1):
            yield (i, 1, i, "done", 5, 0, None, None, now, "completed", "completed")

    load_rows(store, "campaign_contacts", ["id", "campaign_id", "resident_id", "state", "attempts", "attempts_today",
                                           "attempts_day", "next_attempt_at", "last_attempt_at", "last_outcome",
                                           "final_outcome"], contacts())
    span_s = 7 * 24 * 3600

    def attempt_rows() -> Iterator[tuple[Any, ...]]:
        for i in range(1, attempts + 1):
            rid = (i - 1) % residents + 1
            started = START + dt.timedelta(seconds=r.randrange(span_s))
            outcome = r.choice(OUTCOMES)
            answered = started + dt.timedelta(seconds=8) if outcome == "answered" else None
            yield (i, 1, rid, rid, f"ch-{i}", (i - 1) // residents + 1, "bench", started, answered,
                   started + dt.timedelta(seconds=60), outcome, "completed" if answered else None, None, 60.0, [])

    load_rows(store, "call_attempts", ["id", "campaign_id", "contact_id", "resident_id", "channel_id", "attempt_no",
                                       "worker", "started_at", "answered_at", "ended_at", "outcome", "dialog_outcome",
                                       "hangup_cause", "duration_s", "turns"], attempt_rows())
    answers = {"identity_confirmed": {"value": True, "raw": "是我", "confidence": 0.9, "nlu": "builtin",
                                      "intent": "yes", "uncertain": False, "audio": None},
               "has_symptoms": {"value": False, "raw": "没有", "confidence": 0.95, "nlu": "builtin", "intent": "no",
                                "uncertain": False, "audio": None}}

    def record_rows() -> Iterator[tuple[Any, ...]]:
        for i in range(1, records + 1):
            aid = i * 2 if i * 2 <= attempts else i
            rid = (aid - 1) % residents + 1
            risk = "flagged" if i % 12 == 0 else "none"
            yield (i, aid, 1, rid, "completed", risk, ["有发烧、咳嗽或乏力"] if risk != "none" else [], answers, [],
                   i % 5 == 0, None, START + dt.timedelta(seconds=r.randrange(span_s)))

    load_rows(store, "screening_records", ["id", "attempt_id", "campaign_id", "resident_id", "outcome", "risk_level",
                                           "reasons", "answers", "uncertain", "reminder_needed", "callback_at",
                                           "created_at"], record_rows())

    def escalation_rows() -> Iterator[tuple[Any, ...]]:
        for i in range(1, escalations + 1):
            rid = r.randrange(1, residents + 1)
            status = r.choice(["open"] * 6 + ["in_progress"] * 2 + ["closed"] * 2)
            kind = r.choice(KINDS)
            yield (i, rid, 1, None, kind, community_of[rid], 1 if kind == "flagged" else r.choice([2, 3]), status,
                   ["连续5次未接通"], "", None, None, None, START + dt.timedelta(seconds=r.randrange(span_s)), None)

    load_rows(store, "escalations", ["id", "resident_id", "campaign_id", "record_id", "kind", "community", "priority",
                                     "status", "reasons", "notes", "result", "assigned_to", "due_at", "created_at",
                                     "closed_at"], escalation_rows())
    if store.dialect == "postgresql":
        raw = store.engine.raw_connection()
        try:
            cur = raw.cursor()
            for t in ("campaigns", "residents", "campaign_contacts", "call_attempts", "screening_records", "escalations"):
                cur.execute(f"SELECT setval(pg_get_serial_sequence('{t}', 'id'), (SELECT max(id) FROM {t}))")
            raw.commit()
        finally:
            raw.close()
    analyze(store)


class Served:
    def __init__(self, app: Any) -> None:
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                                    access_log=False))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        while not self.server.started:
            time.sleep(0.05)
        return f"http://127.0.0.1:{self.server.servers[0].sockets[0].getsockname()[1]}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def login(base: str, name: str) -> httpx.Client:
    c = httpx.Client(base_url=base, timeout=60)
    c.get("/login")
    c.post("/login", data={"username": name, "password": PASSWORD, "csrf_token": c.cookies["outreach_login_csrf"],
                           "next": "/"})
    assert "outreach_session" in c.cookies, f"login of {name} failed"
    return c


def timed(c: httpx.Client, paths: list[str]) -> list[float]:
    out = []
    for p in paths:
        t0 = time.perf_counter()
        resp = c.get(p)
        out.append((time.perf_counter() - t0) * 1000)
        assert resp.status_code == 200, (p, resp.status_code)
    return out


def p(values: list[float], q: float) -> float:
    return round(statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1], 1) if len(values) > 1 else round(values[0], 1)


def run_one(url: str, label: str, args: argparse.Namespace) -> dict[str, Any]:
    t0 = time.perf_counter()
    store = Store(url)
    try:
        fill(store, residents=args.residents, attempts=args.attempts, records=args.records,
             escalations=args.escalations)
        fill_s = round(time.perf_counter() - t0, 1)
        community = COMMUNITIES[6]
        add_user(store, "w", role="worker", communities=[community], password=PASSWORD, actor="bench")
        add_user(store, "s", role="staff", communities=[], password=PASSWORD, actor="bench")
        with tempfile.TemporaryDirectory() as tmp:
            cfg = load_config(ROOT / "config.yaml", overrides={"database": {"url": url}, "web": {"data_dir": tmp}})
            results: dict[str, Any] = {"db": label}
            # the dashboard's aggregates computed in process: the first time (every hour counted) and
            # then as the app's refresh does it (finished hours kept)
            timeline = Timeline()
            t1 = time.perf_counter()
            campaign_dashboard(store, 1, timeline)
            results["dashboard_first_compute_ms"] = round((time.perf_counter() - t1) * 1000, 1)
            again = []
            for _ in range(5):
                t1 = time.perf_counter()
                campaign_dashboard(store, 1, timeline)
                again.append((time.perf_counter() - t1) * 1000)
            results["dashboard_refresh_compute_ms"] = round(statistics.median(again), 1)
            app = create_app(cfg, store)
            with Served(app) as base:
                staff = login(base, "s")
                dash = timed(staff, ["/campaigns/1/data"] * args.requests)
                results["dashboard_p50_ms"], results["dashboard_p95_ms"] = p(dash, 50), p(dash, 95)
                worker = login(base, "w")
                html = worker.get("/queue").text
                ids = sorted({int(x) for x in re.findall(r"/residents/(\d+)#", html)})
                assert ids, "the worker's queue is empty"
                first = timed(worker, ["/queue"] * args.requests)
                filtered = timed(worker, [f"/queue?kind=unreachable&status=open&page={i % 20 + 1}"
                                          for i in range(args.requests)])
                rng = random.Random(1)
                in_scope = list(range(6, args.residents + 1, len(COMMUNITIES)))  # residents of COMMUNITIES[6]
                resident = timed(worker, [f"/residents/{rng.choice(in_scope)}" for _ in range(args.requests)])
                results.update({
                    "queue_p50_ms": p(first, 50), "queue_p95_ms": p(first, 95),
                    "queue_filtered_p50_ms": p(filtered, 50), "queue_filtered_p95_ms": p(filtered, 95),
                    "resident_p50_ms": p(resident, 50), "resident_p95_ms": p(resident, 95),
                })
        return {"escalations": args.escalations, "communities": len(COMMUNITIES), "attempts": args.attempts,
                "residents": args.residents, "records": args.records, **results, "requests": args.requests,
                "fill_s": fill_s}
    finally:
        store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    ap.add_argument("--escalations", type=int, default=100_000)
    ap.add_argument("--attempts", type=int, default=1_000_000)
    ap.add_argument("--residents", type=int, default=200_000)
    ap.add_argument("--records", type=int, default=150_000)
    ap.add_argument("--requests", type=int, default=200)
    args = ap.parse_args()
    if args.db in ("sqlite", "both"):
        with tempfile.TemporaryDirectory(prefix="web-bench-") as tmp:
            print(json.dumps(run_one(f"sqlite:///{tmp}/bench.db", "sqlite", args), ensure_ascii=False), flush=True)
    if args.db in ("postgres", "both"):
        from tests.pg import PostgresServer

        server = PostgresServer()
        server.start()
        try:
            print(json.dumps(run_one(server.create_database("webbench"), "postgresql", args), ensure_ascii=False),
                  flush=True)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
