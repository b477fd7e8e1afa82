"""The worker's append-only local journal: what a crash must not lose, written before it matters.

One JSON object per line, in `<journal_dir>/<worker>.jsonl`:
- `dial`      just before the call goes to the network (an attempt without it was never dialled:
              after a crash it is undone, not charged to the resident);
- `answered`  the resident picked up (ring seconds);
- `progress`  the answers given so far on a live call (a call cut by our crash keeps them);
- `result`    a finished call's whole write (`results.campaigns.Finish`), before the store commits it;
- `committed` the store has it (replay skips it).
Written with one `write` + `flush` per record, so a `kill -9` of the process loses nothing (an
operating-system crash may lose the last records: then the store's own rules apply). On a restart the
journal of this worker (or of a dead worker on this host) is read back: uncommitted results are
written, and the recovery of `dialing` attempts learns which were dialled and what was answered. A
journal whose results are all in the store is then removed. Writes run off the event loop on live
calls (one thread), on the spot in virtual time.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from results import campaigns as db

log = logging.getLogger(__name__)


def _dt(v: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(v) if v else None


def claim_to_json(c: db.Claim) -> dict[str, Any]:
    return {
        "contact_id": c.contact_id, "attempt_id": c.attempt_id, "channel_id": c.channel_id,
        "campaign_id": c.campaign_id, "resident_id": c.resident_id, "attempt_no": c.attempt_no,
        "attempts_today": c.attempts_today, "started_at": c.started_at.isoformat(), "name": c.name,
        "phone": c.phone, "community": c.community, "address": c.address, "national_id": c.national_id,
        "arrival_date": c.arrival_date.isoformat() if c.arrival_date else None, "tags": list(c.tags),
        "last_outcome": c.last_outcome, "history": list(c.history), "trunk": c.trunk,
    }


def claim_from_json(d: Mapping[str, Any]) -> db.Claim:
    started = _dt(d["started_at"])
    assert started is not None
    return db.Claim(
        contact_id=d["contact_id"], attempt_id=d["attempt_id"], channel_id=d["channel_id"],
        campaign_id=d["campaign_id"], resident_id=d["resident_id"], attempt_no=d["attempt_no"],
        attempts_today=d["attempts_today"], started_at=started, name=d["name"], phone=d["phone"],
        community=d["community"], address=d["address"], national_id=d["national_id"],
        arrival_date=dt.date.fromisoformat(d["arrival_date"]) if d["arrival_date"] else None,
        tags=tuple(d["tags"]), last_outcome=d["last_outcome"], history=tuple(d["history"]),
        trunk=d.get("trunk", "default"),
    )


def finish_to_json(f: db.Finish) -> dict[str, Any]:
    r = f.record
    return {
        "claim": claim_to_json(f.claim), "outcome": f.outcome, "ended_at": f.ended_at.isoformat(),
        "answered_at": f.answered_at.isoformat() if f.answered_at else None, "dialog_outcome": f.dialog_outcome,
        "cause": f.cause, "duration_s": f.duration_s, "turns": f.turns,
        "record": None if r is None else {
            "outcome": r.outcome, "risk_level": r.risk_level, "reasons": r.reasons, "answers": r.answers,
            "uncertain": r.uncertain, "reminder_needed": r.reminder_needed,
            "callback_at": r.callback_at.isoformat() if r.callback_at else None,
        },
        "state": f.state, "next_attempt_at": f.next_attempt_at.isoformat() if f.next_attempt_at else None,
        "final_outcome": f.final_outcome,
        "escalations": [
            {"kind": e.kind, "priority": e.priority, "reasons": list(e.reasons),
             "due_at": e.due_at.isoformat() if e.due_at else None}
            for e in f.escalations
        ],
        "do_not_call": f.do_not_call, "do_not_call_source": f.do_not_call_source,
    }


def finish_from_json(d: Mapping[str, Any]) -> db.Finish:
    r = d["record"]
    ended = _dt(d["ended_at"])
    assert ended is not None
    return db.Finish(
        claim=claim_from_json(d["claim"]), outcome=d["outcome"], ended_at=ended, answered_at=_dt(d["answered_at"]),
        dialog_outcome=d["dialog_outcome"], cause=d["cause"], duration_s=d["duration_s"], turns=list(d["turns"]),
        record=None if r is None else db.RecordData(
            outcome=r["outcome"], risk_level=r["risk_level"], reasons=list(r["reasons"]), answers=dict(r["answers"]),
            uncertain=list(r["uncertain"]), reminder_needed=bool(r["reminder_needed"]),
            callback_at=_dt(r["callback_at"]),
        ),
        state=d["state"], next_attempt_at=_dt(d["next_attempt_at"]), final_outcome=d["final_outcome"],
        escalations=[db.EscalationData(e["kind"], e["priority"], tuple(e["reasons"]), _dt(e["due_at"]))
                     for e in d["escalations"]],
        do_not_call=bool(d["do_not_call"]), do_not_call_source=d.get("do_not_call_source", "opt_out"),
    )


@dataclass(slots=True)
class JournalState:
    """What a journal says about the calls of one worker run."""

    dialled: set[str] = field(default_factory=set)
    answered: dict[str, float] = field(default_factory=dict)  # channel -> ring seconds
    progress: dict[str, dict[str, Any]] = field(default_factory=dict)  # channel -> partial result
    results: dict[str, db.Finish] = field(default_factory=dict)  # channel -> finish not yet committed
    bad_lines: int = 0


def journal_path(directory: Path, worker: str) -> Path:
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in worker)
    return directory / f"{safe}.jsonl"


def read_journal(path: Path) -> JournalState:
    st = JournalState()
    if not path.exists():
        return st
    with path.open(encoding="utf-8") as f:
        for line in f:
            try:
                rec = json.loads(line)
                kind = rec["k"]
                if kind == "dial":
                    st.dialled.add(rec["ch"])
                elif kind == "answered":
                    st.answered[rec["ch"]] = float(rec.get("ring_s", 0.0))
                elif kind == "progress":
                    st.progress[rec["ch"]] = rec["result"]
                elif kind == "result":
                    fin = finish_from_json(rec["finish"])
                    st.results[fin.claim.channel_id] = fin
                elif kind == "committed":
                    for ch in rec["ch"]:
                        st.results.pop(ch, None)
            except (ValueError, KeyError, TypeError, AssertionError):
                st.bad_lines += 1  # a line cut by the crash: only the last one can be
    return st


class Journal:
    """This worker's journal (appends only). `inline`: write on the spot (virtual time)."""

    def __init__(self, path: Path, *, inline: bool) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._f: IO[str] | None = path.open("a", encoding="utf-8")
        self._pool = None if inline else ThreadPoolExecutor(1, thread_name_prefix="journal")

    def _write(self, records: tuple[Mapping[str, Any], ...]) -> None:
        if self._f is None:
            return
        self._f.write("".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n" for r in records))
        self._f.flush()

    async def append(self, *records: Mapping[str, Any]) -> None:
        if self._pool is None:
            self._write(records)
        else:
            await asyncio.get_running_loop().run_in_executor(self._pool, self._write, records)

    async def dial(self, channel_id: str) -> None:
        await self.append({"k": "dial", "ch": channel_id})

    async def answered(self, channel_id: str, ring_s: float) -> None:
        await self.append({"k": "answered", "ch": channel_id, "ring_s": round(ring_s, 2)})

    async def progress(self, channel_id: str, result: Mapping[str, Any]) -> None:
        await self.append({"k": "progress", "ch": channel_id, "result": dict(result)})

    async def results(self, finishes: list[db.Finish]) -> None:
        await self.append(*({"k": "result", "finish": finish_to_json(f)} for f in finishes))

    async def committed(self, channel_ids: list[str]) -> None:
        if channel_ids:
            await self.append({"k": "committed", "ch": channel_ids})

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        if self._f is not None:
            self._f.close()
            self._f = None


def retire(path: Path) -> None:
    """Remove a journal whose every result is in the store."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
