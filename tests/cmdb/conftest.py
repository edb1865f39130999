"""Fixtures of the CMDB store suite: an opened store on each backend, and on MariaDB in
each formulation of the merge rule.

MySQL/MariaDB stores write the rule in one of two formulations (docs/designs/007-mysql8.md):
"variables" (what `upsert=auto` picks on MariaDB) and "staged" (what it picks on MySQL 8).
Without a MySQL 8 server here, the staged one is forced on MariaDB with `upsert=staged`,
so that every test of this suite holds both to the same rule, counts and faults.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from cmdb_support import PodsView, with_option

from synchronizer.cmdb import open_store

STORES = ("sqlite", "mysql", "mysql-staged")
"""`mysql` is the DSN as an operator writes it (auto: variables on MariaDB)."""


@pytest.fixture(params=STORES)
def store_dsn(request: pytest.FixtureRequest) -> str:
    """Each store-suite test runs once per backend and, on MariaDB, per formulation."""
    backend, _, upsert = str(request.param).partition("-")
    dsn = str(request.getfixturevalue(f"{backend}_dsn"))
    return with_option(dsn, "upsert", upsert) if upsert else dsn


@pytest.fixture(params=["auto", "staged"])
def mariadb_dsn(request: pytest.FixtureRequest, mysql_dsn: str) -> str:
    """A fresh MariaDB database, in each formulation (for the MariaDB-only tests)."""
    return with_option(mysql_dsn, "upsert", str(request.param))


@pytest.fixture
async def store(store_dsn: str) -> AsyncIterator[PodsView]:
    """A store with its tables created, on a fresh database (SQLite file or MariaDB),
    seen through its pods table."""
    opened = await open_store(store_dsn)
    try:
        yield PodsView(opened)
    finally:
        await opened.close()
