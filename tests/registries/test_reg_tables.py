"""The registries' tables on both backends, and writers of one topology on two instances.

`write_topology` is an optimistic lock: a write names the version it read and fails if
another writer got there first. Two services sharing one CMDB (as two instances do) are
made to interleave at the worst moment - the first has read the row and is verifying its
participants when the second writes - and the first must start over and win whole.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from synchronizer.admin.document import canonical, digest, parse
from synchronizer.admin.service import TopologyService
from synchronizer.cmdb import CmdbStore, open_store
from synchronizer.cmdb.schema import pending
from synchronizer.kube import ClusterEndpoint
from synchronizer.registries.spec import ClusterSpec
from synchronizer.registries.tables import DECLARED, REMOVED, RegistryTables
from synchronizer.summaries import LocalSummaries, Summary


@pytest.fixture
async def store(store_dsn: str) -> AsyncIterator[CmdbStore]:
    opened = await open_store(store_dsn)
    try:
        yield opened
    finally:
        await opened.close()


async def test_topology_rows_are_written_only_at_the_version_read(store: CmdbStore) -> None:
    tables = RegistryTables(store)
    assert await tables.topologies() == [] and await tables.topology("t") is None
    assert await tables.write_topology("t", '{"clusters": []}', "d1", 0)
    assert not await tables.write_topology("t", '{"clusters": [1]}', "d2", 0)  # exists now
    assert not await tables.write_topology("t", "x", "d3", 7)  # not the version stored
    assert await tables.write_topology("t", None, "deleted", 1)  # a delete keeps the row
    row = await tables.topology("t")
    assert row is not None and (row.version, row.body, row.digest) == (2, None, "deleted")
    assert await tables.write_topology("t", "again", "d4", 2)
    assert await tables.versions() == {"t": 3}


async def test_registered_clusters_are_marked(store: CmdbStore) -> None:
    tables = RegistryTables(store)
    await tables.mark([("a", "crd"), ("b", "http")], DECLARED)
    await tables.mark([("a", "")], REMOVED)
    await tables.mark([], DECLARED)
    assert await tables.registered() == {"a": REMOVED, "b": DECLARED}


def test_schema_steps_are_applied_by_set_not_by_the_highest() -> None:
    """A database that has step 4 but not step 3 (the two were written on separate
    branches: a database migrated by one release may meet the other's step later) still
    gets step 3."""
    assert [s.version for s in pending({1, 2, 4, 5, 6})] == [3]
    assert [s.version for s in pending({1, 2, 3, 4, 5, 6})] == []
    assert [s.version for s in pending({1, 4})] == [2, 3, 5, 6]
    assert [s.version for s in pending(set())] == [1, 2, 3, 4, 5, 6]


class NoFleet:
    """A fleet where nothing is assigned (these tests look at storage only)."""

    def placement(self) -> dict[str, tuple[str, ClusterSpec | None]]:
        return {}

    @property
    def summaries(self) -> LocalSummaries:
        async def nothing() -> dict[str, Summary]:
            return {}
        return LocalSummaries("x", nothing)


def body(*ids: str) -> bytes:
    return orjson.dumps({"clusters": [{"id": i, "biz_id": 1, "server": f"http://h/{i}"}
                                      for i in ids]})


async def test_writers_on_two_instances_serialise_on_the_version(store: CmdbStore) -> None:
    """TEST-MATRIX row 45: across instances."""
    entered, release = asyncio.Event(), asyncio.Event()
    verified: list[str] = []

    async def held_probe(endpoint: ClusterEndpoint) -> None:
        verified.append(f"a:{endpoint.id}")
        entered.set()
        await release.wait()

    async def quick_probe(endpoint: ClusterEndpoint) -> None:
        verified.append(f"b:{endpoint.id}")

    def service(probe: Any) -> TopologyService:
        return TopologyService(tables=lambda: RegistryTables(store), view=NoFleet(),
                               probe=probe, deploy_timeout=0.01)

    first = asyncio.create_task(service(held_probe).put("t1", body("c1")))
    await entered.wait()  # the first has read "no topology" and is verifying
    second = await service(quick_probe).put("t1", body("c2"))
    assert second.status == 200
    release.set()
    outcome = await first
    assert outcome.status == 200, outcome.body
    assert verified == ["a:c1", "b:c2", "a:c1"]  # the first started over after the second
    row = await RegistryTables(store).topology("t1")
    assert row is not None and row.version == 2
    assert row.digest == digest(canonical(parse(body("c1"))))
    assert [c["id"] for c in orjson.loads(row.body)["clusters"]] == ["c1"]
