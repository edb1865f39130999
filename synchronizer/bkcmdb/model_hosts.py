"""The part of bk-cmdb the synchronizer reads but never writes: businesses, sets, modules, hosts.

A kube node must sit on a host of its cluster's business (bk-cmdb checks the module-host
relation), and a container-server pod goes under a module named by set and module name. Both
need this topology, which in a real bk-cmdb is made by people; in the model it is *seeded*
(Python API here, admin route in the simulator), and the API only reads it: `list_biz_hosts`
(hosts of one business filtered by property, paged) and `search_biz_inst_topo` (the
biz → set → module tree with ids and names).

Ids: businesses keep the ids they are seeded with; sets, modules and hosts take the next id of
their own sequence, as bk-cmdb does per table, unless one is given.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from . import codes
from .codes import refuse
from .query import select


@dataclass(slots=True)
class HostRecord:
    """One host; `biz_id` None is the resource pool (no business)."""

    id: int
    inner_ip: str
    cloud_id: int = 0
    biz_id: int | None = None
    name: str = ""

    def row(self) -> dict[str, Any]:
        """The host as `list_biz_hosts` answers it."""
        return {"bk_host_id": self.id, "bk_host_innerip": self.inner_ip,
                "bk_cloud_id": self.cloud_id, "bk_host_name": self.name}


@dataclass(slots=True)
class HostsModel:
    """Businesses, their sets and modules, and hosts with their business relation."""

    businesses: dict[int, str] = field(default_factory=dict)
    sets: dict[int, tuple[int, str]] = field(default_factory=dict)
    """set id → (biz id, set name)"""
    modules: dict[int, tuple[int, str]] = field(default_factory=dict)
    """module id → (set id, module name)"""
    hosts: dict[int, HostRecord] = field(default_factory=dict)
    _next_set: int = 1
    _next_module: int = 1
    _next_host: int = 1

    # -- seeding ----------------------------------------------------------------------------------

    def add_business(self, biz_id: int, name: str | None = None) -> int:
        """Create (or rename) a business."""
        self.businesses[biz_id] = name or f"biz-{biz_id}"
        return biz_id

    def add_set(self, biz_id: int, name: str, *, set_id: int | None = None) -> int:
        """Create a set in a business (the business is created if absent); returns its id."""
        self.businesses.setdefault(biz_id, f"biz-{biz_id}")
        for sid, (biz, sname) in self.sets.items():
            if biz == biz_id and sname == name:
                return sid
        sid = set_id if set_id is not None else self._next_set
        self._next_set = max(self._next_set, sid + 1)
        self.sets[sid] = (biz_id, name)
        return sid

    def add_module(self, biz_id: int, set_name: str, name: str, *,
                   module_id: int | None = None) -> int:
        """Create a module in the named set (created if absent); returns the module's id."""
        sid = self.add_set(biz_id, set_name)
        for mid, (owner, mname) in self.modules.items():
            if owner == sid and mname == name:
                return mid
        mid = module_id if module_id is not None else self._next_module
        self._next_module = max(self._next_module, mid + 1)
        self.modules[mid] = (sid, name)
        return mid

    def remove_module(self, module_id: int) -> None:
        """Delete a module (as an operator might, under a running synchronizer)."""
        self.modules.pop(module_id, None)

    def add_host(self, inner_ip: str, *, biz_id: int | None = None, cloud_id: int = 0,
                 host_id: int | None = None, name: str = "") -> int:
        """Create a host with one inner IP, in a business or in the resource pool."""
        if biz_id is not None:
            self.businesses.setdefault(biz_id, f"biz-{biz_id}")
        hid = host_id if host_id is not None else self._next_host
        self._next_host = max(self._next_host, hid + 1)
        self.hosts[hid] = HostRecord(hid, inner_ip, cloud_id, biz_id, name)
        return hid

    def remove_host(self, host_id: int) -> None:
        """Delete a host."""
        self.hosts.pop(host_id, None)

    # -- reads ------------------------------------------------------------------------------------

    def host_biz(self, host_id: int) -> int | None:
        """The business a host belongs to, or None (unknown host or resource pool)."""
        host = self.hosts.get(host_id)
        return None if host is None else host.biz_id

    def module_biz(self, module_id: int) -> int | None:
        """The business a module belongs to, or None if there is no such module."""
        entry = self.modules.get(module_id)
        if entry is None:
            return None
        owner = self.sets.get(entry[0])
        return None if owner is None else owner[0]

    def list_biz_hosts(self, biz_id: int, body: Mapping[str, Any]) -> dict[str, Any]:
        """`POST /hosts/app/{bk_biz_id}/list_hosts`: the business's hosts, filtered and paged."""
        if biz_id not in self.businesses:
            raise refuse(codes.PARAMS_IS_INVALID, "bk_biz_id")
        rows = [host.row() for host in sorted(self.hosts.values(), key=lambda h: h.id)
                if host.biz_id == biz_id]
        fields = body.get("fields")
        result = select(rows, filter=body.get("host_property_filter") or None,
                        page={**(body.get("page") or {}), "sort": "bk_host_id"}, fields=fields)
        return result

    def topology(self, biz_id: int) -> list[dict[str, Any]]:
        """`POST /find/topoinst/biz/{bk_biz_id}`: the business's set → module tree."""
        if biz_id not in self.businesses:
            raise refuse(codes.PARAMS_IS_INVALID, "bk_biz_id")
        sets = []
        for sid, (biz, sname) in sorted(self.sets.items()):
            if biz != biz_id:
                continue
            modules = [{"bk_inst_id": mid, "bk_inst_name": mname, "bk_obj_id": "module",
                        "bk_obj_name": "module", "default": 0, "child": []}
                       for mid, (owner, mname) in sorted(self.modules.items()) if owner == sid]
            sets.append({"bk_inst_id": sid, "bk_inst_name": sname, "bk_obj_id": "set",
                         "bk_obj_name": "set", "default": 0, "child": modules})
        return [{"bk_inst_id": biz_id, "bk_inst_name": self.businesses[biz_id],
                 "bk_obj_id": "biz", "bk_obj_name": "business", "default": 0, "child": sets}]
