"""Record builders shared by the CMDB store tests.

`variant` picks a wholly different value for every stored column, so a test can check that
an accepted update changed every column and a refused one changed none.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from reconciler import TOMBSTONE, ClusterId, ObjectKey, Record, State
from synchronizer.cmdb.rows import column_names
from synchronizer.kinds import PODS
from synchronizer.kinds.descriptor import row_checksum

CLUSTER = ClusterId("cluster-a")
BASE = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
CONTENT = tuple(c for c in column_names(PODS) if c not in ("cluster_id", "uid"))
"""Every column a write may change."""
FIELDS = tuple(c.name for c in PODS.stored)
DEFAULTS = {c.name: c.default for c in PODS.stored}


class PodsView:
    """A store seen through its `pods` table: the engine's Store plus the store's own calls.

    The suite predates kinds and writes pods throughout; this keeps its tests about the
    rule, not about which object offers which method.
    """

    def __init__(self, store: Any) -> None:
        self.store = store
        self.pods = store.table(PODS)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    async def apply(self, cluster: Any, batch: Any, *, fence: Any = None) -> Any:
        return await self.pods.apply(cluster, batch, fence=fence)

    async def load_index(self, cluster: Any) -> Any:
        return await self.pods.load_index(cluster)

    async def reset_versions(self, cluster: Any, *, fence: Any = None) -> Any:
        return await self.pods.reset_versions(cluster, fence=fence)

    async def rows(self, cluster: Any) -> Any:
        return await self.pods.rows(cluster)

    async def count_by_state(self, cluster: Any) -> Any:
        return await self.store.count_by_state(PODS, cluster)


def at(version: int) -> datetime:
    """A distinct observation time per version, with microseconds."""
    return BASE + timedelta(seconds=version, microseconds=version)


def fields(key: str, variant: int = 0, **override: Any) -> dict[str, Any]:
    """Projected fields of pod `key`, every one depending on `variant`."""
    out: dict[str, Any] = {
        "namespace": f"ns-{variant}",
        "name": f"{key}-name-{variant}",
        "biz_id": 100 + variant,
        "set_name": f"set-{variant}",
        "module_name": f"module-{variant}",
        "node_name": f"node-{variant}",
        "host_ip": f"10.0.{variant}.1",
        "pod_ip": f"10.1.{variant}.7",
        "phase": f"Phase{variant}",
        "labels": orjson.dumps({"app": key, "v": variant},
                               option=orjson.OPT_SORT_KEYS).decode(),
        "containers": orjson.dumps([{"name": "c", "image": f"img:{variant}",
                                     "container_id": f"cid{variant}"}]).decode(),
        "workload_kind": f"Kind{variant}",
        "workload_name": f"workload-{variant}",
        "truncated": f"col{variant}",
    }
    out.update(override)
    return out


def active(key: str, version: int, variant: int = 0, **override: Any) -> Record:
    """A live record whose checksum covers its fields, as the projection builds it."""
    f = fields(key, variant, **override)
    return Record(key=ObjectKey(key), version=version, checksum=row_checksum(f, PODS.stored),
                  query_at=at(version), fields=f)


def deleted(key: str, version: int, variant: int | None = None) -> Record:
    """A delete: a watch DELETED (with fields) or a bare full-sync tombstone (variant None)."""
    f = {} if variant is None else fields(key, variant)
    return Record(key=ObjectKey(key), version=version, checksum=TOMBSTONE,
                  query_at=at(version), state=State.DELETED, fields=f)


def expected(record: Record, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """The row `record` leaves when it is written in full (over `base` for a delete)."""
    row = dict(base) if base is not None else {
        c: DEFAULTS[c] for c in FIELDS} | {"cluster_id": CLUSTER, "uid": record.key}
    if base is None or not record.deleted:
        row.update({c: record.fields.get(c, DEFAULTS[c]) for c in FIELDS})
    row.update(resource_version=record.version, checksum=record.checksum,
               query_at=record.query_at, state=record.state.value)
    return row
