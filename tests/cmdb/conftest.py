"""Fixtures of the CMDB store suite: an opened store on each backend."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from cmdb_support import PodsView

from synchronizer.cmdb import open_store


@pytest.fixture
async def store(store_dsn: str) -> AsyncIterator[PodsView]:
    """A store with its tables created, on a fresh database (SQLite file or MariaDB),
    seen through its pods table."""
    opened = await open_store(store_dsn)
    try:
        yield PodsView(opened)
    finally:
        await opened.close()
