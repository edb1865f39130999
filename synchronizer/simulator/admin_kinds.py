"""The `/_sim/` control routes for every kind: denials, churn streams, truth, CRDs.

Why a module of its own: these are the routes of the second version (kinds beyond Pods);
`admin` keeps the first version's routes and their exact behaviour. Each handler is a thin
JSON shim over one `SimCluster`, `Controllers` or `crd` call, so a driver in another
process provokes what an in-process test would.

    POST   /_sim/clusters/{id}/populate          also {nodes, workloads} or an exact mix:
                                                  {deployments, statefulsets, daemonsets,
                                                  jobs, cronjobs, replicasets, bare_pods}
    POST   /_sim/clusters/{id}/deny/{resource}   {status: 403 | 404} -> {denied}
    DELETE /_sim/clusters/{id}/deny/{resource}   allow it again;  DELETE .../deny: all
    GET    /_sim/clusters/{id}/churns            {streams: {name: progress}, counts:
                                                  {real: {resource: n}, noise: {...}}}
    DELETE /_sim/clusters/{id}/churns            stop every stream
    POST   /_sim/clusters/{id}/churn/{stream}    {rate?, events?, interval?} -> 202 progress
    GET    /_sim/clusters/{id}/churn/{stream}    progress;  DELETE: stop it
    POST   /_sim/clusters/{id}/churn/{stream}/step   {n} -> counts (made synchronously)
    GET    /_sim/clusters/{id}/truth/{resource}  {resourceVersion, incarnation, resource,
                                                  kind, items: [{uid, namespace, name, rv,
                                                  object?}]}  (?objects=1 adds the objects)
    POST   /_sim/clusters/{id}/crds              body: a CustomResourceDefinition, or
                                                  {"builtin": "syncclusters"} -> the CRD
    GET    /_sim/clusters/{id}/crds              the installed CRDs' resource ids

Streams are `pods`, `workloads`, `nodes`, `namespaces` (real changes) and `heartbeats`,
`workload_status`, `pod_restarts` (status-only noise); see `controllers`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from .cluster import SimCluster
from .crd import BUILTIN_CRDS, install_crd

if TYPE_CHECKING:
    from .server import Simulator

MIX_KEYS = ("deployments", "statefulsets", "daemonsets", "jobs", "cronjobs", "replicasets",
            "bare_pods")
"""Populate keys that set the count of one workload kind exactly."""

Handler = Callable[[web.Request, SimCluster, dict[str, Any]], Awaitable[Any]]
Wrap = Callable[[Handler], Callable[[web.Request], Awaitable[web.StreamResponse]]]


def _reply(obj: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(obj), status=status, content_type="application/json")


def kind_routes(sim: Simulator, wrap: Wrap) -> list[web.RouteDef]:
    """The routes above, bound to `sim`; `wrap` is `admin`'s handler wrapper."""

    async def deny(request: web.Request, cluster: SimCluster, body: dict[str, Any]) -> Any:
        cluster.deny(request.match_info["resource"], int(body.get("status", 403)))
        return {"denied": cluster.denied}

    async def allow(request: web.Request, cluster: SimCluster, body: dict[str, Any]) -> Any:
        cluster.allow(request.match_info.get("resource"))
        return {"denied": cluster.denied}

    async def churns(request: web.Request, cluster: SimCluster, body: dict[str, Any]) -> Any:
        return sim.controllers(cluster.id).as_dict()

    async def stop_all(request: web.Request, cluster: SimCluster, body: dict[str, Any]) -> Any:
        controllers = sim.controllers(cluster.id)
        controllers.stop()
        return controllers.as_dict()

    async def start(request: web.Request, cluster: SimCluster, body: dict[str, Any]) -> Any:
        events, rate, interval = body.get("events"), body.get("rate"), body.get("interval")
        progress = sim.controllers(cluster.id, seed=body.get("seed")).start(
            request.match_info["stream"], rate=None if rate is None else float(rate),
            events=None if events is None else int(events),
            interval=None if interval is None else float(interval))
        return _reply(progress.as_dict(), 202)

    async def status(request: web.Request, cluster: SimCluster, body: dict[str, Any]) -> Any:
        progress = sim.controllers(cluster.id).progress(request.match_info["stream"])
        return None if progress is None else progress.as_dict()

    async def stop(request: web.Request, cluster: SimCluster, body: dict[str, Any]) -> Any:
        controllers = sim.controllers(cluster.id)
        controllers.stop(request.match_info["stream"])
        progress = controllers.progress(request.match_info["stream"])
        return None if progress is None else progress.as_dict()

    async def step(request: web.Request, cluster: SimCluster, body: dict[str, Any]) -> Any:
        controllers = sim.controllers(cluster.id)
        controllers.step(request.match_info["stream"], int(body.get("n", 1)))
        return controllers.counts.as_dict()

    async def truth(request: web.Request, cluster: SimCluster, body: dict[str, Any]) -> Any:
        spec = cluster.table(request.match_info["resource"]).spec
        objects = request.query.get("objects", "") in ("1", "true")
        return {"resourceVersion": cluster.resource_version,
                "incarnation": cluster.incarnation, "resource": spec.id, "kind": spec.kind,
                "items": cluster.truth(spec.id, objects=objects)}

    async def add_crd(request: web.Request, cluster: SimCluster, body: dict[str, Any]) -> Any:
        raw = await request.read()
        doc = orjson.loads(raw) if raw.strip() else {}
        if not isinstance(doc, dict):
            raise ValueError("the body must be a CustomResourceDefinition or {\"builtin\"}")
        if "builtin" in doc:
            if doc["builtin"] not in BUILTIN_CRDS:
                raise ValueError(f"no builtin CRD {doc['builtin']!r}; builtins: "
                                 f"{', '.join(BUILTIN_CRDS)}")
            doc = BUILTIN_CRDS[doc["builtin"]]
        return _reply(install_crd(cluster, doc), 201)

    async def list_crds(request: web.Request, cluster: SimCluster, body: dict[str, Any]) -> Any:
        return {"crds": [s.id for s in cluster.resources if s.schema is not None]}

    base = "/_sim/clusters/{id}"
    return [
        web.post(base + "/deny/{resource}", wrap(deny)),
        web.delete(base + "/deny/{resource}", wrap(allow)),
        web.delete(base + "/deny", wrap(allow)),
        web.get(base + "/churns", wrap(churns)),
        web.delete(base + "/churns", wrap(stop_all)),
        web.post(base + "/churn/{stream}", wrap(start)),
        web.get(base + "/churn/{stream}", wrap(status)),
        web.delete(base + "/churn/{stream}", wrap(stop)),
        web.post(base + "/churn/{stream}/step", wrap(step)),
        web.get(base + "/truth/{resource}", wrap(truth)),
        web.post(base + "/crds", wrap(add_crd)),
        web.get(base + "/crds", wrap(list_crds)),
    ]
