"""A whole campaign through the Asterisk backend and the fake Asterisk: the real store, engine, script,
dialog runner and NLU; AMI Originates, AudioSocket audio both ways at a (4x) real-time pace.

Residents answer by voice (a scripted recognizer turns each utterance into the planned text) or by
keys (AudioSocket DTMF messages); others are busy, do not answer, are empty numbers, switched off, or
hang up at the greeting. Checked from the store and from the fake's own event log (what Asterisk saw).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from asr.base import ScriptedRecognizer
from campaigns.clock import WallClock
from campaigns.engine import CampaignEngine, EngineSettings, TrunkSpec
from campaigns.service import serve
from campaigns.synthetic import synthetic_residents
from campaigns.transfer import TransferOnEnd
from dialer.asterisk.audiosocket import Limits
from dialer.asterisk.backend import AsteriskTelephony
from dialer.media import MediaSession
from dialogs.runner import RunnerSettings, run_dialog
from dialogs.types import DialogSession, ScreeningResult
from outreach.commands.campaign import build_sessions, campaign_defaults
from outreach.config import Config
from results import campaigns as db
from results.models import CallAttempt, CampaignContact, ScreeningRecord
from results.store import Store
from tests.asr_audio import beep, espeak
from tests.conftest import ROOT
from tests.fake_asterisk import FakeAsterisk, Scenario, Step, dtmf, hang_up, header, speak, wait_prompt
from tests.test_asterisk_backend import fast_settings

PERIOD = 0.005  # 4x real time on both sides of the line
SCRIPT = str(ROOT / "dialogs" / "scripts" / "covid_screening.yaml")
CFG = Config()
VOICE_REPLIES = ["是的", "没有", "没有", "没有", "做了"]
KEY_REPLIES = ["1", "2", "2", "2", "1"]
EXPECTED = {"identity_confirmed": True, "has_symptoms": False, "traveled": False, "contact_case": False,
            "second_test_done": True}


KINDS = (["voice"] * 9 + ["keys"] * 9 + ["busy"] * 4 + ["no_answer"] * 4 + ["invalid"] * 3
         + ["switched_off"] * 3 + ["unanswered"] * 2 + ["hangs_up"] * 2 + ["human"] * 2)
N = len(KINDS)  # 38


def plan(i: int) -> str:
    return KINDS[i % len(KINDS)]


def scenario(kind: str, speech: bytes) -> Scenario:
    if kind == "voice":
        steps: list[Step] = []
        for _ in VOICE_REPLIES:
            steps += [wait_prompt(), speak(speech)]
        return Scenario("answer", ring_s=0.1, steps=steps)
    if kind == "keys":
        steps = []
        for k in KEY_REPLIES:
            steps += [wait_prompt(), dtmf(k)]
        return Scenario("answer", ring_s=0.1, steps=steps)
    if kind == "human":
        return Scenario("answer", ring_s=0.1, steps=[wait_prompt(), speak(speech)], queue_s=0.2)
    if kind == "hangs_up":
        return Scenario("answer", ring_s=0.1, steps=[wait_prompt(), hang_up()])
    return Scenario(kind, ring_s=0.1)


async def prompt_audio(text: str) -> bytes:
    return beep(12 * len(text))  # a prompt stand-in, ~12 ms of tone per character


class Line:
    """The far end: the fake Asterisk with a scenario per number, and the recognizer's plan per call."""

    def __init__(self, pbx: FakeAsterisk, residents: list[dict[str, Any]], speech: bytes) -> None:
        self.pbx = pbx
        self.kind = {r["phone"].lstrip("+"): plan(i) for i, r in enumerate(residents)}
        self.speech = speech
        pbx.scenario_for = lambda number: scenario(self.kind[number], speech)

    def reply(self, call_id: str, n: int) -> str:
        number = next(f["number"] for f in self.pbx.of("dial") if f["uniqueid"] == call_id)
        if self.kind[number] == "human":
            return "我要找人工"
        assert self.kind[number] == "voice"
        return VOICE_REPLIES[n] if n < len(VOICE_REPLIES) else ""


def media_runner(recognizer: ScriptedRecognizer, audio_dir: Path, telephony: AsteriskTelephony) -> Any:
    """As outreach.commands.campaign.build_media_runner wires it, with a staffed human queue."""
    settings = RunnerSettings(frame_period_s=PERIOD, audio_dir=str(audio_dir), media_timeout_s=5.0)

    async def run(session: DialogSession, media: MediaSession) -> tuple[ScreeningResult, float]:
        t0 = asyncio.get_running_loop().time()
        media = TransferOnEnd(media, lambda: session.result, telephony, "outreach-human,s", lambda: True)
        report = await run_dialog(session, media, recognizer, prompt_audio, settings)
        return report.result, asyncio.get_running_loop().time() - t0

    return run


@pytest.fixture
async def pbx() -> AsyncIterator[FakeAsterisk]:
    async with FakeAsterisk(auth_delay_s=0.05, frame_period_s=PERIOD) as fake:
        yield fake


def engine_settings(lines: int, **kw: Any) -> EngineSettings:
    """Fast engine settings; the trunk allows `lines` channels and 20 calls a second."""
    base: dict[str, Any] = {"worker": "w-ast", "originate_timeout_s": 0.6, "slice_s": 0.5}
    base.update(kw)
    base["trunks"] = (TrunkSpec("default", "PJSIP/{number}@trunk", lines, 20.0),)
    return EngineSettings(**base)


def setup_campaign(store: Store, residents: list[dict[str, Any]], lines: int) -> db.CampaignInfo:
    now = dt.datetime.now(dt.UTC)
    db.add_residents(store, residents, now=now)
    d = campaign_defaults(CFG)
    info, _ = db.create_campaign(
        store, name="live", script_path=SCRIPT, timezone="UTC", windows={"daily": ["00:00-24:00"]}, holidays=[],
        pacing={"max_concurrent_calls": lines, "calls_per_second": 20.0}, retry_policy=d["retry_policy"], now=now,
    )
    db.set_state(store, "live", "running", now=now)
    return info


def attempts(store: Store) -> list[CallAttempt]:
    with store.session() as s:
        return list(s.scalars(select(CallAttempt).order_by(CallAttempt.id)))


async def run_until_everyone_was_called(engine: CampaignEngine, store: Store, n: int, within_s: float = 90.0) -> None:
    stop = asyncio.Event()
    service = asyncio.create_task(serve(engine, stop=stop, tick_s=0.2, lease_sweep_s=3600))
    try:
        async with asyncio.timeout(within_s):
            while True:
                await asyncio.sleep(0.3)
                rows = await asyncio.to_thread(attempts, store)
                if len({a.contact_id for a in rows if a.outcome != "dialing"}) >= n and engine.inflight == 0:
                    break
    finally:
        stop.set()
        await asyncio.wait_for(service, 30)


@pytest.mark.slow
async def test_a_campaign_of_38_residents_through_asterisk(pbx: FakeAsterisk, sqlite_url: str, tmp_path: Path) -> None:
    store = Store(sqlite_url)
    residents = synthetic_residents(N, seed=11)
    lines = 8
    setup_campaign(store, residents, lines)
    line = Line(pbx, residents, espeak("shi4 de5"))
    recognizer = ScriptedRecognizer(line.reply, delay_s=0.02)
    telephony = AsteriskTelephony(fast_settings(pbx, limits=Limits(frame_period_s=PERIOD, stall_s=2.0)))
    pbx.audiosocket = lambda: ("127.0.0.1", telephony.audiosocket_port)
    engine = CampaignEngine(store, telephony, WallClock(), build_sessions(CFG),
                            settings=engine_settings(lines),
                            media_runner=media_runner(recognizer, tmp_path / "answers", telephony))
    async with telephony:
        await run_until_everyone_was_called(engine, store, N)
    rows = attempts(store)
    with store.session() as s:
        records = {r.attempt_id: r for r in s.scalars(select(ScreeningRecord))}
    store.close()
    assert len(rows) == N, Counter(a.outcome for a in rows)
    by_kind: dict[str, list[CallAttempt]] = {}
    dialled = {f["uniqueid"]: f["number"] for f in pbx.of("dial")}
    for a in rows:
        by_kind.setdefault(line.kind[dialled[a.channel_id]], []).append(a)
    outcomes = {k: Counter(a.outcome for a in v) for k, v in by_kind.items()}
    assert outcomes["voice"] == Counter({"answered": 9}) and outcomes["keys"] == Counter({"answered": 9})
    assert outcomes["busy"] == Counter({"busy": 4}) and outcomes["no_answer"] == Counter({"no_answer": 4})
    assert outcomes["invalid"] == Counter({"invalid_number": 3})
    assert outcomes["switched_off"] == Counter({"congestion": 3})
    assert outcomes["unanswered"] == Counter({"no_answer": 2})
    assert outcomes["hangs_up"] == Counter({"hung_up_early": 2})
    assert outcomes["human"] == Counter({"answered": 2})
    # Asking for a person while the queue is staffed: redirected by AMI, the record says transferred.
    assert {a.dialog_outcome for a in by_kind["human"]} == {"transferred"}
    assert {records[a.id].outcome for a in by_kind["human"]} == {"transferred"}
    assert sorted(f["uniqueid"] for f in pbx.of("redirect")) == sorted(a.channel_id for a in by_kind["human"])
    assert len(pbx.of("in_queue")) == 2
    # Causes in the supervisor's words.
    assert {a.hangup_cause for a in by_kind["busy"]} == {"用户忙（Q.850 17，Reason 5）"}
    assert {a.hangup_cause for a in by_kind["invalid"]} == {"空号（Q.850 1，Reason 0）"}
    assert {a.hangup_cause for a in by_kind["switched_off"]} == {"关机或不在服务区（Q.850 20，Reason 0）"}
    assert all(a.hangup_cause and a.hangup_cause.startswith("无人接听") for a in by_kind["no_answer"] + by_kind["unanswered"])
    # Every answered call completed its screening through AudioSocket, by voice and by keys.
    for kind in ("voice", "keys"):
        for a in by_kind[kind]:
            rec = records[a.id]
            assert rec.outcome == "completed", (kind, rec.outcome)
            assert {k: v["value"] for k, v in rec.answers.items()} == EXPECTED
    assert len(recognizer.log) == 9 * len(VOICE_REPLIES) + 2  # only the speakers reached the recognizer
    # What Asterisk saw: one dial per attempt, never more channels than lines, every call hung up.
    assert all(n == 1 for n in pbx.dials_per_channel_id().values()) and len(pbx.dials_per_channel_id()) == N
    assert pbx.peak_channels("trunk") <= lines
    async with asyncio.timeout(10):  # the transferred ones leave the human queue when the agent hangs up
        while pbx.channels:  # noqa: ASYNC110 - the fake's channel table
            await asyncio.sleep(0.05)
    ends = Counter(f["why"] for f in pbx.of("audiosocket_end"))
    assert ends["robot hung up"] == 18 and ends["caller hung up"] == 2 and ends["redirected"] == 2, ends


@pytest.mark.slow
async def test_ami_cut_mid_campaign_reconnects_never_redials_and_charges_no_one(
    pbx: FakeAsterisk, sqlite_url: str, tmp_path: Path
) -> None:
    store = Store(sqlite_url)
    residents = synthetic_residents(24, seed=12)
    kinds = {r["phone"].lstrip("+"): ("keys" if i % 3 else "invalid") for i, r in enumerate(residents)}
    speech = espeak("shi4 de5")
    pbx.scenario_for = lambda number: scenario(kinds[number], speech)
    lines = 6
    setup_campaign(store, residents, lines)
    telephony = AsteriskTelephony(fast_settings(pbx, limits=Limits(frame_period_s=PERIOD, stall_s=2.0)))
    pbx.audiosocket = lambda: ("127.0.0.1", telephony.audiosocket_port)
    recognizer = ScriptedRecognizer(lambda call_id, n: "", delay_s=0.02)
    engine = CampaignEngine(store, telephony, WallClock(), build_sessions(CFG),
                            settings=engine_settings(lines, breaker_first_s=0.3, breaker_max_s=1.0),
                            media_runner=media_runner(recognizer, tmp_path / "answers", telephony))
    stop = asyncio.Event()
    async with telephony:
        service = asyncio.create_task(serve(engine, stop=stop, tick_s=0.2, exit_when_complete=True))
        cuts = 0
        async with asyncio.timeout(120):
            while cuts < 3:  # cut AMI three times while calls are ringing and talking
                await asyncio.sleep(0.05)
                if len(pbx.of("dial")) >= 4 + 6 * cuts and pbx.channels:
                    pbx.drop_connections()
                    cuts += 1
            await service
    with store.session() as s:
        contacts = list(s.scalars(select(CampaignContact)))
    rows = attempts(store)
    state = db.get_campaign(store, "live").state
    store.close()
    assert state == "completed"
    # 0 double dials: every channel id Asterisk saw was dialled once, and Originates match dials.
    dials = pbx.dials_per_channel_id()
    assert dials and all(n == 1 for n in dials.values())
    assert sum(header(a, "Action") == "Originate" for a in pbx.actions) == len(dials)
    # 0 attempts charged for the cuts: nothing failed, and each contact's count is its real attempts.
    assert not [a for a in rows if a.outcome == "failed"]
    real = Counter(a.contact_id for a in rows if a.outcome not in ("not_dialed",))
    assert all(c.attempts == real[c.id] for c in contacts), [(c.attempts, real[c.id]) for c in contacts]
    finals = Counter(c.final_outcome for c in contacts)
    assert finals == Counter({"completed": 16, "invalid_number": 8}), finals
    assert telephony.ami.disconnects >= 3


@pytest.mark.slow
async def test_two_workers_share_one_asterisk_its_trunk_limit_and_the_residents(sqlite_url: str, tmp_path: Path) -> None:
    """Two workers (one per core in production), each with its own AudioSocket port, on one Asterisk whose
    robot context connects to ${AUDIOSOCKET_ADDR}: every call's audio reaches the worker that placed it,
    the trunk's limit holds in total, each worker keeps to its own cap, and no resident is dialled twice."""
    async with FakeAsterisk(auth_delay_s=0.05, frame_period_s=PERIOD, per_call_address=True) as pbx:
        store = Store(sqlite_url)
        residents = synthetic_residents(20, seed=13)
        pbx.scenario_for = lambda number: scenario("keys", b"")
        lines = 6
        setup_campaign(store, residents, lines)
        recognizer = ScriptedRecognizer(lambda call_id, n: "", delay_s=0.02)
        workers = []
        for name in ("w-a", "w-b"):
            tel = AsteriskTelephony(fast_settings(pbx, audiosocket_advertise_host="127.0.0.1",
                                                  limits=Limits(frame_period_s=PERIOD, stall_s=2.0)))
            engine = CampaignEngine(store, tel, WallClock(), build_sessions(CFG),
                                    settings=engine_settings(lines, worker=name, max_calls=lines // 2),
                                    media_runner=media_runner(recognizer, tmp_path / name, tel))
            workers.append((name, tel, engine))
        async with workers[0][1], workers[1][1]:
            stop = asyncio.Event()
            services = [asyncio.create_task(serve(e, stop=stop, tick_s=0.2, lease_sweep_s=3600)) for _, _, e in workers]
            try:
                async with asyncio.timeout(90):
                    while True:
                        await asyncio.sleep(0.3)
                        rows = await asyncio.to_thread(attempts, store)
                        done = {a.contact_id for a in rows if a.outcome != "dialing"}
                        if len(done) >= len(residents) and all(e.inflight == 0 for _, _, e in workers):
                            break
            finally:
                stop.set()
                await asyncio.wait_for(asyncio.gather(*services), 30)
            ports = {name: tel.audiosocket_port for name, tel, _ in workers}
        rows = attempts(store)
        with store.session() as s:
            records = {r.attempt_id: r for r in s.scalars(select(ScreeningRecord))}
            finals = Counter(c.final_outcome for c in s.scalars(select(CampaignContact)))
        store.close()
        assert finals == Counter({"completed": len(residents)}), finals
        assert len(rows) == len(residents) and all(records[a.id].outcome == "completed" for a in rows)
        assert {a.worker for a in rows} == {"w-a", "w-b"}  # both took calls
        # Each call's Originate named its own worker's AudioSocket port, and the call's audio went there.
        originates = {header(a, "ChannelId"): a for a in pbx.actions if header(a, "Action") == "Originate"}
        for a in rows:
            assert f"AUDIOSOCKET_ADDR=127.0.0.1:{ports[a.worker]}" in originates[a.channel_id]["Variable"]
        assert all(n == 1 for n in pbx.dials_per_channel_id().values())
        assert pbx.peak_channels("trunk") <= lines  # the trunk's limit, in total over both workers
        by_worker = {a.channel_id: a.worker for a in rows}
        up: Counter[str] = Counter()
        peak: Counter[str] = Counter()
        for _, kind, f in pbx.events:  # what Asterisk saw, in order: each worker's own calls at once
            if kind in ("dial", "hangup") and f["uniqueid"] in by_worker:
                w = by_worker[f["uniqueid"]]
                up[w] += 1 if kind == "dial" else -1
                peak[w] = max(peak[w], up[w])
        assert peak["w-a"] == peak["w-b"] == lines // 2, peak
