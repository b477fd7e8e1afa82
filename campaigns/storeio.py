"""Store work off the event loop: one thread, bounded retries (results.store.store_retry).

The loop that carries call audio must never wait on the database (SQLite waits up to 30 s on a lock,
PostgreSQL on the network). Every store call of the dialer goes through `StoreIO.run`, which hands it
to a single worker thread (one writer: SQLite allows no more, and ordering stays simple) and retries
transient errors there with backoff. In virtual time (no live audio) `inline=True` runs the call on the
spot, with the same retries.

Why a thread and not SQLAlchemy's asyncio engine: the results layer is synchronous SQLAlchemy shared
with the CLI and the web service; aiosqlite itself runs every call in a thread, so the thread here
costs the same and keeps one implementation of each query (docs/campaigns.md).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

from results.store import store_retry

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")


class StoreIO:
    def __init__(self, *, inline: bool = False, attempts: int = 4) -> None:
        self.inline = inline
        self.attempts = attempts
        self._pool: ThreadPoolExecutor | None = None if inline else ThreadPoolExecutor(1, thread_name_prefix="store")

    def _call(self, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
        result: T = store_retry(self.attempts)(fn, *args, **kwargs)
        return result

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """`fn(*args, **kwargs)` in the store thread, retried on transient errors; raises the last one."""
        if self._pool is None:
            return self._call(fn, args, kwargs)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(self._call, fn, args, kwargs))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
