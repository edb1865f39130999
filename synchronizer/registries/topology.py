"""The topology registry: the clusters of the admin API's topologies, from the CMDB.

Topologies are stored in the CMDB (`tables.RegistryTables`, table `topologies`) by
whichever instance answered the `PUT`; this registry reads them like any other: each
pull reads every stored (not deleted) document and yields its clusters as specs
(`origin = topology`, `source` = the topology's name, the token as
`SecretRef("topology", "<name>/<id>")`). So every instance and every restart sees them,
and the master assigns their clusters like any other.

`lookup` is the `topology` secret source: the member owning such a cluster reads its
token from the same row. `watch` is a master duty: a cheap probe of the rows' versions
every `POLL` seconds that kicks the pull when a topology was written (by any instance),
so the cluster is assigned within about a second of the `PUT`.

Two topologies naming the same cluster id: the admin API refuses that, but two instances
could store such topologies at the same moment; then the first by name wins and the
other is reported as a conflict for that id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from synchronizer.cmdb import CmdbStore

from .api import RegistryPull
from .resolve import SecretError
from .spec import ClusterSpec, Origin, SecretRef
from .tables import RegistryTables

log = logging.getLogger(__name__)

POLL = 1.0
"""Seconds between two probes of the topologies' versions by the master."""


def specs_of(name: str, doc: Mapping[str, Any]) -> list[ClusterSpec]:
    """The cluster specs a stored (normalised) topology document declares."""
    return [ClusterSpec(
        id=c["id"], biz_id=int(c["biz_id"]), origin=Origin.TOPOLOGY, server=c["server"],
        token=SecretRef("topology", f"{name}/{c['id']}") if c.get("token") else None,
        insecure=bool(c.get("insecure_skip_tls_verify")),
        kinds=tuple(c["kinds"]) if c.get("kinds") else None, source=name)
        for c in doc.get("clusters") or ()]


class TopologyRegistry:
    """Stored topologies as cluster specs; see the module docstring."""

    origin = Origin.TOPOLOGY

    def __init__(self, store: Callable[[], CmdbStore]) -> None:
        self._store = store
        self.conflicts: dict[str, str] = {}

    def _tables(self) -> RegistryTables:
        return RegistryTables(self._store())

    async def specs(self) -> Mapping[str, ClusterSpec]:
        """Every cluster of every stored topology (raises while the CMDB is not up)."""
        out: dict[str, ClusterSpec] = {}
        conflicts: dict[str, str] = {}
        for row in await self._tables().topologies():
            if row.body is None:
                continue
            for spec in specs_of(row.name, orjson.loads(row.body)):
                kept = out.get(spec.id)
                if kept is not None:
                    conflicts[spec.id] = (f"cluster {spec.id} is declared by topologies"
                                          f" {kept.source} and {spec.source}; using"
                                          f" {kept.source}")
                    continue
                out[spec.id] = spec
        self.conflicts = conflicts
        return out

    async def lookup(self, name: str) -> str:
        """The `topology` secret source: the token of `<topology>/<cluster id>`."""
        topology, _, cluster = name.partition("/")
        try:
            row = await self._tables().topology(topology)
        except LookupError as exc:
            raise SecretError(f"secret topology:{name}: {exc}") from None
        doc = orjson.loads(row.body) if row is not None and row.body else {}
        for c in doc.get("clusters") or ():
            if c.get("id") == cluster and c.get("token"):
                return str(c["token"])
        raise SecretError(f"secret topology:{name}: no token stored for cluster {cluster} in"
                          f" topology {topology}")

    async def watch(self, pull: RegistryPull) -> None:
        """Kick `pull` whenever a topology's version changes (a master duty)."""
        seen: dict[str, int] | None = None
        while True:
            with contextlib.suppress(Exception):  # the CMDB is someone else's to keep up
                versions = await self._tables().versions()
                if seen is not None and versions != seen:
                    pull.kick()
                seen = versions
            await asyncio.sleep(POLL)
