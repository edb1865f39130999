"""Pacing a stream of changes on the loop clock: "N changes at R per second".

Why a module: every churn (Pods; each kind; each kind of noise) needs the same loop, and
getting it right once matters: changes are made in bursts between yields to the event
loop (at most `BURST` changes or `SLICE` seconds), so the HTTP server in the same loop
keeps serving; a short lag behind the rate is caught up, but a run more than a second
behind (an overloaded machine) drops its backlog rather than starving the server, and
counts that in `lagged`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from .wire import SimError

BURST = 200
"""Most changes made between yields to the loop."""
SLICE = 0.005
"""Most seconds spent changing between yields, so requests are served between slices."""


class Progress(Protocol):
    """What a paced run reports as it goes."""

    done: int
    lagged: int
    running: bool
    error: str | None


async def paced(step: Callable[[], object], progress: Progress, *, events: int | None,
                rate: float | None) -> None:
    """Call `step` `events` times (None: until cancelled) at `rate` per second (None or 0:
    flat out), counting in `progress`; a `SimError` from a step (a raced key, a no-op)
    still counts as an attempted change. Any other error is recorded and re-raised."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    try:
        while events is None or progress.done < events:
            left = BURST if events is None else min(BURST, events - progress.done)
            if rate:
                due = int((loop.time() - start) * rate) + 1 - progress.done
                if due <= 0:
                    await asyncio.sleep((progress.done + 1) / rate - (loop.time() - start))
                    continue
                if due > max(rate, BURST):  # more than a second behind: overloaded, so
                    start = loop.time() - progress.done / rate  # forget the backlog
                    progress.lagged += 1
                n = min(due, left)
            else:
                n = left
            slice_end = loop.time() + SLICE
            for _ in range(n):
                if loop.time() > slice_end:
                    break
                try:
                    step()
                except SimError:
                    pass
                progress.done += 1
            await asyncio.sleep(0)
    except Exception as exc:  # reported through the admin API, not lost in a task
        progress.error = repr(exc)
        raise
    finally:
        progress.running = False
