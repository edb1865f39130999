"""The BCS cluster manager's cluster registry, behind the BCS API gateway.

Why: BlueKing users already keep their clusters in the BCS cluster manager (DESIGN.md
§9), and the product reads them from it: `GET <gateway>/bcsapi/v4/clustermanager/v1/cluster`
with the gateway's bearer token, keeping RUNNING `k8s` clusters that are not `virtual`,
and reaching each through the gateway's Kubernetes proxy at `<gateway>/clusters/<id>/`.
The Go original deleted a cluster's CMDB objects when it was briefly not RUNNING; tests of
the rewrite need a registry whose clusters change status, appear and disappear, and which
can fail, on demand. This is it, served by the simulator on its own port:

- the list as bcs-cluster-manager answers it (its gRPC gateway marshals with `OrigName`
  and `EmitDefaults`, so every field is present, in the proto's spelling:
  `clusterID`, `clusterName`, `businessID` (a string), `projectID`, `status` (CREATING,
  RUNNING, DELETING, FALURE [sic], INITIALIZATION, DELETED), `engineType` (k8s, mesos),
  `clusterType` (single, federation, virtual), ...), inside
  `{"code": 0, "message": "success", "result": true, "data": [...], "clusterExtraInfo":
  {...}, "web_annotations": null}`; DELETED clusters only with `all=true`; the exact-match
  filters of its ListAction (clusterName, provider, region, vpcID, projectID, businessID,
  environment, engineType, systemID, clusterID); `kubeConfig` blanked as it does;
- one cluster: `GET .../cluster/{clusterID}`, or code 1405420 (its DB operation error)
  with `result: false` (HTTP 200, as the gateway passes it through);
- the gateway's authentication: with a token set, a request without `Authorization:
  Bearer <token>`, or with another one, is a 401 with the bcs-auth plugin's body
  (`{"code": 401, "result": false, "message": "Resource is Unauthorized"}`), and so is
  every request under `/clusters/<id>/` (the Kubernetes proxy; see `routes`);
- faults: `error` (an HTTP status, 500 by default), `failure` (HTTP 200 with a non-zero
  code and `result: false`), `reset` (the connection is cut: unreachable), `stall` (no
  answer until the fault is cleared).

Sources checked: bcs-services/bcs-cluster-manager/api/clustermanager/clustermanager.proto
(Cluster, ListClusterReq/Resp, ExtraInfo), internal/actions/cluster/list.go and utils.go
(filters, DELETED, shieldClusterInfo), internal/common/constant.go (codes), internal/app
(the marshaler), bcs-bk-apisix-gateway/plugins/bkbcs-auth.lua (the 401 body).
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import orjson
from aiohttp import web

from .routes import aborter, bearer

if TYPE_CHECKING:
    from .server import Simulator

PREFIX = "/bcsapi/v4/clustermanager/v1"
STATUSES = ("CREATING", "RUNNING", "DELETING", "FALURE", "INITIALIZATION", "DELETED")
"""Cluster statuses as the proto validates them (FALURE is BCS's own spelling)."""
ENGINE_TYPES = ("k8s", "mesos")
CLUSTER_TYPES = ("single", "federation", "virtual")
SUCCESS, DB_ERROR = 0, 1405420
"""bcs-cluster-manager's codes: success, and BcsErrClusterManagerDBOperation."""
FILTERS = ("clusterName", "provider", "region", "vpcID", "projectID", "businessID",
           "environment", "engineType", "systemID", "clusterID")
"""The ListClusterReq fields its ListAction filters on (exact match)."""
UNAUTHORIZED = {"code": 401, "result": False, "message": "Resource is Unauthorized"}
"""What the gateway's bkbcs-auth plugin answers an unknown token."""
FaultMode = Literal["error", "failure", "reset", "stall"]


def make_cluster(cluster_id: str, *, now: datetime | None = None, **fields: Any
                 ) -> dict[str, Any]:
    """A cluster record with every field of the proto, as the list emits it; `fields`
    (by their BCS names: businessID="2", status="RUNNING", ...) override the defaults."""
    stamp = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S+08:00")
    project = uuid.uuid5(uuid.NAMESPACE_DNS, f"bcs-project-{fields.get('businessID', '2')}")
    cluster: dict[str, Any] = {
        "clusterID": cluster_id, "clusterName": cluster_id, "federationClusterID": "",
        "provider": "bluekingCloud", "region": "default", "vpcID": "",
        "projectID": project.hex, "businessID": "2", "environment": "prod",
        "engineType": "k8s", "isExclusive": True, "clusterType": "single", "labels": {},
        "creator": "admin", "createTime": stamp, "updateTime": stamp, "bcsAddons": {},
        "extraAddons": {}, "systemID": "", "manageType": "INDEPENDENT_CLUSTER",
        "master": {},
        "networkSettings": {"clusterIPv4CIDR": "172.16.0.0/16", "serviceIPv4CIDR": "",
                            "maxNodePodNum": 64, "maxServiceNum": 1024,
                            "enableVPCCni": False, "eniSubnetIDs": [], "subnetSource": None,
                            "isStaticIpMode": False, "claimExpiredSeconds": 0,
                            "multiClusterCIDR": [], "cidrStep": 0, "clusterIpType": "ipv4",
                            "clusterIPv6CIDR": "", "serviceIPv6CIDR": "", "status": "",
                            "networkMode": "", "networkPlugin": ""},
        "clusterBasicSettings": {"OS": "TencentOS Server 3.1", "version": "1.28.3",
                                 "clusterTags": {}, "versionName": "", "subnetID": "",
                                 "clusterLevel": "", "isAutoUpgradeClusterLevel": False,
                                 "area": None, "module": None, "upgradePolicy": None},
        "clusterAdvanceSettings": {"IPVS": True, "containerRuntime": "containerd",
                                   "runtimeVersion": "1.6.9", "extraArgs": {},
                                   "networkType": "", "deletionProtection": False,
                                   "auditEnabled": False, "enableHa": False,
                                   "clusterConnectSetting": None, "isDualStack": False},
        "nodeSettings": {"dockerGraphPath": "/data/bcs/service/docker",
                         "mountTarget": "/data", "unSchedulable": 0, "labels": {},
                         "extraArgs": {}, "taints": [], "masterLogin": None,
                         "workerLogin": None},
        "status": "RUNNING", "updater": "admin", "networkType": "overlay",
        "autoGenerateMasterNodes": False, "template": [], "extraInfo": {}, "moduleID": "",
        "extraClusterID": "", "isCommonCluster": False, "description": "",
        "clusterCategory": "importer", "is_shared": False, "kubeConfig": "",
        "importCategory": "kubeConfig", "cloudAccountID": "", "message": "",
        "isMixed": False, "clusterIamRole": "", "sharedRanges": None,
    }
    unknown = set(fields) - set(cluster)
    if unknown:
        raise ValueError(f"not a BCS cluster field: {', '.join(sorted(unknown))}")
    _check(fields)
    cluster.update(fields)
    return cluster


def _check(fields: dict[str, Any]) -> None:
    for name, allowed in (("status", STATUSES), ("engineType", ENGINE_TYPES),
                          ("clusterType", CLUSTER_TYPES)):
        if name in fields and fields[name] not in allowed:
            raise ValueError(f"{name} must be one of {', '.join(allowed)}, not "
                             f"{fields[name]!r}")
    if "businessID" in fields and not isinstance(fields["businessID"], str):
        raise ValueError("businessID is a string in BCS")


@dataclass(slots=True, frozen=True)
class Fault:
    """How the registry misbehaves until healed."""

    mode: FaultMode
    status: int = 500


class ClusterManager:
    """The registry's state: clusters, the gateway token, a fault switch, counters."""

    def __init__(self) -> None:
        self.token: str | None = None
        """The gateway's bearer token; None: no authentication (and the Kubernetes proxy
        under /clusters/ is open too)."""
        self.clusters: dict[str, dict[str, Any]] = {}
        self.fault: Fault | None = None
        self.requests: Counter[str] = Counter()
        """Requests by outcome: ok, unauthorized, error, failure, reset, stall."""
        self._healed: asyncio.Event | None = None
        self._waiters: list[asyncio.Future[None]] = []

    def count(self, outcome: str) -> None:
        """Count a request's outcome and wake `wait_until` waiters."""
        self.requests[outcome] += 1
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Return once `predicate()` holds, re-checked on every registry request (for
        tests: "the request is stalled now"). Bound it with `asyncio.timeout`."""
        loop = asyncio.get_running_loop()
        while not predicate():
            fut: asyncio.Future[None] = loop.create_future()
            self._waiters.append(fut)
            await fut

    def add(self, cluster_id: str, **fields: Any) -> dict[str, Any]:
        """Register (or replace) a cluster; returns its record."""
        self.clusters[cluster_id] = make_cluster(cluster_id, **fields)
        return self.clusters[cluster_id]

    def update(self, cluster_id: str, **fields: Any) -> dict[str, Any]:
        """Change fields of a registered cluster (KeyError if unknown)."""
        cluster = self.clusters[cluster_id]
        unknown = set(fields) - set(cluster)
        if unknown:
            raise ValueError(f"not a BCS cluster field: {', '.join(sorted(unknown))}")
        _check(fields)
        cluster.update(fields, updateTime=datetime.now(UTC).strftime(
            "%Y-%m-%dT%H:%M:%S+08:00"))
        return cluster

    def set_status(self, cluster_id: str, status: str) -> dict[str, Any]:
        """A status change (RUNNING, DELETING, ...)."""
        return self.update(cluster_id, status=status)

    def remove(self, cluster_id: str) -> None:
        """Forget a cluster entirely (KeyError if unknown)."""
        del self.clusters[cluster_id]

    def fail(self, mode: FaultMode, status: int = 500) -> None:
        """Misbehave on every registry request until `heal`."""
        if mode not in ("error", "failure", "reset", "stall"):
            raise ValueError(f"unknown fault {mode!r}")
        self.fault = Fault(mode, status)

    def heal(self) -> None:
        """Clear the fault; stalled requests are answered now."""
        self.fault = None
        if self._healed is not None:
            self._healed.set()
            self._healed = None

    def listed(self, query: dict[str, str]) -> list[dict[str, Any]]:
        """The clusters a ListCluster query returns, in clusterID order."""
        include_deleted = query.get("all", "") in ("true", "1")
        out = []
        for cid in sorted(self.clusters):
            cluster = self.clusters[cid]
            if cluster["status"] == "DELETED" and not include_deleted:
                continue
            if any(query.get(f) and cluster[f] != query[f] for f in FILTERS):
                continue
            out.append(dict(cluster, kubeConfig=""))
        return out

    def as_dict(self) -> dict[str, Any]:
        """State for the admin API (never the token itself)."""
        return {"token_set": self.token is not None,
                "fault": None if self.fault is None else {"mode": self.fault.mode,
                                                          "status": self.fault.status},
                "clusters": [self.clusters[c] for c in sorted(self.clusters)],
                "requests": dict(self.requests)}

    async def _misbehave(self, request: web.Request) -> web.StreamResponse | None:
        fault = self.fault
        if fault is None:
            return None
        self.count(fault.mode)
        if fault.mode == "error":
            return _json({"code": fault.status, "result": False,
                          "message": "upstream cluster manager is unavailable"}, fault.status)
        if fault.mode == "failure":
            return _json({"code": DB_ERROR, "message": "injected failure: db operation "
                          "error", "result": False, "data": []})
        if fault.mode == "reset":
            aborter(request)(True)
            return web.Response(status=500)  # never sent: the connection is gone
        if self._healed is None:
            self._healed = asyncio.Event()
        await self._healed.wait()
        return None


def _json(obj: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(obj), status=status, content_type="application/json")


def bcs_routes(sim: Simulator) -> list[web.RouteDef]:
    """The registry's API routes and its `/_sim/bcs` control routes."""
    cm = sim.bcs
    Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

    def guarded(handler: Handler) -> Handler:
        async def serve(request: web.Request) -> web.StreamResponse:
            if cm.token is not None and bearer(request) != cm.token:
                cm.count("unauthorized")
                return _json(UNAUTHORIZED, 401)
            refused = await cm._misbehave(request)
            if refused is not None:
                return refused
            cm.count("ok")
            return await handler(request)
        return serve

    async def list_clusters(request: web.Request) -> web.StreamResponse:
        data = cm.listed(dict(request.query))
        return _json({"code": SUCCESS, "message": "success", "result": True, "data": data,
                      "clusterExtraInfo": {c["clusterID"]: {
                          "canDeleted": True, "providerType": "k8s", "autoScale": False}
                          for c in data},
                      "web_annotations": None})

    async def get_cluster(request: web.Request) -> web.StreamResponse:
        cluster = cm.clusters.get(request.match_info["cluster_id"])
        if cluster is None:
            return _json({"code": DB_ERROR, "message": "record not found", "result": False,
                          "data": None, "extra": None, "web_annotations": None})
        return _json({"code": SUCCESS, "message": "success", "result": True,
                      "data": dict(cluster, kubeConfig=""), "extra": None,
                      "web_annotations": None})

    async def state(request: web.Request) -> web.StreamResponse:
        return _json(cm.as_dict())

    async def config(request: web.Request) -> web.StreamResponse:
        try:
            body = await _object(request)
            if "token" in body:
                cm.token = body["token"] or None
            if "fault" in body:
                fault = body["fault"]
                if fault is None:
                    cm.heal()
                else:
                    cm.fail(fault["mode"], int(fault.get("status", 500)))
        except (ValueError, KeyError, TypeError) as exc:
            return _json({"error": str(exc)}, 400)
        return _json(cm.as_dict())

    async def put_cluster(request: web.Request) -> web.StreamResponse:
        cluster_id = request.match_info["cluster_id"]
        try:
            body = await _object(request)
            simulate = bool(body.pop("simulate", False))
            cluster = cm.add(cluster_id, **body)
        except (ValueError, TypeError) as exc:
            return _json({"error": str(exc)}, 400)
        if simulate:
            sim.add_cluster(cluster_id)
        return _json(cluster)

    async def patch_cluster(request: web.Request) -> web.StreamResponse:
        cluster_id = request.match_info["cluster_id"]
        if cluster_id not in cm.clusters:
            return _json({"error": f"no BCS cluster {cluster_id!r}"}, 404)
        try:
            return _json(cm.update(cluster_id, **await _object(request)))
        except (ValueError, TypeError) as exc:
            return _json({"error": str(exc)}, 400)

    async def delete_cluster(request: web.Request) -> web.StreamResponse:
        cluster_id = request.match_info["cluster_id"]
        if cluster_id not in cm.clusters:
            return _json({"error": f"no BCS cluster {cluster_id!r}"}, 404)
        cm.remove(cluster_id)
        return _json({"removed": cluster_id})

    return [
        web.get(PREFIX + "/cluster", guarded(list_clusters)),
        web.get(PREFIX + "/cluster/{cluster_id}", guarded(get_cluster)),
        web.get("/_sim/bcs", state),
        web.post("/_sim/bcs/config", config),
        web.put("/_sim/bcs/clusters/{cluster_id}", put_cluster),
        web.patch("/_sim/bcs/clusters/{cluster_id}", patch_cluster),
        web.delete("/_sim/bcs/clusters/{cluster_id}", delete_cluster),
    ]


async def _object(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    body = orjson.loads(raw) if raw.strip() else {}
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    return body
