"""The simulator's route table: bk-cmdb's paths, each bound to one reference-model method.

Spelled here independently of the client (docs/bkcmdb-api.md is the source of both), so a
path the client gets wrong answers 404 in the tests instead of passing unnoticed. Each route
has the name the API gateway gives it (used for request counts, fault targeting and the
client's metrics), and a `batch` function that says how many objects one request carries, so
the simulator can record the largest batch seen per route and tests can assert that the
client never sent more than bk-cmdb allows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..model import BkCmdbModel

Params = Mapping[str, str]
Body = Mapping[str, Any]
Apply = Callable[[BkCmdbModel, Params, Body], Any]


def _count(name: str) -> Callable[[Body], int]:
    def count(body: Body) -> int:
        items = body.get(name)
        return len(items) if isinstance(items, list) else 0
    return count


def _pods_in(body: Body) -> int:
    groups = body.get("data")
    if not isinstance(groups, list):
        return 0
    key = "pods" if any(isinstance(g, Mapping) and "pods" in g for g in groups) else "ids"
    return sum(len(g.get(key) or []) for g in groups if isinstance(g, Mapping))


def _biz(params: Params) -> int:
    try:
        return int(params["biz"])
    except ValueError:
        return 0


@dataclass(frozen=True, slots=True)
class Route:
    """One bk-cmdb route of the simulator."""

    name: str
    method: str
    path: str
    apply: Apply
    batch: Callable[[Body], int] = lambda body: 0
    write: bool = False


K = "/api/v3"
ROUTES: tuple[Route, ...] = (
    # -- kube clusters
    Route("create_kube_cluster", "POST", f"{K}/create/kube/cluster",
          lambda m, p, b: m.create_cluster(b), lambda b: 1, write=True),
    Route("list_kube_cluster", "POST", f"{K}/findmany/kube/cluster",
          lambda m, p, b: m.list_clusters(b)),
    Route("batch_delete_kube_cluster", "DELETE", f"{K}/delete/kube/cluster",
          lambda m, p, b: m.delete_clusters(b), _count("ids"), write=True),
    # -- namespaces
    Route("batch_create_kube_namespace", "POST", f"{K}/createmany/kube/namespace",
          lambda m, p, b: m.create_namespaces(b), _count("data"), write=True),
    Route("list_kube_namespace", "POST", f"{K}/findmany/kube/namespace",
          lambda m, p, b: m.list_namespaces(b)),
    Route("batch_update_kube_namespace", "PUT", f"{K}/updatemany/kube/namespace",
          lambda m, p, b: m.update_namespaces(b), _count("ids"), write=True),
    Route("batch_delete_kube_namespace", "DELETE", f"{K}/deletemany/kube/namespace",
          lambda m, p, b: m.delete_namespaces(b), _count("ids"), write=True),
    # -- nodes
    Route("batch_create_kube_node", "POST", f"{K}/createmany/kube/node",
          lambda m, p, b: m.create_nodes(b), _count("data"), write=True),
    Route("list_kube_node", "POST", f"{K}/findmany/kube/node",
          lambda m, p, b: m.list_nodes(b)),
    Route("batch_update_kube_node", "PUT", f"{K}/updatemany/kube/node",
          lambda m, p, b: m.update_nodes(b), _count("ids"), write=True),
    Route("batch_delete_kube_node", "DELETE", f"{K}/deletemany/kube/node",
          lambda m, p, b: m.delete_nodes(b), _count("ids"), write=True),
    # -- workloads
    Route("batch_create_kube_workload", "POST", f"{K}/createmany/kube/workload/{{kind}}",
          lambda m, p, b: m.create_workloads(p["kind"], b), _count("data"), write=True),
    Route("list_kube_workload", "POST", f"{K}/findmany/kube/workload/{{kind}}",
          lambda m, p, b: m.list_workloads(p["kind"], b)),
    Route("batch_update_kube_workload", "PUT", f"{K}/updatemany/kube/workload/{{kind}}",
          lambda m, p, b: m.update_workloads(p["kind"], b), _count("ids"), write=True),
    Route("batch_delete_kube_workload", "DELETE", f"{K}/deletemany/kube/workload/{{kind}}",
          lambda m, p, b: m.delete_workloads(p["kind"], b), _count("ids"), write=True),
    # -- pods and containers
    Route("batch_create_kube_pod", "POST", f"{K}/createmany/kube/pod",
          lambda m, p, b: m.create_pods(b), _pods_in, write=True),
    Route("list_kube_pod", "POST", f"{K}/findmany/kube/pod", lambda m, p, b: m.list_pods(b)),
    Route("batch_delete_kube_pod", "DELETE", f"{K}/deletemany/kube/pod",
          lambda m, p, b: m.delete_pods(b), _pods_in, write=True),
    Route("list_kube_container", "POST", f"{K}/findmany/kube/container",
          lambda m, p, b: m.list_containers(b)),
    # -- hosts and business topology
    Route("list_biz_hosts", "POST", f"{K}/hosts/app/{{biz}}/list_hosts",
          lambda m, p, b: m.hosts.list_biz_hosts(_biz(p), b)),
    Route("search_biz_inst_topo", "POST", f"{K}/find/topoinst/biz/{{biz}}",
          lambda m, p, b: m.hosts.topology(_biz(p))),
    # -- the container-server pod API of the original design
    Route("create_pod", "POST", f"{K}/create/container/bk_biz_id/{{biz}}/pod",
          lambda m, p, b: m.container.create(_biz(p), b), lambda b: 1, write=True),
    Route("update_pod", "PUT", f"{K}/update/container/bk_biz_id/{{biz}}/pod",
          lambda m, p, b: m.container.update(_biz(p), b), lambda b: 1, write=True),
    Route("delete_pod", "DELETE", f"{K}/delete/container/bk_biz_id/{{biz}}/pod",
          lambda m, p, b: m.container.delete(_biz(p), b), lambda b: 1, write=True),
    Route("list_pods", "POST", f"{K}/findmany/container/bk_biz_id/{{biz}}/pod",
          lambda m, p, b: m.container.list(_biz(p), b)),
)
"""Every bk-cmdb route the simulator answers, by gateway resource name."""
