"""The campaign engine end to end over in-memory media sessions: the real store, engine pipeline, voice
runner (VAD, endpointer, DTMF, barge-in), dialog engine and NLU; a scripted recognizer and scripted
callers speaking real 20 ms frames (5x faster than real time)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from asr.base import ScriptedRecognizer
from campaigns.clock import ScaledClock
from campaigns.engine import CampaignEngine, EngineSettings
from campaigns.service import make_prompt_preparer
from dialer.base import OriginateRequest
from dialer.media import MediaSession
from dialer.memory import MemoryCaller, MemoryTelephony
from dialogs.runner import RunnerSettings, run_dialog
from dialogs.types import DialogSession, ScreeningResult
from outreach.commands.campaign import build_sessions
from outreach.config import Config
from results import campaigns as db
from results.models import CallAttempt, ScreeningRecord
from results.store import Store
from tests.asr_audio import beep
from tests.test_campaign_engine import START, make_campaign
from tests.test_runner import speech

__all__ = ["speech"]

PERIOD = 0.004
REPLIES = ["是的", "没有", "没有", "没有", "做了"]


@pytest.fixture
def store(sqlite_url: str) -> Iterator[Store]:
    s = Store(sqlite_url)
    yield s
    s.close()


def answering(speech: bytes) -> Any:
    """A resident who answers each of five questions with `speech` once the robot is quiet."""

    async def resident(c: MemoryCaller, request: OriginateRequest) -> None:
        for _ in range(5):
            await c.wait_for_silence(frames=15, timeout_s=30)
            if c.hung_up:
                return
            await c.play(speech)

    return resident


async def run_to_completion(eng: CampaignEngine, telephony: MemoryTelephony, store: Store, *, within_s: float) -> None:
    """Tick the engine (as the service does) until campaign c1 completed."""
    async with telephony:
        await eng.start()
        async with asyncio.timeout(within_s):
            while db.get_campaign(store, "c1").state != "completed":
                await eng.step()
                await asyncio.sleep(0.05)
        await eng.stop()


async def test_a_campaign_by_voice_over_memory_media(store: Store, speech: bytes, tmp_path: Path) -> None:
    make_campaign(store, n=4, windows={"daily": ["00:00-24:00"]},
                  pacing={"max_concurrent_calls": 4, "calls_per_second": 20.0})
    db.set_state(store, "c1", "running", now=START)

    telephony = MemoryTelephony(answering(speech), frame_period_s=PERIOD)
    asr = ScriptedRecognizer(lambda call_id, n: REPLIES[n % len(REPLIES)], delay_s=0.016)
    settings = RunnerSettings(frame_period_s=PERIOD, audio_dir=str(tmp_path / "answers"))

    async def prompt_audio(text: str) -> bytes:
        return beep(25 * len(text))

    async def media_runner(session: DialogSession, media: MediaSession) -> tuple[ScreeningResult, float]:
        t0 = asyncio.get_running_loop().time()
        report = await run_dialog(session, media, asr, prompt_audio, settings)
        return report.result, asyncio.get_running_loop().time() - t0

    order: list[tuple[str, str]] = []
    rendered: list[str] = []
    sessions = build_sessions(Config())

    async def render(script: Any, contacts: list[Any]) -> None:  # the TTS cache's batch render stands here
        rendered.extend(script.render_prompts(c)[0] for c in contacts)

    preparer = make_prompt_preparer(sessions, render)

    async def prepare(info: db.CampaignInfo, claim: db.Claim) -> None:
        await preparer(info, claim)
        order.append(("prepared", claim.channel_id))

    real_originate = telephony.originate

    async def originate(request: OriginateRequest) -> Any:
        order.append(("dialled", request.channel_id))
        return await real_originate(request)

    telephony.originate = originate  # type: ignore[method-assign]
    clock = ScaledClock(START, 1.0)
    eng = CampaignEngine(store, telephony, clock, sessions, media_runner=media_runner, prepare_prompts=prepare,
                         settings=EngineSettings(worker="voice", slice_s=0.5))
    await run_to_completion(eng, telephony, store, within_s=60)
    with store.session() as s:
        rows = list(s.scalars(select(CallAttempt)))
        records = list(s.scalars(select(ScreeningRecord)))
    assert len(rows) == 4 and all(a.outcome == "answered" and a.dialog_outcome == "completed" for a in rows)
    assert len(records) == 4
    for r in records:
        assert {k: v["value"] for k, v in r.answers.items()} == {
            "identity_confirmed": True, "has_symptoms": False, "traveled": False, "contact_case": False,
            "second_test_done": True,
        }
    assert all(c.robot_hung_up for c in telephony.callers.values())
    # the voice runner's turn records (latency) reach the stored attempt
    assert all(any(t.get("latency_ms") is not None for t in a.turns) for a in rows)
    # ... and feed /metrics' recognition and understanding histograms
    from outreach.web.metrics import metrics_response
    from tests.test_latency_metrics import histogram, stored_latencies

    text = bytes(metrics_response(store).body).decode()
    for key, name in (("asr_ms", "outreach_asr_latency_seconds"), ("nlu_ms", "outreach_nlu_latency_seconds")):
        samples = stored_latencies(store, key)
        assert len(samples) >= 4 * 5, key  # five answers per call
        assert histogram(text, name) == (len(samples), pytest.approx(sum(samples)))
    assert all(c.heard_frames > 0 for c in telephony.callers.values())
    # each contact's prompts were rendered before its call was placed
    for kind, ch in order:
        if kind == "dialled":
            assert order.index(("prepared", ch)) < order.index(("dialled", ch))
    assert len(rendered) == 4 and all(isinstance(t, str) and t for t in rendered)


async def test_the_prepare_step_renders_the_contacts_prompt_that_the_resident_hears(
    store: Store, speech: bytes, tmp_path: Path
) -> None:
    """`outreach run`'s wiring on a voice backend: the prepare step renders each contact's greeting with
    their name (real espeak-ng into the TTS cache) before the call is dialled, and the audio the resident
    hears is that rendered prompt, played by the production prompt player from the cache."""
    from outreach.commands.campaign import build_engine_settings, build_prompt_preparer
    from tts.cache import PromptCache, PromptPlayer, contact_prompts, make_engine

    cfg = Config.model_validate({"telephony": {"backend": "asterisk"},
                                 "tts": {"engine": "espeak", "cache_dir": str(tmp_path / "prompts")}})
    make_campaign(store, n=3, windows={"daily": ["00:00-24:00"]},
                  pacing={"max_concurrent_calls": 3, "calls_per_second": 20.0})
    db.set_state(store, "c1", "running", now=START)
    sessions = build_sessions(cfg)
    preparer = build_prompt_preparer(cfg, sessions)
    assert preparer is not None
    tts_engine, cache = make_engine(cfg.tts), PromptCache(cfg.tts.cache_dir)
    texts: dict[str, list[str]] = {}

    async def prepare(info: db.CampaignInfo, claim: db.Claim) -> None:
        texts[claim.channel_id] = contact_prompts(sessions.script(info), [claim.contact_mapping()])
        await preparer(info, claim)

    telephony = MemoryTelephony(answering(speech), frame_period_s=PERIOD, keep_heard=True)
    ready_at_dial: dict[str, bool] = {}
    real_originate = telephony.originate

    async def originate(request: OriginateRequest) -> Any:
        ready_at_dial[request.channel_id] = all(cache.has(tts_engine, t) for t in texts[request.channel_id])
        return await real_originate(request)

    telephony.originate = originate  # type: ignore[method-assign]
    asr = ScriptedRecognizer(lambda call_id, n: REPLIES[n % len(REPLIES)], delay_s=0.016)
    player = PromptPlayer(cfg.tts)
    run_settings = RunnerSettings(frame_period_s=PERIOD, audio_dir=str(tmp_path / "answers"))

    async def media_runner(session: DialogSession, media: MediaSession) -> tuple[ScreeningResult, float]:
        report = await run_dialog(session, media, asr, player.audio, run_settings)
        return report.result, 0.0

    settings = build_engine_settings(cfg, worker="voice", slice_s=0.5)
    assert settings.prepare_lead_s > 0
    # 23 templated prompts per resident with this script: a lead long enough for a busy 2-core machine
    # (20 s of campaign time = 5 wall seconds here)
    settings.prepare_lead_s = 20.0
    eng = CampaignEngine(store, telephony, ScaledClock(START, 4.0), sessions, media_runner=media_runner,
                         prepare_prompts=prepare, settings=settings)
    await run_to_completion(eng, telephony, store, within_s=90)
    assert len(texts) == 3
    greetings = {}
    for channel_id, rendered in texts.items():
        assert ready_at_dial[channel_id], "the contact's prompts were rendered before the call was dialled"
        greeting = greetings[channel_id] = next(t for t in rendered if "随访，请问是" in t)
        pcm = cache.get(tts_engine, greeting)
        assert pcm is not None and len(pcm) > 3200
        heard = bytes(telephony.callers[channel_id].heard)
        assert pcm[:3200] in heard  # the resident heard the rendered greeting with their own name
    assert len(set(greetings.values())) == 3  # one greeting per resident: their names differ
