"""The project's one retry policy (tenacity): bounded, jittered exponential backoff.

Every retry in the project waits the same way ("full jitter": a uniform wait between 0 and
`first_s * 2**(n-1)`, capped at `max_s`), so many workers or connections that failed together do not
come back in step. Store operations (`results.store.store_retry`, in a thread) and the AMI reconnect
(`dialer.asterisk.ami`, on the event loop) use it. It lives in the lowest layer so that every package
may use it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tenacity import AsyncRetrying, Retrying, retry_if_exception, stop_after_attempt, stop_never
from tenacity.wait import wait_base, wait_random_exponential


def backoff(first_s: float, max_s: float) -> wait_base:
    """The wait between tries: jittered exponential from `first_s`, at most `max_s`."""
    return wait_random_exponential(multiplier=first_s, max=max_s)


def _kwargs(retry_on: Callable[[BaseException], bool], attempts: int | None, first_s: float, max_s: float,
            extra: dict[str, Any]) -> dict[str, Any]:
    return {"retry": retry_if_exception(retry_on),
            "stop": stop_never if attempts is None else stop_after_attempt(attempts),
            "wait": backoff(first_s, max_s), "reraise": True, **extra}


def retrying(retry_on: Callable[[BaseException], bool], *, attempts: int | None, first_s: float, max_s: float,
             **extra: Any) -> Retrying:
    """Blocking retries (they sleep: use them off the event loop). `attempts` None: until it works.
    The last error is re-raised."""
    return Retrying(**_kwargs(retry_on, attempts, first_s, max_s, extra))


def async_retrying(retry_on: Callable[[BaseException], bool], *, attempts: int | None, first_s: float,
                   max_s: float, **extra: Any) -> AsyncRetrying:
    """The same policy for coroutines on the event loop (its waits are `asyncio.sleep`)."""
    return AsyncRetrying(**_kwargs(retry_on, attempts, first_s, max_s, extra))
