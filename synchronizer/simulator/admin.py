"""The simulator's control API under `/_sim/`, for drivers in another process.

Why over HTTP: the `demo` command, benchmarks and fault tests run the synchronizer (and
sometimes the simulator) as subprocesses, so faults and workloads must be triggerable from
outside. Every handler is a thin JSON shim over one `SimCluster` or `Simulator` method, so
in-process tests and remote drivers provoke exactly the same behaviour.

    GET    /_sim/clusters                      every cluster's stats
    POST   /_sim/clusters/{id}                 create (body: SimCluster options) -> stats + url
    GET    /_sim/clusters/{id}                 stats (with `kinds`: objects per resource)
    DELETE /_sim/clusters/{id}                 remove
    POST   /_sim/clusters/{id}/config          {bookmark_interval, page_delay, event_delay,
                                                history_limit, token}
    POST   /_sim/clusters/{id}/populate        {pods, namespaces, annotated_fraction, seed,
                                                nodes?, workloads?, deployments?, ...: see
                                                `admin_kinds`}
    POST   /_sim/clusters/{id}/churn           {events (null: forever), rate, seed} -> 202
    GET    /_sim/clusters/{id}/churn           progress;  DELETE: stop it
    POST   /_sim/clusters/{id}/compact         {upto?} -> {compacted}
    POST   /_sim/clusters/{id}/drop            {reset?, resource?} -> {dropped}
    POST   /_sim/clusters/{id}/stall           {stalled: bool, resource?}
    POST   /_sim/clusters/{id}/fail            {status, count?, retry_after?, on?, after_pages?,
                                                reason?, message?, resource?};  DELETE: clear
    POST   /_sim/clusters/{id}/inject          raw body: the line to write into watches
                                                (?resource=nodes: only those watches)
    POST   /_sim/clusters/{id}/replay          {events: n, resource?}
    POST   /_sim/clusters/{id}/advance         {revisions: n}: something unstored changed
    POST   /_sim/clusters/{id}/reset_incarnation  {start_rv?}
    GET    /_sim/clusters/{id}/truth           {resourceVersion, incarnation, pods: [{uid,
                                                namespace, name, rv}]}

Every kind (`admin_kinds`): denials, churn streams with noise, truth per resource, CRDs.
The BCS cluster manager's control routes are in `bcs`.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from .admin_kinds import MIX_KEYS, kind_routes
from .cluster import SimCluster
from .populate import Mix, populate
from .wire import SimError

if TYPE_CHECKING:
    from .server import Simulator

CONFIG_KEYS = ("bookmark_interval", "page_delay", "event_delay", "history_limit", "token")
CREATE_KEYS = ("bookmark_interval", "history_limit", "max_snapshots", "start_rv", "seed",
               "token")
FAIL_KEYS = ("count", "retry_after", "on", "after_pages", "reason", "message", "resource")

Handler = Callable[[web.Request, SimCluster, dict[str, Any]], Awaitable[Any]]


def _reply(obj: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(obj), status=status, content_type="application/json")


class BadRequest(Exception):
    """A malformed admin request; answered with 400 and the message."""


RAW_BODY = frozenset({"inject", "crds"})
"""Routes whose body is not a JSON object of options."""


def wrapper(sim: Simulator) -> Callable[[Handler], Callable[[web.Request],
                                                            Awaitable[web.StreamResponse]]]:
    """Turn `handler(request, cluster, body)` into an aiohttp handler: the cluster from
    `{id}` (404 if unknown), the JSON body parsed, bad input answered with 400."""

    def wrap(handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def serve(request: web.Request) -> web.StreamResponse:
            cluster = sim.clusters.get(request.match_info["id"])
            if cluster is None:
                return _reply({"error": f"no cluster {request.match_info['id']!r}"}, 404)
            try:
                body: dict[str, Any] = {}
                if request.can_read_body and request.path.rsplit("/", 1)[-1] not in RAW_BODY:
                    raw = await request.read()
                    body = orjson.loads(raw) if raw.strip() else {}
                    if not isinstance(body, dict):
                        raise BadRequest("the body must be a JSON object")
                result = await handler(request, cluster, body)
            except (BadRequest, orjson.JSONDecodeError, TypeError, ValueError,
                    KeyError) as exc:
                return _reply({"error": str(exc)}, 400)
            except SimError as exc:
                return _reply({"error": exc.message}, exc.code)
            return result if isinstance(result, web.StreamResponse) else _reply(result)
        return serve
    return wrap


def admin_routes(sim: Simulator) -> list[web.RouteDef]:
    """The `/_sim/` routes bound to one simulator."""
    wrap = wrapper(sim)

    async def list_clusters(request: web.Request) -> web.StreamResponse:
        return _reply({"clusters": [c.stats() for c in sim.clusters.values()]})

    async def create(request: web.Request) -> web.StreamResponse:
        cluster_id = request.match_info["id"]
        raw = await request.read()
        try:
            body = orjson.loads(raw) if raw.strip() else {}
            if not isinstance(body, dict):
                raise BadRequest("the body must be a JSON object")
        except (BadRequest, orjson.JSONDecodeError) as exc:
            return _reply({"error": str(exc)}, 400)
        options = {k: body[k] for k in CREATE_KEYS if k in body}
        existed = cluster_id in sim.clusters
        cluster = sim.add_cluster(cluster_id, **options)
        return _reply(dict(cluster.stats(), url=sim.url_for(cluster_id)), 200 if existed else 201)

    async def remove(request: web.Request, cluster: SimCluster, body: dict[str, Any]) -> Any:
        sim.stop_churn(cluster.id)
        sim.remove_cluster(cluster.id)
        return {"removed": cluster.id}

    async def stats(request: web.Request, cluster: SimCluster, body: dict[str, Any]) -> Any:
        return dict(cluster.stats(), url=sim.url_for(cluster.id))

    async def config(request: web.Request, cluster: SimCluster, body: dict[str, Any]) -> Any:
        for key in CONFIG_KEYS:
            if key in body:
                setattr(cluster, key, body[key])
        return cluster.stats()

    async def do_populate(request: web.Request, cluster: SimCluster,
                          body: dict[str, Any]) -> Any:
        mix = {k: int(body[k]) for k in MIX_KEYS if k in body}
        created = await populate(
            cluster, pods=int(body.get("pods", 1000)), namespaces=int(body.get("namespaces", 4)),
            annotated_fraction=float(body.get("annotated_fraction", 0.5)),
            rng=random.Random(body.get("seed")), nodes=int(body.get("nodes", 0)),
            workloads=int(body.get("workloads", 0)), mix=Mix(**mix) if mix else None)
        return {"created": created, "resourceVersion": cluster.resource_version,
                "kinds": cluster.counts()}

    async def start_churn(request: web.Request, cluster: SimCluster,
                          body: dict[str, Any]) -> Any:
        events = body.get("events")
        progress = sim.start_churn(cluster.id, events=None if events is None else int(events),
                                   rate=body.get("rate"), seed=body.get("seed"))
        return _reply(progress.as_dict(), 202)

    async def churn_status(request: web.Request, cluster: SimCluster,
                           body: dict[str, Any]) -> Any:
        progress = sim.churn_progress(cluster.id)
        return None if progress is None else progress.as_dict()

    async def stop_churn(request: web.Request, cluster: SimCluster, body: dict[str, Any]) -> Any:
        sim.stop_churn(cluster.id)
        progress = sim.churn_progress(cluster.id)
        return None if progress is None else progress.as_dict()

    async def compact(request: web.Request, cluster: SimCluster, body: dict[str, Any]) -> Any:
        return {"compacted": cluster.compact(body.get("upto"))}

    async def drop(request: web.Request, cluster: SimCluster, body: dict[str, Any]) -> Any:
        return {"dropped": cluster.drop_streams(reset=bool(body.get("reset", False)),
                                                resource=body.get("resource"))}

    async def stall(request: web.Request, cluster: SimCluster, body: dict[str, Any]) -> Any:
        cluster.stall_streams(bool(body.get("stalled", True)), resource=body.get("resource"))
        return cluster.stats()

    async def fail(request: web.Request, cluster: SimCluster, body: dict[str, Any]) -> Any:
        if "status" not in body:
            raise BadRequest("fail needs a status")
        cluster.fail_next(int(body["status"]), **{k: body[k] for k in FAIL_KEYS if k in body})
        return {"pending": cluster.failures.pending}

    async def clear_failures(request: web.Request, cluster: SimCluster,
                             body: dict[str, Any]) -> Any:
        cluster.clear_failures()
        return {"pending": 0}

    async def inject(request: web.Request, cluster: SimCluster, body: dict[str, Any]) -> Any:
        return {"streams": cluster.inject_raw(await request.read(),
                                              resource=request.query.get("resource"))}

    async def replay(request: web.Request, cluster: SimCluster, body: dict[str, Any]) -> Any:
        return {"streams": cluster.replay(int(body.get("events", 1)),
                                          resource=body.get("resource"))}

    async def advance(request: web.Request, cluster: SimCluster, body: dict[str, Any]) -> Any:
        return {"resourceVersion": cluster.advance(int(body.get("revisions", 1)))}

    async def reset(request: web.Request, cluster: SimCluster, body: dict[str, Any]) -> Any:
        cluster.reset_incarnation(start_rv=int(body.get("start_rv", 1)))
        return cluster.stats()

    async def truth(request: web.Request, cluster: SimCluster, body: dict[str, Any]) -> Any:
        return {"resourceVersion": cluster.resource_version,
                "incarnation": cluster.incarnation, "pods": cluster.truth()}

    base = "/_sim/clusters/{id}"
    return [
        web.get("/_sim/clusters", list_clusters),
        web.post(base, create),
        web.get(base, wrap(stats)),
        web.delete(base, wrap(remove)),
        web.post(base + "/config", wrap(config)),
        web.post(base + "/populate", wrap(do_populate)),
        web.post(base + "/churn", wrap(start_churn)),
        web.get(base + "/churn", wrap(churn_status)),
        web.delete(base + "/churn", wrap(stop_churn)),
        web.post(base + "/compact", wrap(compact)),
        web.post(base + "/drop", wrap(drop)),
        web.post(base + "/stall", wrap(stall)),
        web.post(base + "/fail", wrap(fail)),
        web.delete(base + "/fail", wrap(clear_failures)),
        web.post(base + "/inject", wrap(inject)),
        web.post(base + "/replay", wrap(replay)),
        web.post(base + "/advance", wrap(advance)),
        web.post(base + "/reset_incarnation", wrap(reset)),
        web.get(base + "/truth", wrap(truth)),
        *kind_routes(sim, wrap),
    ]
