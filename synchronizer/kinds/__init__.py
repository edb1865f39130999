"""The kinds the CMDB keeps: one `Kind` descriptor each, and the registry of them.

Role: everything kind-specific (API resources, table, columns, projection) as values, so
that the Kubernetes source, the stores, `verify`, `/status` and the demo take a kind as a
parameter. Inputs: object JSON. Outputs: `reconciler.Record`s whose fields are a table's
columns. The next stage is the engine (per cluster and resource), then the stores.
"""

from __future__ import annotations

from collections.abc import Iterable

from .descriptor import (
    TRUNCATED,
    BadObject,
    Column,
    ColumnType,
    Kind,
    Projection,
    Resource,
    head_of,
    uid_of,
)
from .namespaces import NAMESPACES
from .nodes import NODES
from .pods import PODS
from .workloads import WORKLOADS

KINDS: dict[str, Kind] = {k.name: k for k in (NAMESPACES, NODES, WORKLOADS, PODS)}
"""Every kind by name, in dependency order (a pod refers to a namespace, node, workload)."""
ALL = tuple(KINDS)
"""The default of `sync.kinds`: all of them."""


def kinds(names: Iterable[str]) -> tuple[Kind, ...]:
    """The kinds named, in the registry's order; KeyError names an unknown one."""
    wanted = set(names)
    unknown = wanted - set(KINDS)
    if unknown:
        raise KeyError(f"unknown kind {', '.join(sorted(unknown))} (known: {', '.join(ALL)})")
    return tuple(k for n, k in KINDS.items() if n in wanted)


__all__ = [
    "ALL",
    "KINDS",
    "NAMESPACES",
    "NODES",
    "PODS",
    "TRUNCATED",
    "WORKLOADS",
    "BadObject",
    "Column",
    "ColumnType",
    "Kind",
    "Projection",
    "Resource",
    "head_of",
    "kinds",
    "uid_of",
]
