"""Fixtures of the CMDB store suite: an opened store on each backend."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from synchronizer.cmdb import MySQLStore, SQLiteStore, open_store


@pytest.fixture
async def store(store_dsn: str) -> AsyncIterator[MySQLStore | SQLiteStore]:
    """A store with its tables created, on a fresh database (SQLite file or MariaDB)."""
    opened = await open_store(store_dsn)
    try:
        yield opened
    finally:
        await opened.close()
