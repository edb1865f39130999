"""The bk-cmdb pusher's tables in the CMDB, shared by the MySQL and SQLite implementations.

The pusher (`synchronizer.bkcmdb.pusher`) reads and writes through three protocols; the
CMDB store holds what they need, next to the kind tables, so the state that makes a push
resumable lives exactly as long and as safely as the rows it pushes:

- `DesiredState` reads the kind tables themselves (`pods`, `nodes`, `namespaces`,
  `workloads`): every row of a cluster (`rows`), or those above a resource_version
  (`changed_since`), served by the index `<table>_cluster_resource_version` that
  migration step 3 adds to each kind table.
- `Ledger` is `bkcmdb_ledger`: one row per object the product made in bk-cmdb, primary key
  `(cluster_id, kind, uid)`; `parents` is JSON text.
- `TaskQueue`/`TaskBoard` are `bkcmdb_tasks`: one row per (cluster, job), the MWS pattern of
  DESIGN §8. `next_start` and the other times are epoch seconds (DOUBLE/REAL) from the
  caller's clock, because instances compare them; the `token` fences a claim.

This module holds what both dialects share (the DDL of step 3 is in `bkcmdb_schema`): the
column lists and the conversions between rows and the pusher's values (`LedgerEntry`,
`Task`). `BkCmdbTables` is what a store's `bkcmdb_tables(clock=...)` ability returns (see
`api.BkCmdbStore`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from synchronizer.bkcmdb.pusher.desired import DesiredState, Table
from synchronizer.bkcmdb.pusher.ledger import Ledger, LedgerEntry, ObjectKind
from synchronizer.bkcmdb.pusher.tasks import Task
from synchronizer.kinds import NAMESPACES, NODES, PODS, WORKLOADS, Kind

from .bkcmdb_schema import NAME_LIMIT, RESULT_LIMIT
from .rows import clean_text, column_names

Clock = Callable[[], float]

KIND_OF: Mapping[Table, Kind] = {Table.NAMESPACES: NAMESPACES, Table.NODES: NODES,
                                 Table.WORKLOADS: WORKLOADS, Table.PODS: PODS}
"""The kind whose table a pusher `Table` names."""
TAKE_CANDIDATES = 8
"""Due tasks a taker tries in one transaction when the server cannot skip locked rows."""

LEDGER_COLUMNS = ("cluster_id", "kind", "uid", "bk_id", "digest", "name", "namespace",
                  "bk_kind", "parents")
TASK_COLUMNS = ("cluster_id", "job", "next_start", "token", "owner", "attempts", "pending",
                "result", "error", "started_at", "finished_at")


# -- rows and values ------------------------------------------------------------------------------

def desired_columns(table: Table) -> tuple[str, ...]:
    """The columns `DesiredState` returns for `table` (every column of the kind's table)."""
    return column_names(KIND_OF[table])


def entry_values(cluster: str, entry: LedgerEntry) -> tuple[Any, ...]:
    """`LEDGER_COLUMNS` values of an entry (texts cut to their columns)."""
    parents = orjson.dumps({k: int(v) for k, v in sorted(entry.parents.items())}).decode()
    return (cluster, str(entry.kind), entry.uid, int(entry.bk_id), entry.digest,
            clean_text(entry.name, NAME_LIMIT), clean_text(entry.namespace, NAME_LIMIT),
            entry.bk_kind, parents)


def entry_of(row: Sequence[Any]) -> LedgerEntry:
    """A ledger entry from `kind, uid, bk_id, digest, name, namespace, bk_kind, parents`."""
    kind, uid, bk_id, digest, name, namespace, bk_kind, parents = row
    return LedgerEntry(kind=ObjectKind(kind), uid=uid, bk_id=int(bk_id), digest=digest,
                       name=name, namespace=namespace, bk_kind=bk_kind,
                       parents={str(k): int(v) for k, v in orjson.loads(parents).items()})


def task_of(row: Sequence[Any]) -> Task:
    """A task from a row of `TASK_COLUMNS`."""
    (cluster, job, next_start, token, owner, attempts, pending, result, error, started,
     finished) = row
    return Task(cluster=cluster, job=job, next_start=float(next_start), token=int(token),
                owner=owner, attempts=int(attempts), pending=int(pending), result=result,
                error=error, started_at=None if started is None else float(started),
                finished_at=None if finished is None else float(finished))


def outcome(result: str, error: str) -> tuple[str, str]:
    """A run's result and error as stored (cut to their columns, lone surrogates escaped)."""
    return clean_text(result, RESULT_LIMIT), clean_text(error, RESULT_LIMIT)


@dataclass(frozen=True, slots=True, kw_only=True)
class BkCmdbTables:
    """The pusher's three stores on one CMDB; `tasks` is a `TaskQueue` and a `TaskBoard`."""

    desired: DesiredState
    ledger: Ledger
    tasks: Any
    """`TaskQueue` and `TaskBoard` (and `clusters(job)`) in one object."""


__all__ = ["KIND_OF", "LEDGER_COLUMNS", "TAKE_CANDIDATES", "TASK_COLUMNS", "BkCmdbTables",
           "Clock", "desired_columns", "entry_of", "entry_values", "outcome", "task_of"]
