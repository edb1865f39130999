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
`pacing`; `crd` (CustomResourceDefinitions, SyncCluster); `admin`, `admin_kinds`.
"""

from .churn import ChurnProgress, churn
from .cluster import SimCluster
from .controllers import NOISE_STREAMS, REAL_STREAMS, STREAMS, ChurnCounts, Controllers
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
    "ChurnCounts",
    "ChurnProgress",
    "Controllers",
    "FailureRule",
    "Mix",
    "SimCluster",
    "SimError",
    "Simulator",
    "WatchStream",
    "churn",
    "make_pod",
    "mutate",
    "pod_name",
    "populate",
]
