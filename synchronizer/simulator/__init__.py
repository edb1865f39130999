"""A simulated Kubernetes API server for Pods: tests, the `demo` command and benchmarks.

Role: stand in for many real clusters on one loopback port, speaking the real wire protocol
(paged consistent lists with continue tokens, watches with bookmarks and timeouts, 410 Gone
as an ERROR event or an HTTP status, Status error bodies, Retry-After), so the Kubernetes
client is tested against the protocol rather than against a mock. Faults are switches on a
cluster: compaction, dropped or stalled streams, slow pages and events, scripted failures,
raw line injection, a new incarnation.

Inputs: Python calls on `SimCluster` (in-process tests) or the `/_sim/` admin API (other
processes). Outputs: HTTP under `/clusters/<id>/api/v1/...` (cluster `default` also at the
root) and the ground truth (`SimCluster.truth()`, `GET /_sim/clusters/<id>/truth`) that
oracles compare the CMDB with. `python -m synchronizer.simulator` runs one standalone.
"""

from .churn import ChurnProgress, churn, populate
from .cluster import SimCluster
from .faults import FailureRule
from .pods import make_pod, mutate, pod_name
from .server import Simulator
from .watch import WatchStream
from .wire import SimError

__all__ = [
    "ChurnProgress",
    "FailureRule",
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
