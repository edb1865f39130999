"""`verify`: list each cluster, compare it with the CMDB's rows, report drift. Read-only.

Why it exists: the synchronizer claims convergence; an operator (and the demo, and the
tests) need an independent check of that claim that trusts nothing the service keeps in
memory. For every kind the cluster syncs, and every resource of that kind, it lists the
cluster through the same `KubeSource` (one consistent snapshot at one resourceVersion,
restarted from scratch on 410 Expired), projects every object with the same projection,
reads the store's rows of that resource, and classifies:

- `missing`: a live object with no Active row (no row, or a tombstone);
- `stale`: an Active row whose checksum or stored columns differ from the object's
  projection. A row at an older resource_version with identical content is *not* stale:
  a full sync sends nothing for an object whose checksum is unchanged, so the row rightly
  keeps the version it was written at;
- `extra`: an Active row whose object is gone: the row a full sync would tombstone.

Counts are reported over all kinds, per kind (`kinds`), and per cluster.

The list and the rows cannot be read at one instant, so a Pod changed in between could
look like drift. The rows are read *after* the list: a row whose resource_version is
newer than the list's version then reflects a change made after the list (a Pod created,
changed or deleted since), and it is not counted as drift either way (the report counts
such rows as `newer_rows`). Every other row is judged against the list.

Nothing is written: no row or lease is changed, and a missing SQLite file is an error
rather than created. (Opening the store runs its schema check, as every open does: on a
MySQL database without the tables that creates them, empty.)

Exit codes: 0 no drift, 1 drift, 2 error (an unknown cluster id, an unreachable cluster
or CMDB: one line each on stderr).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

from reconciler import Expired, ReconcilerError, Record, State
from synchronizer.kinds import Kind
from synchronizer.registries import ClusterSpec, SecretError, SecretResolver, endpoint_of
from synchronizer.registries.static import spec_of, static_tokens
from synchronizer.settings import Settings, redact_dsn

from .check import PROG, first_line, scrub, sqlite_missing

DRIFTS = ("missing", "stale", "extra")
EXAMPLES = 5
"""Offending uids kept per drift and cluster, so a report stays readable at 100k drifts."""
LIST_ATTEMPTS = 5
"""Lists restarted after 410 Expired before giving up (each restart is a full list)."""
CONCURRENCY = 4
"""Clusters verified at once: each holds its listed objects in memory while compared."""


class VerifyError(Exception):
    """A cluster or the CMDB could not be read; the message is one line."""


def _zero() -> dict[str, int]:
    return dict.fromkeys(DRIFTS, 0)


@dataclass(slots=True)
class ClusterDrift:
    """The comparison of one cluster's objects, of every kind, with its rows."""

    cluster: str
    list_version: int = 0
    listed: int = 0
    active_rows: int = 0
    newer: int = 0
    """Rows changed after the list (version above the list's): not judged."""
    counts: dict[str, int] = field(default_factory=_zero)
    kinds: dict[str, dict[str, int]] = field(default_factory=dict)
    listed_by_kind: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[dict[str, Any]]] = field(
        default_factory=lambda: {k: [] for k in DRIFTS})

    def add(self, drift: str, kind: str, example: dict[str, Any]) -> None:
        """Count one drift of a kind, keeping the first few as examples."""
        self.counts[drift] += 1
        self.kinds.setdefault(kind, _zero())[drift] += 1
        if len(self.examples[drift]) < EXAMPLES:
            self.examples[drift].append({"kind": kind, **example})

    @property
    def drift(self) -> int:
        """Drifted rows of every kind."""
        return sum(self.counts.values())


@dataclass(slots=True)
class Report:
    """The outcome of one `verify` run over several clusters."""

    clusters: list[ClusterDrift] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)

    def total(self, drift: str) -> int:
        """Drift of one sort over every cluster checked."""
        return sum(c.counts[drift] for c in self.clusters)

    @property
    def exit_code(self) -> int:
        """2 on any error, else 1 on any drift, else 0."""
        if self.errors:
            return 2
        return 1 if any(c.drift for c in self.clusters) else 0

    def as_json(self) -> dict[str, Any]:
        """The `--json` document: integer totals, per kind and per cluster, bounded examples."""
        doc: dict[str, Any] = {drift: self.total(drift) for drift in DRIFTS}
        kinds: dict[str, dict[str, int]] = {}
        for c in self.clusters:
            for kind, counts in c.kinds.items():
                total = kinds.setdefault(kind, _zero())
                for drift, n in counts.items():
                    total[drift] += n
        doc["kinds"] = kinds
        doc["clusters"] = {c.cluster: dict(c.counts) for c in self.clusters}
        doc["cluster_kinds"] = {c.cluster: c.kinds for c in self.clusters}
        doc["examples"] = {c.cluster: {k: v for k, v in c.examples.items() if v}
                           for c in self.clusters if c.drift}
        doc["listed"] = {c.cluster: {"objects": c.listed, "kinds": c.listed_by_kind,
                                     "version": c.list_version, "active_rows": c.active_rows,
                                     "newer_rows": c.newer}
                         for c in self.clusters}
        if self.errors:
            doc["errors"] = dict(self.errors)
        return doc


def _differing(row: Mapping[str, Any], record: Record, columns: Iterable[str]) -> list[str]:
    """The stored columns of `row` that differ from the live projection (checksum too)."""
    fields = record.fields
    names = [c for c in columns if row.get(c) != fields.get(c)]
    if row.get("checksum") != record.checksum:
        names.append("checksum")
    return names


def compare(result: ClusterDrift, kind: Kind, version: int, live: Mapping[str, Record],
            rows: Iterable[Mapping[str, Any]]) -> None:
    """Classify one resource's rows against one list at `version` into `result`."""
    columns = [c.name for c in kind.stored]
    name = kind.name
    result.kinds.setdefault(name, _zero())
    result.listed += len(live)
    result.listed_by_kind[name] = result.listed_by_kind.get(name, 0) + len(live)
    result.list_version = max(result.list_version, version)
    seen: set[str] = set()
    for row in rows:
        uid = row["uid"]
        active = row["state"] == State.ACTIVE.value
        result.active_rows += active
        record = live.get(uid)
        if record is not None:
            seen.add(uid)
        if int(row["resource_version"]) > version:
            result.newer += 1
            continue
        where = {"uid": uid, "namespace": row.get("namespace"), "name": row.get("name")}
        if record is None:
            if active:
                result.add("extra", name, where)
        elif not active:
            result.add("missing", name, where | {"row": "Deleted"})
        else:
            differing = _differing(row, record, columns)
            if differing:
                result.add("stale", name, where | {"columns": differing})
    for uid, record in live.items():
        if uid not in seen:
            result.add("missing", name, {"uid": uid, "namespace": record.fields.get("namespace"),
                                         "name": record.fields.get("name")})


async def list_source(source: Any) -> tuple[int, dict[str, Record]]:
    """One consistent list as (version, records by uid); restart on Expired."""
    for attempt in range(1, LIST_ATTEMPTS + 1):
        live: dict[str, Record] = {}
        version: int | None = None
        try:
            async for page in source.list():
                version = page.version
                for record in page.records:
                    live[record.key] = record
        except Expired:
            if attempt == LIST_ATTEMPTS:
                raise
            continue
        if version is None:
            raise VerifyError("the list returned no page")
        return version, live
    raise AssertionError("unreachable")


async def verify_one(spec: ClusterSpec, settings: Settings, store: Any,
                     secrets: SecretResolver) -> ClusterDrift:
    """List each resource of a cluster, then read its rows (in that order: see the module)."""
    from synchronizer.clusters import kinds_of
    from synchronizer.kube import ClusterClient, KubeSource

    result = ClusterDrift(cluster=spec.id)
    try:
        endpoint = await endpoint_of(spec, secrets)
    except (SecretError, ValueError) as exc:
        raise VerifyError(first_line(exc)) from None
    client = ClusterClient(endpoint, watches=0)
    try:
        for kind in kinds_of(spec, settings):
            for resource in kind.resources:
                source = KubeSource(client, kind=kind, resource=resource, biz_id=spec.biz_id,
                                    page_size=settings.sync.page_size)
                try:
                    version, live = await list_source(source)
                except (ReconcilerError, VerifyError, ValueError, OSError) as exc:
                    detail = first_line(exc).removeprefix(f"cluster {spec.id}: ")
                    raise VerifyError(f"{redact_dsn(spec.where)}: {detail}") from None
                try:
                    rows = await store.table(kind, resource).rows(spec.id)
                except Exception as exc:  # the store's error, one line, no secret
                    raise VerifyError(f"cmdb: {first_line(exc)}") from None
                compare(result, kind, version, live, rows)
    finally:
        await client.aclose()
    return result


async def open_readonly_store(dsn: str) -> Any:
    """Open the CMDB for reading; raise `VerifyError` (one line, no password) if it fails.

    A missing SQLite file is an error, not something to create: verify never writes.
    """
    from synchronizer.cmdb import open_store

    shown = redact_dsn(dsn)
    missing, _ = sqlite_missing(dsn)
    if missing:
        raise VerifyError(f"cmdb.dsn: {shown}: no such database file")
    try:
        return await open_store(dsn, migrate=False)
    except Exception as exc:
        raise VerifyError(scrub(f"cmdb.dsn: cannot reach {shown}: {first_line(exc)}",
                                dsn)) from None


def selected(settings: Settings, clusters: list[str] | None) -> dict[str, ClusterSpec]:
    """The specs of the clusters asked for (all when None), in the order asked; a
    `VerifyError` naming every unknown id."""
    specs = {c.id: spec_of(c) for c in settings.clusters}
    wanted = list(dict.fromkeys(clusters)) if clusters else list(specs)
    unknown = [c for c in wanted if c not in specs]
    if unknown:
        known = ", ".join(specs) or "none"
        raise VerifyError(f"unknown cluster {', '.join(unknown)} (configured: {known})")
    return {c: specs[c] for c in wanted}


async def check_each(specs: Mapping[str, ClusterSpec],
                     check: Callable[[ClusterSpec], Awaitable[ClusterDrift]]) -> Report:
    """Check every cluster, `CONCURRENCY` at a time; a cluster whose check raises
    `VerifyError` is recorded in `Report.errors` and the others are still checked."""
    report = Report()
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(cluster_id: str) -> ClusterDrift | None:
        async with gate:
            try:
                return await check(specs[cluster_id])
            except VerifyError as exc:
                report.errors[cluster_id] = str(exc)
                return None

    results = await asyncio.gather(*(one(c) for c in specs))
    report.clusters = [r for r in results if r is not None]
    return report


async def run_verify(settings: Settings, clusters: list[str] | None = None,
                     store: Any = None) -> Report:
    """Verify the selected clusters (all when None); uses `store` or opens the CMDB.

    Raises `VerifyError` for an unknown cluster id or an unreachable CMDB; a cluster that
    cannot be listed is recorded in `Report.errors` and the others are still checked.
    """
    specs = selected(settings, clusters)
    secrets = SecretResolver(static=static_tokens(settings.clusters))
    own = store is None
    if own:
        store = await open_readonly_store(settings.cmdb.dsn.get_secret_value())
    try:
        return await check_each(specs, lambda spec: verify_one(spec, settings, store,
                                                               secrets))
    finally:
        if own:
            await store.close()


def render(report: Report, console: Console, *, title: str = "CMDB drift") -> None:
    """The human report: one table row per cluster and kind, then a few examples of each."""
    if not report.clusters:
        console.print(f"[red]error[/]: no cluster could be checked ({len(report.errors)} failed)")
        return
    table = Table(title=title, title_justify="left", header_style="bold")
    for name, justify in (("cluster", "left"), ("kind", "left"), ("objects", "right"),
                          ("missing", "right"), ("stale", "right"), ("extra", "right"),
                          ("result", "left")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for c in report.clusters:
        for kind, counts in c.kinds.items():
            drift = sum(counts.values())
            result = "[green]in sync[/]" if not drift else "[red]drift[/]"
            table.add_row(c.cluster, kind, f"{c.listed_by_kind.get(kind, 0):,}",
                          *(f"{counts[d]:,}" for d in DRIFTS), result)
    for cluster_id in report.errors:
        table.add_row(cluster_id, "", "", "", "", "", "[red]error[/]")
    console.print(table)
    for c in report.clusters:
        for drift in DRIFTS:
            for ex in c.examples[drift]:
                extra = ""
                if "columns" in ex:
                    extra = f" columns {', '.join(ex['columns'])}"
                elif "row" in ex:
                    extra = " (row is a tombstone)"
                where = f"{ex['namespace']}/{ex['name']}" if ex.get("namespace") else ex["name"]
                uid = f" uid {ex['uid']}" if ex.get("uid") else ""
                console.print(f"  {c.cluster} {drift} {ex['kind']}: {where}{uid}{extra}",
                              highlight=False, markup=False)
    totals = ", ".join(f"{report.total(d)} {d}" for d in DRIFTS)
    newer = sum(c.newer for c in report.clusters)
    if newer:
        console.print(f"[dim]{newer:,} row(s) changed after the list were not judged[/]")
    if report.errors:
        console.print(f"[red]error[/]: {len(report.errors)} cluster(s) could not be checked")
    elif report.exit_code == 0:
        console.print(f"[green]no drift[/]: {sum(c.listed for c in report.clusters):,} objects"
                      f" in {len(report.clusters)} cluster(s) match the CMDB")
    else:
        console.print(f"[red]drift[/]: {totals} ('extra' rows are the ones a full sync "
                      "would tombstone)")


async def verify_command(settings: Settings, clusters: list[str] | None = None,
                         as_json: bool = False) -> int:
    """The `verify` command: run, print (a table, or one JSON object), return the exit code."""
    try:
        report = await run_verify(settings, clusters)
    except VerifyError as exc:
        print(f"{PROG}: verify: {exc}", file=sys.stderr)
        return 2
    for cluster_id, error in report.errors.items():
        print(f"{PROG}: verify: cluster {cluster_id}: {error}", file=sys.stderr)
    if as_json:
        sys.stdout.write(orjson.dumps(report.as_json()).decode() + "\n")
    else:
        render(report, Console())
    return report.exit_code
