"""The container-server pod API of the original design, as an in-memory model.

BCS's first synchronizer wrote each pod as one CMDB `pod` object placed under a business
module (`bk_module_id`), with flat `bk_pod_*` string fields, through
`/api/v3/{create,update,delete,findmany}/container/bk_biz_id/{biz}/pod`. Only that client is
public (docs/bkcmdb-api.md), so the server rules here are our reading of it, each marked:

- a pod is identified by `(bk_pod_cluster, bk_pod_namespace, bk_pod_name)` — the condition the
  original updated and deleted by — and a second create of the same key answers 1199014
  (assumption: the server's uniqueness rule is not public);
- `bk_module_id` must be a module of the business (assumption: 1199006 `bk_module_id`);
- update and delete take an equality `condition` and answer how many pods they touched;
  an empty condition is refused (assumption: no server would let it match every pod);
- `findmany` filters with `pod_property_filter` and pages like every bk-cmdb list; without a
  `page` it answers everything, as the original client (which sent none) relied on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from . import codes
from .codes import refuse
from .model_hosts import HostsModel
from .query import compile_filter, select

KEY_FIELDS = ("bk_pod_cluster", "bk_pod_namespace", "bk_pod_name")
"""What names one container-server pod (assumed unique, see the module docstring)."""


def _key(pod: Mapping[str, Any]) -> tuple[str, str, str]:
    return (str(pod.get("bk_pod_cluster", "")), str(pod.get("bk_pod_namespace", "")),
            str(pod.get("bk_pod_name", "")))


@dataclass(slots=True)
class ContainerPodsModel:
    """CMDB `pod` objects of the container-server API, per business."""

    hosts: HostsModel
    pods: dict[int, dict[str, Any]] = field(default_factory=dict)
    _next_id: int = 1

    def _check_biz(self, biz_id: int) -> None:
        if biz_id not in self.hosts.businesses:
            raise refuse(codes.PARAMS_IS_INVALID, "bk_biz_id")

    def _check_module(self, biz_id: int, pod: Mapping[str, Any]) -> None:
        module = pod.get("bk_module_id")
        if not isinstance(module, int) or self.hosts.module_biz(module) != biz_id:
            raise refuse(codes.PARAMS_INVALID, "bk_module_id")

    def _clash(self, key: tuple[str, str, str], *, ignore: int | None = None) -> bool:
        return any(_key(p) == key and pid != ignore for pid, p in self.pods.items())

    def create(self, biz_id: int, body: Mapping[str, Any]) -> dict[str, Any]:
        """`POST /create/container/bk_biz_id/{biz}/pod` with `{"pod": {...}}`."""
        self._check_biz(biz_id)
        pod = body.get("pod")
        if not isinstance(pod, Mapping):
            raise refuse(codes.PARAMS_NEED_SET, "pod")
        for name in KEY_FIELDS:
            if not pod.get(name):
                raise refuse(codes.PARAMS_NEED_SET, name)
        self._check_module(biz_id, pod)
        key = _key(pod)
        if self._clash(key):
            raise refuse(codes.DUPLICATE_ITEM, ", ".join(
                f'{n}: "{v}"' for n, v in zip(KEY_FIELDS, key, strict=True)))
        pid = self._next_id
        self._next_id += 1
        self.pods[pid] = {**pod, "bk_pod_id": pid, "bk_biz_id": biz_id}
        return {"created": {"id": pid, "origin_index": 0}}

    def _matching(self, biz_id: int, condition: Any) -> list[int]:
        if not isinstance(condition, Mapping) or not condition:
            raise refuse(codes.PARAMS_NEED_SET, "condition")
        return [pid for pid, pod in sorted(self.pods.items()) if pod["bk_biz_id"] == biz_id
                and all(pod.get(k) == v for k, v in condition.items())]

    def update(self, biz_id: int, body: Mapping[str, Any]) -> dict[str, Any]:
        """`PUT /update/container/bk_biz_id/{biz}/pod` with `{"condition", "data"}`."""
        self._check_biz(biz_id)
        data = body.get("data")
        if not isinstance(data, Mapping) or not data:
            raise refuse(codes.PARAMS_NEED_SET, "data")
        ids = self._matching(biz_id, body.get("condition"))
        if "bk_module_id" in data:
            self._check_module(biz_id, data)
        for pid in ids:
            merged = {**self.pods[pid], **data, "bk_pod_id": pid, "bk_biz_id": biz_id}
            if self._clash(_key(merged), ignore=pid):
                raise refuse(codes.DUPLICATE_ITEM, "bk_pod_name")
        for pid in ids:
            self.pods[pid] = {**self.pods[pid], **data, "bk_pod_id": pid, "bk_biz_id": biz_id}
        return {"updated_count": len(ids)}

    def delete(self, biz_id: int, body: Mapping[str, Any]) -> dict[str, Any]:
        """`DELETE /delete/container/bk_biz_id/{biz}/pod` with `{"condition"}`."""
        self._check_biz(biz_id)
        ids = self._matching(biz_id, body.get("condition"))
        for pid in ids:
            del self.pods[pid]
        return {"deleted_count": len(ids)}

    def list(self, biz_id: int, body: Mapping[str, Any]) -> dict[str, Any]:
        """`POST /findmany/container/bk_biz_id/{biz}/pod`: filtered by properties, paged."""
        self._check_biz(biz_id)
        rows = [pod for _, pod in sorted(self.pods.items()) if pod["bk_biz_id"] == biz_id]
        expr = body.get("pod_property_filter") or None
        if body.get("page") is None:
            predicate = compile_filter(expr)
            return {"count": 0, "info": [dict(r) for r in rows if predicate(r)]}
        renamed = [{**row, "id": row["bk_pod_id"]} for row in rows]
        result = select(renamed, filter=expr, page=body["page"], fields=body.get("fields"))
        for row in result["info"]:
            row.pop("id", None)
        return result
