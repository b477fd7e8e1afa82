"""Benchmark: SMS reminders dispatched to the local provider servers, for each gateway.

For each gateway (Twilio, Aliyun) the provider's local server (tests/fake_twilio.py, tests/fake_aliyun.py,
written from each provider's documented API) runs as a real HTTP server in a separate process; the real
`twilio` client and the real Aliyun SDK send to it through our real dispatcher (sms.dispatcher via
campaigns.reminders.make_dispatcher) and store (results.sms on a SQLite file in a temp folder, or --db).

Two runs per gateway:
- unthrottled: `--messages` reminders (default 100,000) → `msgs_per_s` (planned rows / wall seconds of the
  dispatch, claims and result writes included);
- rate-limited: `--limited-messages` (default 2,000) at `--limit` msg/s (default 20) →
  `rate_limit_error_pct`: |measured − limit| / limit × 100, measured from the provider's own receive times
  over the whole run, and `rate_limit_worst_10s_pct`, the same over the worst 10-second window.

`duplicates` and `lost` come from the provider's own log compared with the store, not from our counters:
a duplicate is a second provider record of one stored message (Twilio: same number and body; Aliyun: same
OutId); a lost message is a stored message the provider has no record of. `id_mismatch` counts stored
rows whose provider id differs from the provider's.

Prints one JSON object per gateway, one per line.

    python bench/sms_bench.py [--messages N] [--limited-messages N] [--limit R] [--gateway twilio|aliyun]
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import dataclasses
import datetime as dt
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
from collections import Counter
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import select

from campaigns.reminders import ReminderSettings, TemplateSpec, make_dispatcher
from results import campaigns as rdb
from results import sms as sdb
from results.models import Resident, SmsMessage
from results.store import Store
from sms.dispatcher import DispatchSettings
from sms.gateways import AliyunGateway, TwilioGateway
from sms.types import Gateway

# A Monday, 10:00 in Shanghai: inside the SMS window. Due times use it; pacing uses real seconds.
T0 = dt.datetime(2026, 11, 23, 2, 0, tzinfo=dt.UTC)
PREFIX = "+86139"
TEMPLATE = "{name}您好，请于{due_date}前往{sites}完成第二次核酸检测。已做请回复“已做”。"
WINDOW_S = 10.0


# ----------------------------------------------------------------------------- the provider's process


def _serve(kind: str, conn: Connection) -> None:
    """The fake provider in its own process: answers 'log' with its own record of what it received."""
    from tests.fake_aliyun import FakeAliyun
    from tests.fake_twilio import FakeTwilio

    if kind == "twilio":
        tw = FakeTwilio().start()
        conn.send({"base_url": tw.base_url, "account_sid": tw.account_sid, "auth_token": tw.auth_token})
    else:
        ali = FakeAliyun().start()
        conn.send({"endpoint": ali.endpoint, "access_key_id": ali.access_key_id,
                   "access_key_secret": ali.access_key_secret})
    while True:
        cmd = conn.recv()
        if cmd == "log":
            if kind == "twilio":
                with tw.lock:
                    log = [(m.sid, m.to, m.body, m.created.timestamp()) for m in tw.messages]
                    tw.messages.clear()
            else:
                with ali.lock:
                    log = [(s.biz_id, "+86" + s.phone, s.out_id, s.at.timestamp()) for s in ali.sent]
                    ali.sent.clear()
            conn.send(log)
        elif cmd == "stop":
            (tw if kind == "twilio" else ali).stop()
            conn.send("stopped")
            return


class Provider:
    def __init__(self, kind: str) -> None:
        self.kind = kind
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(kind, child), daemon=True)
        self.proc.start()
        self.info: dict[str, str] = self.conn.recv()

    def gateway(self) -> Gateway:
        i = self.info
        if self.kind == "twilio":
            return TwilioGateway(i["account_sid"], i["auth_token"], from_number="+15005550006",
                                 base_url=i["base_url"], timeout_s=10.0)
        return AliyunGateway(i["access_key_id"], i["access_key_secret"], sign_name="健康热线",
                             endpoint=i["endpoint"], protocol="http", timeout_s=10.0)

    def log(self) -> list[tuple[str, str, str, float]]:
        """(provider id, number, body or OutId, receive time) for every message received since the last call."""
        self.conn.send("log")
        return list(self.conn.recv())

    def stop(self) -> None:
        self.conn.send("stop")
        self.conn.recv()
        self.proc.join(5)


# ----------------------------------------------------------------------------- the store


def plan(store: Store, n: int, tag: str) -> None:
    """n residents with one due second-test reminder each (unique numbers and bodies)."""
    with store.session() as s:
        start = int(s.scalar(select(Resident.id).order_by(Resident.id.desc()).limit(1)) or 0)
    rows = [{"name": f"居民{start + i}", "phone": f"{PREFIX}{start + i:08d}", "community": "东湖社区"}
            for i in range(n)]
    rdb.add_residents(store, rows, now=T0)
    with store.session() as s:
        people = s.execute(select(Resident.id, Resident.name, Resident.phone).where(Resident.id > start)).all()
    msgs = [
        sdb.NewSms(resident_id=rid, campaign_id=None, kind="second_test_reminder", dedupe_key=f"{tag}:{rid}",
                   to_phone=phone, body=f"【健康热线】{name}您好，请于11月25日前往社区医院完成第二次核酸检测。已做请回复“已做”。",
                   template="second_test_reminder",
                   params={"name": name, "due_date": "11月25日", "sites": "社区医院"}, segments=1,
                   scheduled_for=T0)
        for rid, name, phone in people
    ]
    for i in range(0, len(msgs), 10_000):
        sdb.enqueue(store, msgs[i : i + 10_000], now=T0)


def stored(store: Store, tag: str) -> list[tuple[str, str, str, str, str]]:
    """(state, number, body, OutId, provider id) of this run's messages."""
    with store.session() as s:
        q = select(SmsMessage.state, SmsMessage.to_phone, SmsMessage.body, SmsMessage.out_id,
                   SmsMessage.provider_id).where(SmsMessage.dedupe_key.like(f"{tag}:%"))
        return [(a, b, c, d or "", e or "") for a, b, c, d, e in s.execute(q)]


def compare(kind: str, rows: list[tuple[str, str, str, str, str]],
            log: list[tuple[str, str, str, float]]) -> dict[str, int]:
    """Duplicates, losses and id mismatches: the provider's log against the store."""
    def key(to: str, body: str, out_id: str) -> tuple[str, str]:
        return (to, body) if kind == "twilio" else (to, out_id)

    seen = Counter((to, k) for _, to, k, _ in log)
    ids: dict[tuple[str, str], str] = {(to, k): pid for pid, to, k, _ in log}
    lost = sum(1 for _, to, body, oid, _ in rows if seen[key(to, body, oid)] == 0)
    mine = {key(to, body, oid) for _, to, body, oid, _ in rows}
    duplicates = sum(n - 1 for k, n in seen.items() if n > 1 and k in mine)
    strangers = sum(n for k, n in seen.items() if k not in mine)
    mismatch = sum(1 for _, to, body, oid, pid in rows
                   if pid and ids.get(key(to, body, oid), pid) != pid)
    not_sent = sum(1 for state, *_ in rows if state not in ("accepted", "sent", "delivered"))
    return {"duplicates": duplicates, "lost": lost, "unknown_at_provider": strangers, "id_mismatch": mismatch,
            "not_sent_in_store": not_sent}


def rate_error(times: list[float], limit: float) -> dict[str, float]:
    """From receive times: msg/s over the run and its error %, and the worst 10 s window's error % with the
    fewest and most messages any window held (every window [t, t+10 s) that starts at a message and ends
    inside the run)."""
    ts = sorted(times)
    if len(ts) < 2:
        return {"measured": 0.0, "error_pct": 100.0, "worst_pct": 100.0, "window_min": 0, "window_max": 0}
    measured = (len(ts) - 1) / (ts[-1] - ts[0])
    counts = []
    for i, t in enumerate(ts):
        if t + WINDOW_S > ts[-1]:
            break
        counts.append(bisect.bisect_left(ts, t + WINDOW_S) - i)
    lo, hi = (min(counts), max(counts)) if counts else (0, 0)
    worst = max(abs(n / WINDOW_S - limit) / limit * 100 for n in (lo, hi)) if counts else 100.0
    return {"measured": measured, "error_pct": abs(measured - limit) / limit * 100, "worst_pct": worst,
            "window_min": lo, "window_max": hi}


# ----------------------------------------------------------------------------- one run


def dispatch(store: Store, gateway: Gateway, settings: ReminderSettings) -> tuple[float, dict[str, Any]]:
    d = make_dispatcher(store, gateway, settings, clock=lambda: T0)
    try:
        t0 = time.perf_counter()
        stats = asyncio.run(d.run_once())
        wall = time.perf_counter() - t0
    finally:
        d.close()
    return wall, {"claimed": stats.claimed, "sent": stats.sent, "failed": stats.failed, "requeued": stats.requeued,
                  "unresolved": stats.unresolved, "errors": stats.errors}


def bench(kind: str, store: Store, args: argparse.Namespace) -> dict[str, Any]:
    templates = {"second_test_reminder": TemplateSpec(TEMPLATE, code="SMS_100001")}
    dispatch_settings = DispatchSettings(concurrency=args.concurrency, batch=args.batch)
    base = ReminderSettings(templates=templates, dispatch=dispatch_settings, daily_cap=3)
    provider = Provider(kind)
    try:
        gateway = provider.gateway()
        tag = f"{kind}-fast"
        plan(store, args.messages, tag)
        wall, stats = dispatch(store, gateway, base)
        result = compare(kind, stored(store, tag), provider.log())
        out: dict[str, Any] = {
            "gateway": kind, "messages": args.messages, "msgs_per_s": round(args.messages / wall, 1),
            "duplicates": result["duplicates"], "lost": result["lost"],
        }
        limited: dict[str, Any] = {}
        if args.limited_messages:
            tag = f"{kind}-limited"
            plan(store, args.limited_messages, tag)
            _, lstats = dispatch(store, gateway, dataclasses.replace(base, rate_per_s=args.limit))
            log = provider.log()
            lres = compare(kind, stored(store, tag), log)
            r = rate_error([t for *_, t in log], args.limit)
            out["rate_limit_error_pct"] = round(r["error_pct"], 2)
            out["rate_limit_worst_10s_pct"] = round(r["worst_pct"], 2)
            limited = {"messages": args.limited_messages, "limit_per_s": args.limit,
                       "measured_per_s": round(r["measured"], 3),
                       "msgs_in_10s_windows": [r["window_min"], r["window_max"]], **lres, "dispatch": lstats}
        out["unthrottled"] = {"wall_s": round(wall, 2), **result, "dispatch": stats}
        if limited:
            out["limited"] = limited
        out["store"] = store.dialect
        out["concurrency"] = args.concurrency
        out["cpus"] = os.cpu_count()
        out["load_avg_1m"] = round(os.getloadavg()[0], 2)
        return out
    finally:
        provider.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=100_000, help="unthrottled run size (default 100,000)")
    ap.add_argument("--limited-messages", type=int, default=2_000, help="rate-limited run size (0: skip)")
    ap.add_argument("--limit", type=float, default=20.0, help="rate limit of the limited run, msg/s")
    ap.add_argument("--gateway", choices=["twilio", "aliyun"], action="append",
                    help="gateway to bench (repeatable; default both)")
    ap.add_argument("--concurrency", type=int, default=DispatchSettings().concurrency)
    ap.add_argument("--batch", type=int, default=DispatchSettings().batch)
    ap.add_argument("--db", default=None, help="store URL (default: a SQLite file in a temp folder)")
    args = ap.parse_args()
    for kind in args.gateway or ["twilio", "aliyun"]:
        with tempfile.TemporaryDirectory(prefix="sms-bench-") as tmp:
            store = Store(args.db or f"sqlite:///{Path(tmp) / 'bench.db'}")
            try:
                print(json.dumps(bench(kind, store, args), ensure_ascii=False), flush=True)
            finally:
                store.close()


if __name__ == "__main__":
    main()
