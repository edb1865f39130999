"""A cluster as a registry describes it: who it is, how to reach it, what to sync.

Registries (static config, SyncCluster resources, the BCS cluster manager, the admin API's
topologies) yield `ClusterSpec`s, not bare ids: whoever is assigned a cluster must be able
to connect to it, whichever registry it came from. The master publishes each assigned
cluster's spec with the assignment, so a member acts on exactly the spec the master
assigned (no race between a member's own read of a registry and the master's).

Secrets never travel in a spec. A spec carries a `SecretRef` — where the secret lives (the
local config's entry for this cluster, an environment variable, a file, a Kubernetes
Secret, the CMDB's topology table) — and the member that needs it resolves it locally
(`resolve.SecretResolver`). ZooKeeper data, logs and /status only ever see the reference.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson


class Origin(enum.StrEnum):
    """Which registry a spec came from; also the fixed precedence order (first wins)."""

    STATIC = "static"
    CRD = "crd"
    HTTP = "http"
    TOPOLOGY = "topology"


PRECEDENCE: tuple[Origin, ...] = tuple(Origin)
"""Static config, then SyncCluster resources, then the BCS registry, then topologies."""


@dataclass(frozen=True, slots=True)
class SecretRef:
    """Where a secret lives; never the secret itself.

    `source`: `static` (the config file's entry for cluster `name`), `env` (variable
    `name`), `file` (path `name`), `secret` (`namespace/name#key` in the home cluster),
    `registry` (the HTTP registry's own token), `topology` (`topology/cluster` in the CMDB).
    """

    source: str
    name: str

    def __str__(self) -> str:
        return f"{self.source}:{self.name}"


IDENTITY_ONLY = ("origin", "source")
"""Fields that say where a spec came from, not how to reach or sync its cluster: two specs
differing only in them are equal (`==`, `fingerprint`), so a cluster that moves from one
registry to another with the same connection keeps its running reconcilers (the controller
restarts a cluster only when its assigned spec is unequal)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterSpec:
    """One cluster to sync: identity, connection (secrets by reference), kinds, origin.

    Equality ignores `IDENTITY_ONLY` (see there). `hold` marks a cluster its registry
    declares but that must not run now (a paused SyncCluster, a BCS cluster that is not
    RUNNING, a SyncCluster whose spec is unusable): it is never assigned, and since it is
    still declared, its rows are never treated as those of a removed cluster.
    """

    id: str
    biz_id: int = 0
    origin: Origin = field(default=Origin.STATIC, compare=False)
    server: str | None = None
    token: SecretRef | None = None
    ca_file: str | None = None
    insecure: bool = False
    kubeconfig: str | None = None
    kubeconfig_ref: SecretRef | None = None
    """A kubeconfig held as a secret (a SyncCluster's `kubeconfigSecret`)."""
    context: str | None = None
    in_cluster: bool = False
    kinds: tuple[str, ...] | None = None
    """The kinds to sync; None: `sync.kinds`."""
    source: str = field(default="", compare=False)
    """Where in its registry it came from (`namespace/name` of a SyncCluster, a topology)."""
    extra: Mapping[str, Any] = field(default_factory=dict)
    hold: str | None = None
    """Why this declared cluster must not run now; None: run it."""

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (no secrets: references only)."""
        doc = asdict(self)
        for key in ("token", "kubeconfig_ref"):
            ref = getattr(self, key)
            doc[key] = None if ref is None else {"source": ref.source, "name": ref.name}
        doc["kinds"] = list(self.kinds) if self.kinds is not None else None
        doc["extra"] = dict(self.extra)
        return doc

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> ClusterSpec:
        """The inverse of `to_json`; unknown keys are ignored (a newer master's fields)."""
        known = set(cls.__dataclass_fields__)
        values = {k: v for k, v in doc.items() if k in known}
        for key in ("token", "kubeconfig_ref"):
            ref = values.get(key)
            values[key] = SecretRef(ref["source"], ref["name"]) if ref else None
        if values.get("kinds") is not None:
            values["kinds"] = tuple(values["kinds"])
        values["origin"] = Origin(values.get("origin", Origin.STATIC))
        values["extra"] = dict(values.get("extra") or {})
        return cls(**values)

    @property
    def fingerprint(self) -> str:
        """Changes whenever anything that needs a reconnect or other kinds changes (never
        with `IDENTITY_ONLY` alone)."""
        doc = self.to_json()
        for key in IDENTITY_ONLY:
            doc.pop(key, None)
        canonical = orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)
        return hashlib.blake2b(canonical, digest_size=8).hexdigest()

    @property
    def where(self) -> str:
        """How it is reached, for logs and /status (never a secret)."""
        if self.server:
            return self.server
        if self.kubeconfig or self.kubeconfig_ref:
            return f"kubeconfig {self.kubeconfig or self.kubeconfig_ref}"
        return "in-cluster"
