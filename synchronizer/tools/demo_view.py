"""What the `demo` command shows while it runs: a live `rich` view, or plain lines.

Why separate from `demo`: the orchestration (simulator, instance, catch-up, verify) must
be readable on its own, and the view is pure presentation of one `Snapshot` taken twice a
second. The live view is for a person at a terminal; plain lines (every few seconds) are
for logs, CI and pipes, where cursor movements would be garbage.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field

from rich.console import Group, RenderableType
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

TOP_MODULES = 12
"""Set/module pairs listed in the live view (the largest first)."""


@dataclass(slots=True)
class Snapshot:
    """Everything the view shows, gathered at one moment."""

    elapsed: float = 0.0
    remaining: float | None = None
    state: str = "starting"
    pods_in_cluster: int = 0
    cluster_version: int = 0
    active: int = 0
    deleted: int = 0
    full_syncs: int = 0
    events: int = 0
    events_per_second: float = 0.0
    lag: float | None = None
    parked: int = 0
    queued: int = 0
    churn: dict[str, int] = field(default_factory=dict)
    modules: list[tuple[str, str, int]] = field(default_factory=list)
    status_url: str = ""
    metrics_url: str = ""
    last_error: str | None = None


class RowReader:
    """A read-only SQLite connection to the demo's CMDB file, for counts the store lacks.

    The store's interface has no GROUP BY by set/module (the service never needs one), so
    the view asks the file directly; WAL lets it read while the instance writes.
    """

    def __init__(self, path: str) -> None:
        self._conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5,
                                     check_same_thread=False)

    def counts(self, cluster: str) -> tuple[dict[str, int], list[tuple[str, str, int]]]:
        """Rows by state, and Active rows by (set, module), largest first."""
        states = dict(self._conn.execute(
            "SELECT state, COUNT(*) FROM pods WHERE cluster_id = ? GROUP BY state", (cluster,)))
        modules = self._conn.execute(
            "SELECT set_name, module_name, COUNT(*) AS n FROM pods WHERE cluster_id = ?"
            " AND state = 'Active' GROUP BY set_name, module_name ORDER BY n DESC, 1, 2",
            (cluster,)).fetchall()
        return states, [(s, m, n) for s, m, n in modules]

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()


class FirstSyncBar:
    """The progress bar of the first full sync: pods written against pods listed."""

    def __init__(self) -> None:
        self.progress = Progress(
            TextColumn("[bold]first full sync[/]"), BarColumn(bar_width=40),
            MofNCompleteColumn(), TextColumn("pods written"), TimeElapsedColumn(),
        )
        self._task = self.progress.add_task("sync", total=None)

    def update(self, snap: Snapshot) -> None:
        """Move the bar to the snapshot's counts."""
        total = max(snap.pods_in_cluster, 1)
        self.progress.update(self._task, total=total, completed=min(snap.active, total))


def _fmt_lag(lag: float | None) -> str:
    return "-" if lag is None else f"{lag:.2f} s"


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
    stats.add_row("[dim]state[/]", f"[bold green]{snap.state}[/]" if snap.state == "watching"
                  else f"[bold yellow]{snap.state}[/]",
                  "[dim]cluster version[/]", f"{snap.cluster_version:,}")
    stats.add_row("[dim]events/s[/]", f"{snap.events_per_second:.1f}",
                  "[dim]events seen[/]", f"{snap.events:,}")
    stats.add_row("[dim]rows active[/]", f"{snap.active:,}",
                  "[dim]rows deleted[/]", f"{snap.deleted:,}")
    stats.add_row("[dim]pods in cluster[/]", f"{snap.pods_in_cluster:,}",
                  "[dim]full syncs[/]", str(snap.full_syncs))
    stats.add_row("[dim]lag[/]", _fmt_lag(snap.lag),
                  "[dim]parked / queued[/]", f"{snap.parked:,} / {snap.queued:,}")
    churn = snap.churn
    stats.add_row("[dim]churn[/]", f"{churn.get('created', 0)} created, "
                  f"{churn.get('updated', 0)} updated", "",
                  f"{churn.get('moved', 0)} moved, {churn.get('deleted', 0)} deleted")
    parts.append(stats)
    if snap.last_error:
        parts.append(Text(f"last error: {snap.last_error}", style="red"))
    modules = Table(title="active pods by set / module", title_justify="left",
                    header_style="bold", box=None, padding=(0, 2))
    modules.add_column("set")
    modules.add_column("module")
    modules.add_column("pods", justify="right")
    for set_name, module_name, n in snap.modules[:TOP_MODULES]:
        modules.add_row(set_name, module_name, f"{n:,}")
    if len(snap.modules) > TOP_MODULES:
        rest = sum(n for _, _, n in snap.modules[TOP_MODULES:])
        modules.add_row("[dim]…[/]", f"[dim]{len(snap.modules) - TOP_MODULES} more[/]",
                        f"[dim]{rest:,}[/]")
    parts += [Text(""), modules]
    return Group(*parts)


def plain_line(snap: Snapshot, first_sync_done: bool) -> str:
    """One plain progress line for logs and pipes."""
    if not first_sync_done:
        return (f"demo: {snap.elapsed:.0f}s first full sync: {snap.active}/"
                f"{snap.pods_in_cluster} pods written")
    return (f"demo: {snap.elapsed:.0f}s {snap.state}: rows active={snap.active} "
            f"deleted={snap.deleted} events/s={snap.events_per_second:.1f} "
            f"lag={_fmt_lag(snap.lag)} parked={snap.parked} queued={snap.queued} "
            f"set/module pairs={len(snap.modules)}")
