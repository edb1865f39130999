"""What the `demo` command shows while it runs: a live `rich` view, or plain lines.

Why separate from `demo`: the orchestration (simulator, instance, catch-up, verify) must
be readable on its own, and the view is pure presentation of one `Snapshot` taken twice a
second. The live view is for a person at a terminal; plain lines (every few seconds) are
for logs, CI and pipes, where cursor movements would be garbage.

The view has a table per kind (objects in the cluster, active and deleted rows, events,
the reconcilers' state), the pods grouped by the workload that owns them and by CMDB
set/module, and the churn split into real changes and status-only noise — the noise
(node heartbeats, ready-replica counts, restart counts) is there to show that it writes
nothing.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rich.console import Group, RenderableType
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from .demo_bkcmdb import BkLine

TOP = 8
"""Workloads and set/module pairs listed in the live view (the largest first)."""
TABLES = ("namespaces", "nodes", "workloads", "pods")


@dataclass(slots=True)
class KindLine:
    """One kind's numbers (a table of the CMDB, fed by one or more resources)."""

    in_cluster: int = 0
    active: int = 0
    deleted: int = 0
    events: int = 0
    state: str = "starting"


@dataclass(slots=True)
class Snapshot:
    """Everything the view shows, gathered at one moment."""

    elapsed: float = 0.0
    remaining: float | None = None
    state: str = "starting"
    cluster_version: int = 0
    kinds: dict[str, KindLine] = field(default_factory=lambda: {t: KindLine() for t in TABLES})
    full_syncs: int = 0
    synced_kinds: int = 0
    total_kinds: int = 0
    events_per_second: float = 0.0
    lag: float | None = None
    parked: int = 0
    queued: int = 0
    real: int = 0
    noise: int = 0
    workloads: list[tuple[str, str, int]] = field(default_factory=list)
    modules: list[tuple[str, str, int]] = field(default_factory=list)
    status_url: str = ""
    metrics_url: str = ""
    last_error: str | None = None
    bkcmdb: BkLine | None = None
    """bk-cmdb's side, with `demo --bkcmdb`."""

    @property
    def pods_in_cluster(self) -> int:
        """Pods the simulated cluster holds now."""
        return self.kinds["pods"].in_cluster

    @property
    def active(self) -> int:
        """Active rows over every table."""
        return sum(k.active for k in self.kinds.values())


class RowReader:
    """A read-only SQLite connection to the demo's CMDB file, for counts the store lacks.

    The store's interface has no GROUP BY (the service never needs one), so the view asks
    the file directly; WAL lets it read while the instance writes.
    """

    def __init__(self, path: str) -> None:
        self._conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5,
                                     check_same_thread=False)

    def counts(self, cluster: str) -> dict[str, dict[str, int]]:
        """Rows by state, per table."""
        out: dict[str, dict[str, int]] = {}
        for table in TABLES:
            out[table] = dict(self._conn.execute(
                f"SELECT state, COUNT(*) FROM {table} WHERE cluster_id = ? GROUP BY state",
                (cluster,)))
        return out

    def groups(self, cluster: str) -> tuple[list[tuple[str, str, int]],
                                            list[tuple[str, str, int]]]:
        """Active pods by (workload kind, name) and by (set, module), largest first."""
        def top(a: str, b: str) -> list[tuple[str, str, int]]:
            return [(x, y, n) for x, y, n in self._conn.execute(
                f"SELECT {a}, {b}, COUNT(*) AS n FROM pods WHERE cluster_id = ? AND"
                f" state = 'Active' GROUP BY {a}, {b} ORDER BY n DESC, {a}, {b}", (cluster,))]
        return top("workload_kind", "workload_name"), top("set_name", "module_name")

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()


class FirstSyncBar:
    """The progress bar of the first full sync: rows written against objects listed."""

    def __init__(self) -> None:
        self.progress = Progress(
            TextColumn("first full sync"), BarColumn(),
            MofNCompleteColumn(), TextColumn("rows written"), TimeElapsedColumn(),
        )
        self._task = self.progress.add_task("sync", total=1)

    def update(self, snap: Snapshot) -> None:
        """Move the bar to the snapshot's numbers."""
        total = max(sum(k.in_cluster for k in snap.kinds.values()), 1)
        self.progress.update(self._task, total=total, completed=min(snap.active, total))


def _fmt_lag(lag: float | None) -> str:
    return "-" if lag is None else f"{lag:.2f} s"


def _state(state: str) -> str:
    return (f"[bold green]{state}[/]" if state in ("watching", "in sync")
            else f"[bold yellow]{state}[/]")


def _kinds_table(snap: Snapshot) -> Table:
    table = Table(title="kinds", title_justify="left", header_style="bold", box=None,
                  padding=(0, 2))
    for name, justify in (("kind", "left"), ("in cluster", "right"), ("rows active", "right"),
                          ("rows deleted", "right"), ("events", "right"), ("state", "left")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for name, line in snap.kinds.items():
        table.add_row(name, f"{line.in_cluster:,}", f"{line.active:,}", f"{line.deleted:,}",
                      f"{line.events:,}", _state(line.state))
    return table


def _top(title: str, columns: tuple[str, str], rows: list[tuple[str, str, int]]) -> Table:
    table = Table(title=title, title_justify="left", header_style="bold", box=None,
                  padding=(0, 2))
    table.add_column(columns[0])
    table.add_column(columns[1])
    table.add_column("pods", justify="right")
    for a, b, n in rows[:TOP]:
        table.add_row(a or "[dim](none)[/]", b or "[dim](bare pod)[/]", f"{n:,}")
    if len(rows) > TOP:
        rest = sum(n for _, _, n in rows[TOP:])
        table.add_row("[dim]…[/]", f"[dim]{len(rows) - TOP} more[/]", f"[dim]{rest:,}[/]")
    return table


def live_view(snap: Snapshot, bar: FirstSyncBar | None) -> RenderableType:
    """The whole live screen for one snapshot (`bar` while the first sync runs)."""
    head = Text.assemble(
        ("bkcmdb-synchronizer demo", "bold"), "  ",
        (f"{snap.elapsed:5.0f} s", "cyan"),
        (f"  ({snap.remaining:.0f} s left)" if snap.remaining is not None else "  (Ctrl-C stops)",
         "dim"),
    )
    urls = Text.assemble(("status page ", "dim"), (snap.status_url, "underline"),
                         ("   metrics ", "dim"), (snap.metrics_url, "underline"))
    parts: list[RenderableType] = [head, urls, Text("")]
    if bar is not None:
        bar.update(snap)
        parts.append(bar.progress)
        return Group(*parts)
    stats = Table.grid(padding=(0, 3))
    for _ in range(4):
        stats.add_column()
    stats.add_row("[dim]state[/]", _state(snap.state),
                  "[dim]cluster version[/]", f"{snap.cluster_version:,}")
    stats.add_row("[dim]events/s[/]", f"{snap.events_per_second:.1f}",
                  "[dim]lag[/]", _fmt_lag(snap.lag))
    stats.add_row("[dim]churn: real changes[/]", f"{snap.real:,}",
                  "[dim]status-only noise (writes nothing)[/]", f"{snap.noise:,}")
    stats.add_row("[dim]parked / queued[/]", f"{snap.parked:,} / {snap.queued:,}",
                  "[dim]full syncs[/]", str(snap.full_syncs))
    bk = snap.bkcmdb
    if bk is not None:
        stats.add_row("[dim]bk-cmdb objects[/]", f"{bk.objects:,}  {_state(bk.state)}",
                      "[dim]bk-cmdb pending / requests/s[/]",
                      f"{bk.pending:,} / {bk.requests_per_second:.1f}")
    parts.append(stats)
    if bk is not None and bk.last_error:
        parts.append(Text(f"bk-cmdb: {bk.last_error}", style="red"))
    if snap.last_error:
        parts.append(Text(f"last error: {snap.last_error}", style="red"))
    parts += [Text(""), _kinds_table(snap), Text(""),
              _top("active pods by workload", ("kind", "workload"), snap.workloads), Text(""),
              _top("active pods by set / module", ("set", "module"), snap.modules)]
    return Group(*parts)


def plain_line(snap: Snapshot, first_sync_done: bool) -> str:
    """One plain progress line for logs and pipes."""
    if not first_sync_done:
        return (f"demo: {snap.elapsed:.0f}s first full sync: {snap.synced_kinds}/"
                f"{snap.total_kinds} kinds synced, {snap.active} rows written")
    rows = " ".join(f"{name}={line.active}" for name, line in snap.kinds.items())
    bk = snap.bkcmdb
    pushed = "" if bk is None else (f" bkcmdb={bk.state} bk_objects={bk.objects}"
                                    f" bk_pending={bk.pending}"
                                    f" bk_requests/s={bk.requests_per_second:.1f}")
    return (f"demo: {snap.elapsed:.0f}s {snap.state}: active rows {rows} "
            f"events/s={snap.events_per_second:.1f} lag={_fmt_lag(snap.lag)} "
            f"parked={snap.parked} queued={snap.queued} real={snap.real} noise={snap.noise}"
            f"{pushed}")
