"""Fixtures of the tools suite: a simulated Kubernetes API server on loopback.

Everything is real: the simulator serves HTTP on 127.0.0.1, instances write to SQLite
files or MariaDB databases, and the CLI runs as a subprocess (see `tools_support.cli`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from synchronizer.simulator import Simulator


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    """A started simulator with no clusters yet (tests add and populate their own)."""
    simulator = Simulator(bookmark_interval=0.2, seed=7)
    await simulator.start("127.0.0.1", 0)
    try:
        yield simulator
    finally:
        await simulator.stop()
