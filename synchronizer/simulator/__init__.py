"""A simulated Kubernetes API server: tests, the `demo` command and benchmarks.

Role: stand in for many real clusters on one loopback port, speaking the real wire protocol
(paged consistent lists with continue tokens, watches with bookmarks and timeouts, 410 Gone
as an ERROR event or an HTTP status, Status error bodies, Retry-After, discovery), so
clients are tested against the protocol rather than against a mock. Every kind the product
syncs is served (Pods, Nodes, Namespaces, Deployments, ReplicaSets, StatefulSets,
DaemonSets, Jobs, CronJobs; Secrets, Events, CustomResourceDefinitions and the custom
resources they define), all ordered by one revision counter per cluster, as etcd orders
them. Faults are switches on a cluster, optionally for one resource: compaction, dropped or
stalled streams, slow pages and events, scripted failures, raw line injection, a resource
denied (403) or absent (404), a new incarnation.

Inputs: Python calls on `SimCluster` (in-process tests), `populate` and `Controllers`
(whole clusters and churn of every kind, with status-only noise counted apart), or the
`/_sim/` admin API (other processes). Outputs: HTTP under `/clusters/<id>/...` (cluster
`default` also at the root) and the ground truth per resource (`SimCluster.truth(resource)`,
`GET /_sim/clusters/<id>/truth[/<resource>]`) that oracles compare the CMDB with.
`python -m synchronizer.simulator` runs one standalone.

Map: `resources` (the table of kinds), `store` (etcd: revisions, history, snapshots,
garbage collection), `strategy` and `schema` (what apiserver does to a written object),
`cluster` (list/watch semantics, faults, waits), `routes` (the HTTP API), `watch`,
`snapshots`, `selectors`, `wire`, `faults`; `pods`, `nodes`, `workloads` (realistic
objects), `populate`, `churn` (Pods), `controllers` and `rollouts` (every kind),
`pacing`; `crd` (CustomResourceDefinitions, SyncCluster); `bcs` (the BCS cluster
manager's registry and the gateway token); `admin`, `admin_kinds`.

What kopf (1.45) calls, checked against its sources, and served here (tests/simulator/
test_kopf.py runs a real operator, cluster-wide and namespaced):
- `kopf/_cogs/clients/scanning.py`: GET `/api`, `/api/v1`, `/apis`, `/apis/{g}/{v}`; it
  reads `name`, `kind`, `namespaced`, `verbs`, `singularName`, `shortNames`, `categories`
  and takes `<plural>/status` entries as the status subresource (`routes`, `resources`).
- `kopf/_cogs/clients/fetching.py` and `watching.py`: a list (optionally `limit`, label and
  field selectors), then `?watch=true&allowWatchBookmarks=true&resourceVersion=...`
  (`timeoutSeconds` when set); 410 as an ERROR event restarts it; with initial streaming,
  `sendInitialEvents=true&resourceVersionMatch=NotOlderThan` and the end bookmark.
- `kopf/_core/reactor/observation.py`: list+watch of `customresourcedefinitions`
  (apiextensions.k8s.io/v1, `spec.group` read on changes) and, unless cluster-wide, of
  `namespaces`.
- `kopf/_cogs/clients/patching.py`: `application/merge-patch+json` on the object (metadata,
  annotations such as `kopf.zalando.org/last-handled-configuration`) and on `/status`
  when discovery lists the subresource; finalizers through `application/json-patch+json`
  with a `test` of `/metadata/resourceVersion`, whose failure must be a 422.
- `kopf/_cogs/clients/events.py` (`kopf.info` and friends): POST core v1 `events` with
  `generateName: kopf-event-` (logging lines are not posted since `posting.loggers` is
  off by default).
- `kopf/_core/engines/peering.py`: standalone mode asks for no peering resources; the
  `kopfpeerings` CRDs are not installed here, so peering must stay off.
- `kopf/_cogs/configs/configuration.py` and `progress.py`: the finalizer
  `kopf.zalando.org/KopfFinalizerMarker`; progress kept in annotations (the CRD prunes
  unknown status fields, as a real server does, so `status.kopf` would not survive).
"""

from .bcs import ClusterManager, make_cluster
from .churn import ChurnProgress, churn
from .cluster import SimCluster
from .controllers import NOISE_STREAMS, REAL_STREAMS, STREAMS, ChurnCounts, Controllers
from .crd import SYNC_CLUSTER_CRD, install_crd, uninstall_crd
from .faults import FailureRule
from .pods import make_pod, mutate, pod_name
from .populate import Mix, populate
from .server import Simulator
from .watch import WatchStream
from .wire import SimError

__all__ = [
    "NOISE_STREAMS",
    "REAL_STREAMS",
    "STREAMS",
    "SYNC_CLUSTER_CRD",
    "ChurnCounts",
    "ChurnProgress",
    "ClusterManager",
    "Controllers",
    "FailureRule",
    "Mix",
    "SimCluster",
    "SimError",
    "Simulator",
    "WatchStream",
    "churn",
    "install_crd",
    "make_cluster",
    "make_pod",
    "mutate",
    "pod_name",
    "populate",
    "uninstall_crd",
]
