"""`verify --bkcmdb`: list each cluster, list what bk-cmdb holds for it, report drift.

The same question as `verify`, asked of the BlueKing CMDB instead of the tables, and
answered without trusting anything the pusher keeps (its ledger, its tables): each cluster
is listed through `KubeSource` exactly as `verify` lists it, bk-cmdb is listed through its
public API (pages of 500), and what bk-cmdb *should* hold is derived here from the live
objects by the contract's rules ("The BlueKing CMDB"), written independently of the
pusher's planner so that the two check each other:

- `api: kube` — the cluster (uid = the cluster id); every namespace; every node whose
  InternalIP is a host of the cluster's business; every Deployment, StatefulSet, DaemonSet,
  Job and CronJob; every pod whose namespace and node are there and whose containers all
  have ids, under its workload, else under its namespace's `pods` workload.
- `api: container` — every pod, in the module its set/module names (else `bkbcs`/`bkbcs`).

Objects that bk-cmdb cannot hold yet — a node without a host, a pod on such a node or not
scheduled, a pod whose containers have not started, a business without the default
module — are `waiting`: counted, never drift (the pusher reports them as pending too).
Everything else is `missing` (should be there, is not), `stale` (there, with other fields
or parents) or `extra` (an object of the cluster that no live object wants). Containers
are not compared (bk-cmdb's pod listing does not carry them; one listing per pod would
cost more than the pods).

bk-cmdb follows the tables by a push period, so under churn it lags by design: run it when
the clusters are quiet, or read small counts as lag. Read-only; exit codes as `verify`.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from rich.console import Console

from reconciler import ReconcilerError, Record
from synchronizer.bkcmdb import BkCmdbClient, BkCmdbError
from synchronizer.bkcmdb.pusher.mapping import (
    PODS_KIND,
    PODS_WORKLOAD_NAME,
    WORKLOAD_KINDS,
    BadRow,
    WantedNamespace,
    WantedNode,
    WantedPod,
    WantedWorkload,
)
from synchronizer.bkcmdb_config import client_settings
from synchronizer.registries import ClusterSpec, SecretError, SecretResolver, endpoint_of
from synchronizer.registries.static import static_tokens
from synchronizer.settings import ConfigError, Settings, redact_dsn

from .check import PROG, first_line
from .verify import (
    ClusterDrift,
    Report,
    VerifyError,
    check_each,
    list_source,
    render,
    selected,
)

DEFAULT_PLACE = ("bkbcs", "bkbcs")
TABLES = ("namespaces", "nodes", "workloads", "pods")


@dataclass(slots=True)
class BkCmdbDrift(ClusterDrift):
    """One cluster against bk-cmdb: drift as `verify`, plus what cannot be there yet."""

    waiting: dict[str, int] = field(default_factory=dict)

    def wait(self, kind: str) -> None:
        """Count one object bk-cmdb cannot hold yet."""
        self.waiting[kind] = self.waiting.get(kind, 0) + 1


Live = dict[str, dict[str, Record]]
"""Listed objects per table (`namespaces`, `nodes`, `workloads`, `pods`), by uid."""


def _row(cluster: str, record: Record) -> dict[str, Any]:
    return {**record.fields, "uid": record.key, "cluster_id": cluster, "state": "Active"}


async def list_cluster(spec: ClusterSpec, settings: Settings, secrets: SecretResolver,
                       result: BkCmdbDrift) -> Live:
    """Every object of every kind the cluster syncs, by table (one list per resource)."""
    from synchronizer.clusters import kinds_of
    from synchronizer.kube import ClusterClient, KubeSource

    try:
        endpoint = await endpoint_of(spec, secrets)
    except (SecretError, ValueError) as exc:
        raise VerifyError(first_line(exc)) from None
    live: Live = {table: {} for table in TABLES}
    client = ClusterClient(endpoint, watches=0)
    try:
        for kind in kinds_of(spec, settings):
            for resource in kind.resources:
                source = KubeSource(client, kind=kind, resource=resource, biz_id=spec.biz_id,
                                    page_size=settings.sync.page_size)
                try:
                    version, found = await list_source(source)
                except (ReconcilerError, VerifyError, ValueError, OSError) as exc:
                    detail = first_line(exc).removeprefix(f"cluster {spec.id}: ")
                    raise VerifyError(f"{redact_dsn(spec.where)}: {detail}") from None
                live[kind.table].update(found)
                result.list_version = max(result.list_version, version)
                result.listed += len(found)
                result.listed_by_kind[kind.table] = (
                    result.listed_by_kind.get(kind.table, 0) + len(found))
    finally:
        await client.aclose()
    for table in TABLES:
        result.kinds.setdefault(table, {"missing": 0, "stale": 0, "extra": 0})
    return live


def _wanted(cls: Any, cluster: str, records: Mapping[str, Record], result: BkCmdbDrift,
            table: str, **kw: Any) -> dict[str, Any]:
    out = {}
    for uid, record in records.items():
        try:
            value = cls.from_row(_row(cluster, record), **kw)
        except (BadRow, KeyError, TypeError, ValueError):
            result.wait(table)  # a row the pusher cannot read waits there too
            continue
        if value is not None:
            out[uid] = value
    return out


def _compare(result: BkCmdbDrift, table: str, want: Mapping[Any, Any],
             have: Mapping[Any, Any], same: Any, waiting: set[Any]) -> None:
    """Classify one kind: `want`/`have` keyed alike, `same(w, h)` for equality."""
    for key, wanted in want.items():
        found = have.get(key)
        where = {"name": "/".join(str(p) for p in key) if isinstance(key, tuple) else str(key)}
        if found is None:
            result.add("missing", table, where)
        elif not same(wanted, found):
            result.add("stale", table, where)
    for key in have.keys() - want.keys() - waiting:
        name = "/".join(str(p) for p in key) if isinstance(key, tuple) else str(key)
        result.add("extra", table, {"name": name})


async def _verify_kube(spec: ClusterSpec, live: Live, client: BkCmdbClient,
                       result: BkCmdbDrift) -> None:
    cid, biz = spec.id, spec.biz_id
    namespaces = _wanted(WantedNamespace, cid, live["namespaces"], result, "namespaces")
    nodes = _wanted(WantedNode, cid, live["nodes"], result, "nodes")
    workloads = _wanted(WantedWorkload, cid, live["workloads"], result, "workloads")
    pods = _wanted(WantedPod, cid, live["pods"], result, "pods", api="kube")
    ips = sorted({n.internal_ip for n in nodes.values() if n.internal_ip})
    hosts = {ip: h.id for ip, h in (await client.topology.find_hosts(biz, ips)).items()}

    ns_names = {n.name for n in namespaces.values()}
    want_ns = {n.name: n for n in namespaces.values()}
    want_nodes = {n.name: n for n in nodes.values() if n.internal_ip in hosts}
    waiting: dict[str, set[Any]] = {t: set() for t in TABLES}
    for node in nodes.values():
        if node.internal_ip not in hosts:
            result.wait("nodes")
            waiting["nodes"].add(node.name)
    want_wl = {(w.bk_kind, w.namespace, w.name): w for w in workloads.values()
               if w.namespace in ns_names}
    want_pods: dict[tuple[str, str], tuple[WantedPod, tuple[str, str]]] = {}
    for pod in pods.values():
        key = (pod.namespace, pod.name)
        if pod.namespace not in ns_names or pod.node_name not in want_nodes or not pod.started:
            result.wait("pods")
            waiting["pods"].add(key)
            continue
        bk_kind = WORKLOAD_KINDS.get(pod.workload_kind, "")
        ref = ((bk_kind, pod.workload_name) if (bk_kind, pod.namespace, pod.workload_name)
               in want_wl else (PODS_KIND, PODS_WORKLOAD_NAME))
        if ref[0] == PODS_KIND:
            want_wl[(PODS_KIND, pod.namespace, PODS_WORKLOAD_NAME)] = None
        want_pods[key] = (pod, ref)

    found = await client.kube.list_clusters(biz, uids=[cid])
    have_ns: dict[str, Any] = {}
    have_nodes: dict[str, Any] = {}
    have_wl: dict[tuple[str, str, str], Any] = {}
    have_pods: dict[tuple[str, str], Any] = {}
    if found:
        bk_cluster = found[0].id
        have_ns = {n.name: n for n in await client.kube.list_namespaces(biz, bk_cluster)}
        have_nodes = {n.name: n for n in await client.kube.list_nodes(biz, bk_cluster)}
        wl_ids: dict[tuple[str, int], tuple[str, str]] = {}
        for kind in (*WORKLOAD_KINDS.values(), PODS_KIND):
            for w in await client.kube.list_workloads(biz, kind, cluster_id=bk_cluster):
                have_wl[(kind, w.namespace, w.name)] = w
                wl_ids[(kind, w.id)] = (kind, w.name)
        ns_of = {n.id: n.name for n in have_ns.values()}
        node_of = {n.id: n.name for n in have_nodes.values()}
        for p in await client.kube.list_pods(biz, bk_cluster):
            have_pods[(ns_of.get(p.namespace_id, f"#{p.namespace_id}"), p.name)] = (
                p, node_of.get(p.node_id), wl_ids.get((p.ref_kind, p.ref_id)))
    elif want_ns or want_nodes:
        result.add("missing", "clusters", {"name": cid})

    _compare(result, "namespaces", want_ns, have_ns,
             lambda w, h: dict(h.labels) == dict(w.labels), set())
    _compare(result, "nodes", want_nodes, have_nodes,
             lambda w, h: (h.host_id, tuple(h.internal_ip), dict(h.labels), h.unschedulable)
             == (hosts[w.internal_ip], (w.internal_ip,), dict(w.labels), w.unschedulable),
             waiting["nodes"])
    _compare(result, "workloads", want_wl, have_wl,
             lambda w, h: w is None or (dict(h.labels) == dict(w.labels) and (
                 w.replicas is None or h.replicas == w.replicas)), set())
    _compare(result, "pods", want_pods, have_pods,
             lambda w, h: (h[0].ip, dict(h[0].labels), h[1], h[2], h[0].host_id)
             == (w[0].ip, dict(w[0].labels), w[0].node_name, w[1],
                 hosts[want_nodes[w[0].node_name].internal_ip]), waiting["pods"])


async def _verify_container(spec: ClusterSpec, live: Live, client: BkCmdbClient,
                            result: BkCmdbDrift) -> None:
    pods = _wanted(WantedPod, spec.id, live["pods"], result, "pods", api="container")
    modules = (await client.topology.biz_topology(spec.biz_id)).modules
    want: dict[tuple[str, str], tuple[WantedPod, int]] = {}
    waiting: set[Any] = set()
    for pod in pods.values():
        module = modules.get((pod.set_name, pod.module_name)) or modules.get(DEFAULT_PLACE)
        if module is None:
            result.wait("pods")
            waiting.add((pod.namespace, pod.name))
        else:
            want[(pod.namespace, pod.name)] = (pod, module)
    have = {(p.namespace, p.name): p
            for p in await client.container.list_pods(spec.biz_id, spec.id)}
    _compare(result, "pods", want, have,
             lambda w, h: w[0].container_matches(h, w[1]), waiting)


async def verify_bkcmdb_one(spec: ClusterSpec, settings: Settings, client: BkCmdbClient,
                            secrets: SecretResolver) -> BkCmdbDrift:
    """List one cluster, then bk-cmdb's objects of it, and compare (see the module)."""
    result = BkCmdbDrift(cluster=spec.id)
    live = await list_cluster(spec, settings, secrets, result)
    try:
        if client.settings.api == "kube":
            await _verify_kube(spec, live, client, result)
        else:
            await _verify_container(spec, live, client, result)
    except BkCmdbError as exc:
        raise VerifyError(first_line(exc)) from None  # "bk-cmdb <endpoint>: ..."
    return result


async def run_bkcmdb_verify(settings: Settings, clusters: list[str] | None = None, *,
                            client: BkCmdbClient | None = None) -> Report:
    """Verify the selected clusters (all when None) against bk-cmdb; like `run_verify`."""
    if settings.bkcmdb is None:
        raise VerifyError("the config has no bkcmdb section")
    specs = selected(settings, clusters)
    secrets = SecretResolver(static=static_tokens(settings.clusters))
    own = client is None
    if client is None:
        try:
            client = BkCmdbClient(client_settings(settings.bkcmdb, max_attempts=2))
        except ConfigError as exc:
            raise VerifyError(str(exc)) from None
    bk = client
    try:
        return await check_each(specs, lambda spec: verify_bkcmdb_one(spec, settings, bk,
                                                                      secrets))
    finally:
        if own:
            await client.aclose()


def as_json(report: Report) -> dict[str, Any]:
    """`verify --json`'s document, plus `waiting` per cluster and kind."""
    doc = report.as_json()
    doc["waiting"] = {c.cluster: dict(c.waiting) for c in report.clusters
                      if isinstance(c, BkCmdbDrift)}
    return doc


async def verify_bkcmdb_command(settings: Settings, clusters: list[str] | None = None,
                                as_json_output: bool = False) -> int:
    """`verify --bkcmdb`: run, print (a table, or one JSON object), return the exit code."""
    # one line per problem: the client's retry warnings would repeat the final error
    logging.getLogger("synchronizer.bkcmdb").setLevel(logging.ERROR)
    try:
        report = await run_bkcmdb_verify(settings, clusters)
    except VerifyError as exc:
        print(f"{PROG}: verify --bkcmdb: {exc}", file=sys.stderr)
        return 2
    for cluster_id, error in report.errors.items():
        print(f"{PROG}: verify --bkcmdb: cluster {cluster_id}: {error}", file=sys.stderr)
    if as_json_output:
        sys.stdout.write(orjson.dumps(as_json(report)).decode() + "\n")
    else:
        console = Console()
        render(report, console, title="bk-cmdb drift")
        waiting = sum(sum(c.waiting.values()) for c in report.clusters
                      if isinstance(c, BkCmdbDrift))
        if waiting:
            console.print(f"[dim]{waiting:,} object(s) cannot be in bk-cmdb yet (no host, not"
                          " scheduled, containers not started, no module): not judged[/]")
    return report.exit_code
