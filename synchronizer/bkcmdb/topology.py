"""What bk-cmdb knows that the synchronizer only reads: hosts by IP, sets and modules by name.

- `find_hosts(biz_id, ips)`: a kube node is created on the host whose `bk_host_innerip` is the
  node's internal IP, and bk-cmdb accepts only a host of the node's own business, so hosts are
  looked up in that business (`list_biz_hosts`), 500 IPs per `in` rule, 500 hosts a page. A
  host may list several inner IPs (comma-separated); it answers for each of them.
- `biz_topology(biz_id)`: the container-server API places each pod under a module chosen by
  set and module *names*; `search_biz_inst_topo` answers the business's whole tree in one
  request, walked for `set` and `module` nodes at any depth (a custom mainline level may sit
  between business and set). `TopologyCache` keeps one tree per business and refreshes it on
  a miss, at most once per `min_refresh` seconds, so an unknown module name costs one
  request, not one per pod.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .batching import all_of, list_all, list_in, rule
from .ratelimit import Clock, loop_clock
from .transport import Endpoint, Transport
from .types import BizTopology, Host

K = "/api/v3"
LIST_BIZ_HOSTS = Endpoint("list_biz_hosts", "POST", f"{K}/hosts/app/{{biz}}/list_hosts")
SEARCH_TOPO = Endpoint("search_biz_inst_topo", "POST", f"{K}/find/topoinst/biz/{{biz}}")
HOST_FIELDS = ["bk_host_id", "bk_host_innerip", "bk_cloud_id"]
MIN_REFRESH = 30.0
"""Seconds between two refreshes of one business's tree caused by misses."""


class TopologyApi:
    """Host and business-topology lookups over one `Transport`."""

    def __init__(self, transport: Transport) -> None:
        self._t = transport

    async def find_hosts(self, biz_id: int, ips: Iterable[str]) -> dict[str, Host]:
        """`{ip: host}` for the given IPs that are hosts of business `biz_id`."""
        wanted = list(dict.fromkeys(ip for ip in ips if ip))

        async def fetch(part: list[str]) -> list[Host]:
            body = {"bk_biz_id": biz_id, "fields": HOST_FIELDS,
                    "host_property_filter": all_of(rule("bk_host_innerip", "in", part))}
            rows = await list_all(self._t, LIST_BIZ_HOSTS, body, params={"biz": biz_id})
            return [Host.parse(row) for row in rows]
        hosts = await list_in(wanted, fetch)
        found: dict[str, Host] = {}
        for host in sorted(hosts, key=lambda h: h.id):
            for ip in host.inner_ips:
                if ip in wanted:
                    found.setdefault(ip, host)
        return found

    async def biz_topology(self, biz_id: int) -> BizTopology:
        """The business's modules by `(set name, module name)`."""
        data = await self._t.call(SEARCH_TOPO, {"bk_biz_id": biz_id}, params={"biz": biz_id})
        modules: dict[tuple[str, str], int] = {}

        def walk(nodes: Any, set_name: str | None) -> None:
            for node in nodes if isinstance(nodes, list) else []:
                if not isinstance(node, Mapping):
                    continue
                kind, name = node.get("bk_obj_id"), str(node.get("bk_inst_name", ""))
                if kind == "module" and set_name is not None:
                    modules.setdefault((set_name, name), int(node.get("bk_inst_id", 0)))
                walk(node.get("child"), name if kind == "set" else set_name)
        walk(data, None)
        return BizTopology(biz_id=biz_id, modules=modules)


class TopologyCache:
    """One `BizTopology` per business, refreshed when a lookup misses (rate-limited)."""

    def __init__(self, api: TopologyApi, *, clock: Clock = loop_clock,
                 min_refresh: float = MIN_REFRESH) -> None:
        self._api = api
        self._clock = clock
        self._min_refresh = min_refresh
        self._trees: dict[int, tuple[float, BizTopology]] = {}

    async def module_id(self, biz_id: int, set_name: str, module_name: str) -> int | None:
        """The module's id, refreshing the business's tree once if it is not known yet."""
        entry = self._trees.get(biz_id)
        if entry is not None:
            found = entry[1].module_id(set_name, module_name)
            if found is not None or self._clock() - entry[0] < self._min_refresh:
                return found
        tree = await self._api.biz_topology(biz_id)
        self._trees[biz_id] = (self._clock(), tree)
        return tree.module_id(set_name, module_name)

    def forget(self, biz_id: int) -> None:
        """Drop a business's tree (a module was found deleted)."""
        self._trees.pop(biz_id, None)
