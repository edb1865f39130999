"""The container-server pod API of the original design (`api: container`).

Each pod is one CMDB `pod` object of a business, placed under a module (`bk_module_id`),
with flat `bk_pod_*` fields, named by `(bk_pod_cluster, bk_pod_namespace, bk_pod_name)` — the
condition the original BCS synchronizer updated and deleted by. Unlike the kube model a pod
here is updated in place. Requests are one pod each (the only confirmed shapes; see
docs/bkcmdb-api.md). `place` turns the pod's set/module annotations into a module id with the
`bkbcs`/`bkbcs` fallback, and says so when even the fallback is missing, so the caller can
report that business once and go on with the others.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import codes
from .batching import all_of, list_all, rule
from .errors import DuplicateError, RejectedError
from .topology import SEARCH_TOPO, TopologyCache
from .transport import Endpoint, Transport
from .types import ContainerPod, ContainerPodKey

K = "/api/v3"
CREATE_POD = Endpoint("create_pod", "POST", f"{K}/create/container/bk_biz_id/{{biz}}/pod")
UPDATE_POD = Endpoint("update_pod", "PUT", f"{K}/update/container/bk_biz_id/{{biz}}/pod")
DELETE_POD = Endpoint("delete_pod", "DELETE", f"{K}/delete/container/bk_biz_id/{{biz}}/pod")
LIST_PODS = Endpoint("list_pods", "POST", f"{K}/findmany/container/bk_biz_id/{{biz}}/pod")

SET_ANNOTATION = "set.bkcmdb.bkbcs.tencent.com"
MODULE_ANNOTATION = "module.bkcmdb.bkbcs.tencent.com"
DEFAULT_SET = "bkbcs"
DEFAULT_MODULE = "bkbcs"


class NoDefaultModule(RejectedError):
    """The business has neither the annotated module nor the `bkbcs`/`bkbcs` fallback."""


def _condition(key: ContainerPodKey) -> dict[str, str]:
    cluster, namespace, name = key
    return {"bk_pod_cluster": cluster, "bk_pod_namespace": namespace, "bk_pod_name": name}


class ContainerApi:
    """The container-server pod routes over one `Transport`."""

    def __init__(self, transport: Transport, topology: TopologyCache) -> None:
        self._t = transport
        self._topology = topology

    async def place(self, biz_id: int, annotations: Mapping[str, str]) -> int:
        """The module a pod goes under: its annotated set/module, else `bkbcs`/`bkbcs`."""
        set_name, module_name = annotations.get(SET_ANNOTATION), annotations.get(MODULE_ANNOTATION)
        if set_name and module_name:
            found = await self._topology.module_id(biz_id, set_name, module_name)
            if found is not None:
                return found
        found = await self._topology.module_id(biz_id, DEFAULT_SET, DEFAULT_MODULE)
        if found is None:
            raise NoDefaultModule(
                SEARCH_TOPO.name, f"business {biz_id} has no module {DEFAULT_SET}/{DEFAULT_MODULE} "
                f"(nor {set_name or '-'}/{module_name or '-'})", code=codes.NOT_FOUND)
        return found

    async def create_pod(self, biz_id: int, fields: Mapping[str, Any]) -> int:
        """Create one pod; if its key exists already, adopt it (idempotent). Returns its id."""
        pod_id, _ = await self.ensure_pod(biz_id, fields)
        return pod_id

    async def ensure_pod(self, biz_id: int, fields: Mapping[str, Any]) -> tuple[int, bool]:
        """Create one pod, or find the one with its key: `(id, adopted)`.

        `adopted` is True when the pod existed already; its fields may then be stale (a
        leftover of an earlier run), so a caller that cares updates it.
        """
        try:
            data = await self._t.call(CREATE_POD, {"pod": dict(fields)}, params={"biz": biz_id},
                                      write=True)
        except DuplicateError:
            key = (str(fields.get("bk_pod_cluster", "")), str(fields.get("bk_pod_namespace", "")),
                   str(fields.get("bk_pod_name", "")))
            found = [p for p in await self.list_pods(biz_id, key[0]) if p.key == key]
            if not found:
                raise
            return found[0].id, True
        created = data.get("created") if isinstance(data, Mapping) else None
        if not isinstance(created, Mapping) or not isinstance(created.get("id"), int):
            raise RejectedError(CREATE_POD.name, "the answer has no created id")
        return int(created["id"]), False

    async def update_pod(self, biz_id: int, key: ContainerPodKey,
                         data: Mapping[str, Any]) -> int:
        """Update one pod's fields in place; returns how many pods matched (0 or 1)."""
        answer = await self._t.call(UPDATE_POD, {"condition": _condition(key), "data": dict(data)},
                                    params={"biz": biz_id})
        return int(answer.get("updated_count", 0)) if isinstance(answer, Mapping) else 0

    async def delete_pod(self, biz_id: int, key: ContainerPodKey) -> int:
        """Delete one pod; returns how many matched (0 if it was already gone)."""
        answer = await self._t.call(DELETE_POD, {"condition": _condition(key)},
                                    params={"biz": biz_id})
        return int(answer.get("deleted_count", 0)) if isinstance(answer, Mapping) else 0

    async def list_pods(self, biz_id: int, cluster: str) -> list[ContainerPod]:
        """A cluster's pods in a business, paged by 500."""
        body = {"bk_biz_id": biz_id,
                "pod_property_filter": all_of(rule("bk_pod_cluster", "equal", cluster))}
        rows = await list_all(self._t, LIST_PODS, body, params={"biz": biz_id})
        return [ContainerPod.parse(row) for row in rows]

