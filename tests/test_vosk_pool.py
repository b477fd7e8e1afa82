"""The Vosk decoding pool serves an ended utterance (final result, cancel) before every call's bulk audio."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable

import pytest

from asr.base import AsrError
from asr.vosk_asr import BULK, URGENT, DecodePool


def _job(order: list[str], name: str) -> Callable[[], str]:
    def run() -> str:
        order.append(name)
        return name

    return run


async def _blocked_pool() -> tuple[DecodePool, threading.Event, list[str]]:
    """A one-thread pool whose thread is busy until the event is set; jobs append their name when run."""
    pool = DecodePool(1, name="test")
    gate = threading.Event()
    order: list[str] = []
    started = threading.Event()

    def hold() -> None:
        started.set()
        gate.wait(10)

    pool.submit(hold)
    await asyncio.to_thread(started.wait, 10)
    return pool, gate, order


async def test_urgent_jobs_go_before_bulk_audio_and_bulk_keeps_its_order() -> None:
    pool, gate, order = await _blocked_pool()
    jobs = [pool.submit(_job(order, n), BULK) for n in ("a1", "a2", "a3")]
    final = pool.submit(_job(order, "final"), URGENT)
    gate.set()
    await asyncio.gather(*(j.future for j in [*jobs, final]))
    assert order == ["final", "a1", "a2", "a3"]
    pool.shutdown()


async def test_an_escalated_job_runs_once_and_before_the_bulk_queued_ahead_of_it() -> None:
    pool, gate, order = await _blocked_pool()
    first = pool.submit(_job(order, "other call"), BULK)
    mine = pool.submit(_job(order, "my last chunk"), BULK)
    pool.escalate(mine, URGENT)
    pool.escalate(mine, URGENT)  # twice: still one run
    gate.set()
    assert await mine.future == "my last chunk" and await first.future == "other call"
    assert order == ["my last chunk", "other call"]
    assert pool.pending() == 0
    pool.shutdown()


async def test_a_failing_job_reaches_its_caller_and_shutdown_drops_what_waits() -> None:
    pool, gate, _ = await _blocked_pool()

    def boom() -> None:
        raise RuntimeError("decoder broke")

    failing = pool.submit(boom, URGENT)
    waiting = pool.submit(lambda: None, BULK)
    gate.set()
    with pytest.raises(RuntimeError, match="decoder broke"):
        await failing.future
    await waiting.future
    gate.clear()
    started = threading.Event()

    def hold() -> bool:
        started.set()
        return gate.wait(10)

    blocker = pool.submit(hold)
    await asyncio.to_thread(started.wait, 10)
    left = pool.submit(lambda: None, BULK)
    pool.shutdown(wait=False)  # drops the waiting job at once; the running one finishes
    assert pool.pending() == 0
    gate.set()
    await blocker.future
    with pytest.raises(asyncio.CancelledError):
        await left.future
    with pytest.raises(AsrError, match="shut down"):
        pool.submit(lambda: None)


@pytest.mark.skipif(not hasattr(os, "setpriority"), reason="thread niceness is a Linux/Unix facility")
async def test_decoding_threads_run_at_a_lower_priority_than_the_loop_thread() -> None:
    me = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    pool = DecodePool(2, name="test", nice=5)

    def own_niceness() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    seen = await asyncio.gather(*(pool.submit(own_niceness).future for _ in range(4)))
    assert set(seen) == {min(19, me + 5)}
    # The loop's thread (and so every other thread the process starts) keeps its priority.
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == me
    plain = DecodePool(1, name="test")
    assert await plain.submit(own_niceness).future == me
    pool.shutdown()
    plain.shutdown()
