"""Fill a simulated cluster: Pods only (the first simulator's way), or a whole cluster.

Why two modes in one function: tests, benchmarks and the demo written for the Pod-only
simulator call `populate(cluster, pods=..., namespaces=..., rng=...)` and get exactly that
many Pods (with fake ReplicaSet owners and no Nodes); that stays as it was. Asking for
Nodes or workloads builds a cluster whose objects agree with each other the way a real
one's do, which is what the kinds of Version 2 need:

- namespaces are objects (`default`, `kube-system` whose uid is the cluster's incarnation,
  and `ns-0...`); every Pod's namespace and Node exist, and its hostIP is its Node's IP;
- Nodes with realistic status (see `nodes`), a few cordoned;
- Deployment -> ReplicaSet `<name>-<hash>` -> Pods `<rs>-<suffix>` with the
  `pod-template-hash` label and controlling ownerReferences; StatefulSet Pods
  `<name>-<ordinal>`; one Pod per Node for each DaemonSet (in kube-system); Jobs with one
  Pod, some owned by CronJobs and named `<cronjob>-<minute>`; a ReplicaSet of its own with
  its Pods; a few bare Pods;
- `pods` is the total: the fixed Pods (DaemonSets, Jobs, bare) come first, and the rest is
  spread over Deployments, StatefulSets and lone ReplicaSets with a skewed distribution
  (most workloads small, a few large), so the count is exact.

Speed: one full Pod is built per workload and its replicas share its structure
(`pods.replica`), so 2,000 Nodes, 2,000 workloads and 50,000 Pods build in a few seconds.
With `compact` the creation history is compacted away afterwards, so the cluster looks
like one that has been running for a while.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .cluster import SimCluster
from .nodes import image_pool, make_namespace, make_node, node_ip, timestamp
from .pods import adopt, bare, generated_names, make_pod, pod_name, random_suffix, replica
from .workloads import (
    job_labels,
    make_cronjob,
    make_daemonset,
    make_deployment,
    make_job,
    make_replicaset,
    make_statefulset,
    owner_ref,
    template_hash,
    template_of,
)

CHUNK = 2000
"""Pods created between yields to the loop while populating, so the server stays live."""
PODS_PER_NODE = 40
"""Nodes made when workloads are asked for without Nodes: one per this many Pods."""
CORDONED_FRACTION = 0.02
"""Share of Nodes with `spec.unschedulable` (at least one of ten or more, never the only
one)."""
APP_WORDS: tuple[str, ...] = ("api", "web", "worker", "gateway", "cache", "search", "feed",
                              "billing", "auth", "media", "match", "rank")
DAEMON_NAMES: tuple[str, ...] = ("kube-proxy", "log-agent", "node-exporter", "csi-cbs-node",
                                 "ip-masq-agent", "tke-monitor-agent")
MAX_DAEMONSETS = 4


def _apps(namespace: str, rng: random.Random, count: int) -> list[str]:
    return [f"{namespace.removeprefix('ns-')}-{rng.choice(('api', 'web', 'job', 'svc'))}{i}"
            for i in range(count)]


@dataclass(slots=True, kw_only=True)
class Mix:
    """How many of each workload a full populate makes (see `Mix.split`)."""

    deployments: int = 0
    statefulsets: int = 0
    daemonsets: int = 0
    jobs: int = 0
    cronjobs: int = 0
    replicasets: int = 0
    """ReplicaSets that no Deployment owns."""
    bare_pods: int = 0

    @classmethod
    def split(cls, workloads: int, pods: int) -> Mix:
        """A realistic mix of `workloads` (75% Deployments, 10% StatefulSets, 10% Jobs, 5%
        CronJobs, up to 4 DaemonSets), plus 1% lone ReplicaSets and 1% bare Pods."""
        if workloads <= 0:
            return cls(bare_pods=max(0, pods))
        daemonsets = min(MAX_DAEMONSETS, max(1, workloads // 500))
        rest = max(0, workloads - daemonsets)
        statefulsets, jobs, cronjobs = rest // 10, rest // 10, rest // 20
        return cls(deployments=rest - statefulsets - jobs - cronjobs, statefulsets=statefulsets,
                   daemonsets=daemonsets, jobs=jobs, cronjobs=cronjobs,
                   replicasets=max(1, workloads // 100), bare_pods=max(1, pods // 100))


async def populate(
    cluster: SimCluster,
    *,
    pods: int,
    namespaces: int = 4,
    annotated_fraction: float = 0.5,
    rng: random.Random | None = None,
    seed: int | None = None,
    apps_per_namespace: int = 5,
    compact: bool = True,
    nodes: int = 0,
    workloads: int = 0,
    mix: Mix | None = None,
) -> int:
    """Create `pods` Pods (and, when asked, Nodes and workloads); returns the Pods made.

    Without `nodes`, `workloads` or `mix`: `pods` Pods over `namespaces` namespaces
    `ns-0...`, nothing else (the first simulator's populate, unchanged). With any of them:
    a consistent cluster (module docstring); `mix` sets the count of each workload kind
    exactly, else `Mix.split(workloads, pods)` does.
    """
    rng = rng if rng is not None else random.Random(seed)
    if not nodes and not workloads and mix is None:
        return await _pods_only(cluster, pods=pods, namespaces=namespaces,
                                annotated_fraction=annotated_fraction, rng=rng,
                                apps_per_namespace=apps_per_namespace, compact=compact)
    builder = _Builder(cluster, rng, annotated_fraction)
    builder.namespaces(namespaces)
    builder.nodes(nodes or max(1, -(-pods // PODS_PER_NODE)))
    created = await builder.workloads(mix or Mix.split(workloads, pods), pods)
    if compact:
        cluster.compact()
    return created


async def _pods_only(cluster: SimCluster, *, pods: int, namespaces: int,
                     annotated_fraction: float, rng: random.Random, apps_per_namespace: int,
                     compact: bool) -> int:
    templates: list[tuple[str, str, dict[str, Any]]] = []
    for n in range(max(1, namespaces)):
        ns = f"ns-{n}"
        for app in _apps(ns, rng, apps_per_namespace):
            templates.append((ns, app, make_pod(ns, pod_name(rng, app), rng=rng, app=app)))
    created = 0
    while created < pods:
        batch = []
        for _ in range(min(CHUNK, pods - created)):
            ns, app, template = templates[rng.randrange(len(templates))]
            pod = replica(template, pod_name(rng, app), rng=rng,
                          annotated=rng.random() < annotated_fraction)
            batch.append(pod)
        created += cluster.create_many(batch, copy=False)
        await asyncio.sleep(0)
    if compact:
        cluster.compact()
    return created


def spread(total: int, count: int, rng: random.Random) -> list[int]:
    """`total` split into `count` parts with a heavy tail (sums exactly to `total`)."""
    if count <= 0:
        return []
    weights = [min(rng.paretovariate(1.3), 40.0) for _ in range(count)]
    scale = total / sum(weights)
    parts = [int(w * scale) for w in weights]
    for n in range(total - sum(parts)):
        parts[n % count] += 1
    return parts


@dataclass(slots=True)
class _Builder:
    """State of one full populate: names, Nodes, and the Pods waiting to be created."""

    cluster: SimCluster
    rng: random.Random
    annotated_fraction: float
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    ns_names: list[str] = field(default_factory=list)
    node_list: list[tuple[str, str]] = field(default_factory=list)
    schedulable: list[tuple[str, str]] = field(default_factory=list)
    pending: list[dict[str, Any]] = field(default_factory=list)
    serial: int = 0

    @property
    def ts(self) -> str:
        return timestamp(self.now)

    def namespaces(self, count: int) -> None:
        cluster = self.cluster
        wanted = ["default", "kube-system", *(f"ns-{n}" for n in range(max(1, count)))]
        for name in wanted:
            if cluster.get_raw(None, name, resource="namespaces") is None:
                cluster.create(make_namespace(name), resource="namespaces",
                               uid=cluster.incarnation if name == "kube-system" else None)
        self.ns_names = wanted[2:]

    def nodes(self, count: int) -> None:
        pool = image_pool(self.rng)
        existing = self.cluster.count("nodes")
        off_count = max(1 if count >= 10 else 0, int(count * CORDONED_FRACTION))
        cordoned = set(self.rng.sample(range(count), off_count))
        batch = []
        for n in range(existing, existing + count):
            name, ip = f"node-{n:04d}", node_ip(n)
            off = (n - existing) in cordoned
            batch.append(make_node(name, rng=self.rng, ip=ip, now=self.now, pool=pool,
                                   unschedulable=off))
            self.node_list.append((name, ip))
            if not off:
                self.schedulable.append((name, ip))
        self.cluster.create_many(batch, copy=False, resource="nodes")

    def _name(self, word: str | None = None) -> str:
        self.serial += 1
        return f"{word or self.rng.choice(APP_WORDS)}-{self.serial}"

    def _base(self, namespace: str, app: str, *, phase: str = "Running"
              ) -> tuple[dict[str, Any], dict[str, str]]:
        """A full Pod for a workload's replicas to share, and the workload's labels."""
        pod = make_pod(namespace, app, rng=self.rng, app=app, phase=phase,
                       annotated=self.rng.random() < self.annotated_fraction,
                       node_name=self.schedulable[0][0], now=self.now)
        labels = {k: v for k, v in pod["metadata"]["labels"].items()
                  if k != "pod-template-hash"}
        return pod, labels

    def _pods(self, base: dict[str, Any], owner: dict[str, Any] | None,
              labels: dict[str, str], names: list[str], *, generate_name: str | None,
              nodes: list[tuple[str, str]] | None = None,
              per_pod: dict[str, str] | None = None) -> None:
        """Queue the replicas of `base`: one per name, on `nodes` (else random Nodes)."""
        template = dict(base, metadata=dict(base["metadata"]))
        if owner is None:
            bare(template, labels)
        else:
            adopt(template, owner=owner, labels=labels, generate_name=generate_name)
        for n, name in enumerate(names):
            node = nodes[n] if nodes is not None else self.rng.choice(self.schedulable)
            pod = replica(template, name, rng=self.rng, annotated=None, node=node)
            if per_pod is not None:
                pod["metadata"]["labels"] = dict(labels, **{
                    k: v.replace("{name}", name).replace("{n}", str(n))
                    for k, v in per_pod.items()})
            self.pending.append(pod)

    def _create(self, obj: dict[str, Any], resource: str) -> dict[str, Any]:
        return self.cluster.create(obj, resource=resource, uid=obj["metadata"]["uid"])

    def deployment(self, namespace: str, replicas: int) -> None:
        name = self._name()
        base, labels = self._base(namespace, name)
        template = template_of(base, labels)
        dep = self._create(make_deployment(namespace, name, uid=self.cluster.new_uid(),
                                           template=template, replicas=replicas, ts=self.ts),
                           "deployments")
        rs_name = f"{name}-{template_hash(template)}"
        rs = self._create(make_replicaset(namespace, rs_name, uid=self.cluster.new_uid(),
                                          template=template, replicas=replicas,
                                          owner=owner_ref(dep)), "replicasets")
        pod_labels = rs["spec"]["template"]["metadata"]["labels"]
        self._pods(base, owner_ref(rs), pod_labels,
                   generated_names(self.rng, f"{rs_name}-", replicas),
                   generate_name=f"{rs_name}-")

    def lone_replicaset(self, namespace: str, replicas: int) -> None:
        name = self._name("legacy")
        base, labels = self._base(namespace, name)
        rs = self._create(make_replicaset(namespace, name, uid=self.cluster.new_uid(),
                                          template=template_of(base, labels),
                                          replicas=replicas, owner=None), "replicasets")
        self._pods(base, owner_ref(rs), labels,
                   generated_names(self.rng, f"{name}-", replicas),
                   generate_name=f"{name}-")

    def statefulset(self, namespace: str, replicas: int) -> None:
        name = self._name("db")
        base, labels = self._base(namespace, name)
        sts = self._create(make_statefulset(namespace, name, uid=self.cluster.new_uid(),
                                            template=template_of(base, labels),
                                            replicas=replicas), "statefulsets")
        revision = sts["status"]["currentRevision"]
        self._pods(base, owner_ref(sts), labels, [f"{name}-{n}" for n in range(replicas)],
                   generate_name=f"{name}-",
                   per_pod={"controller-revision-hash": revision,
                            "statefulset.kubernetes.io/pod-name": "{name}",
                            "apps.kubernetes.io/pod-index": "{n}"})

    def daemonset(self, name: str) -> None:
        base, labels = self._base("kube-system", name)
        template = template_of(base, labels)
        ds = self._create(make_daemonset("kube-system", name, uid=self.cluster.new_uid(),
                                         template=template, nodes=len(self.node_list)),
                          "daemonsets")
        pod_labels = dict(labels, **{"controller-revision-hash": template_hash(template),
                                     "pod-template-generation": "1"})
        self._pods(base, owner_ref(ds), pod_labels,
                   generated_names(self.rng, f"{name}-", len(self.node_list)),
                   generate_name=f"{name}-", nodes=self.node_list)

    def job(self, namespace: str, name: str | None = None,
            cronjob: dict[str, Any] | None = None, *, done: bool = True) -> None:
        name = name or self._name("batch")
        base, labels = self._base(namespace, name, phase="Succeeded" if done else "Running")
        uid = self.cluster.new_uid()
        job = self._create(make_job(namespace, name, uid=uid,
                                    template=template_of(base, labels), ts=self.ts, done=done,
                                    owner=None if cronjob is None else owner_ref(cronjob)),
                           "jobs")
        self._pods(base, owner_ref(job), dict(labels, **job_labels(name, uid)),
                   [f"{name}-{random_suffix(self.rng)}"], generate_name=f"{name}-")

    def cronjob(self, namespace: str, jobs: int) -> None:
        name = self._name("cron")
        base, labels = self._base(namespace, name, phase="Succeeded")
        cj = self._create(make_cronjob(namespace, name, uid=self.cluster.new_uid(),
                                       template=template_of(base, labels),
                                       schedule="*/10 * * * *", ts=self.ts), "cronjobs")
        minute = int(self.now.timestamp()) // 60 // 10 * 10
        for n in range(jobs):
            self.job(namespace, f"{name}-{minute - 10 * (jobs - n)}", cj)

    def bare_pod(self, namespace: str) -> None:
        name = self._name("debug")
        base, labels = self._base(namespace, name)
        self._pods(base, None, labels, [name], generate_name=None)

    async def workloads(self, mix: Mix, pods: int) -> int:
        """Make the workloads of `mix` with `pods` Pods in all, then create the Pods."""
        rng, spaces = self.rng, self.ns_names
        daemonsets = min(mix.daemonsets, len(DAEMON_NAMES),
                         max(0, pods - mix.jobs - 2 * mix.cronjobs - mix.bare_pods)
                         // max(1, len(self.node_list)))
        fixed = daemonsets * len(self.node_list) + mix.jobs + 2 * mix.cronjobs + mix.bare_pods
        elastic = mix.deployments + mix.statefulsets + mix.replicasets
        sizes = spread(max(0, pods - fixed), elastic, rng)
        for name in DAEMON_NAMES[:daemonsets]:
            self.daemonset(name)
        for n in range(mix.deployments):
            self.deployment(spaces[n % len(spaces)], sizes.pop())
        for n in range(mix.statefulsets):
            self.statefulset(spaces[n % len(spaces)], sizes.pop())
        for n in range(mix.replicasets):
            self.lone_replicaset(spaces[n % len(spaces)], sizes.pop())
        for n in range(mix.jobs):
            self.job(spaces[n % len(spaces)], done=rng.random() < 0.8)
        for n in range(mix.cronjobs):
            self.cronjob(spaces[n % len(spaces)], 2)
        for n in range(mix.bare_pods):
            self.bare_pod(spaces[n % len(spaces)])
        created = 0
        for start in range(0, len(self.pending), CHUNK):
            created += self.cluster.create_many(self.pending[start:start + CHUNK], copy=False)
            await asyncio.sleep(0)
        self.pending.clear()
        return created
