"""A token bucket on the loop clock: the pace every request to one bk-cmdb keeps.

Why a bucket and not a fixed interval: a full reconcile after an outage wants to send many
requests, and a bucket lets a burst go at once and then holds the long-run rate to what the
gateway allows (its default is 100 requests/s per app and resource). Time comes from an
injected clock and waits from an injected sleep (both the running loop's by default), so tests
observe the pacing without wall time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


def loop_clock() -> float:
    """The running loop's monotonic time."""
    return asyncio.get_running_loop().time()


class TokenBucket:
    """`rate` tokens a second, at most `burst` saved; `acquire()` takes one, waiting if need be."""

    def __init__(self, rate: float, burst: int, *, clock: Clock = loop_clock,
                 sleep: Sleep = asyncio.sleep) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("token bucket needs rate > 0 and burst >= 1")
        self.rate = rate
        self.burst = float(burst)
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(burst)
        self._stamp: float | None = None
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = self._clock()
        if self._stamp is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    async def acquire(self) -> float:
        """Take one token; returns how long it waited. Waiters are served in order."""
        async with self._lock:
            self._refill()
            waited = 0.0
            if self._tokens < 1.0:
                delay = (1.0 - self._tokens) / self.rate
                await self._sleep(delay)
                waited = delay
                self._refill()
                self._tokens = max(self._tokens, 1.0)
            self._tokens -= 1.0
            return waited
