"""The bk-cmdb simulator's control API under `/_sim/`, for drivers in another process.

Why over HTTP: demos and benchmarks run the simulator as its own process, so the topology a
synchronizer needs (businesses, sets, modules, hosts) and the faults a test provokes must be
settable from outside. Each handler is a thin JSON shim over the same Python API in-process
tests use (`sim.model.hosts`, `sim.faults`, `sim.stats`, `sim.auth`).

    POST   /_sim/seed          {businesses: [{id, name?}], modules: [{biz_id, set, module}],
                                hosts: [{ip, biz_id?, cloud_id?, id?}]}
                                -> {modules: [ids], hosts: [ids]}
    DELETE /_sim/hosts/{id}    remove a host;  DELETE /_sim/modules/{id}: remove a module
    POST   /_sim/faults        {kind, route?, count?, skip?, status?, retry_after?, code?,
                                message?, delay?};  DELETE: clear all
    GET    /_sim/stats         {requests: {route: n}, largest_batch: {route: n}, rejected_auth}
    DELETE /_sim/stats         reset the statistics
    POST   /_sim/auth          {mode?, app_code?, app_secret?, denied_users?, denied_apps?}
    GET    /_sim/state         every table of the model
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

if TYPE_CHECKING:
    from .server import BkCmdbSimulator

Handler = Callable[[web.Request], Awaitable[web.Response]]
AUTH_KEYS = ("mode", "app_code", "app_secret")


def _reply(obj: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS), status=status,
                        content_type="application/json")


async def _json(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    try:
        body = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError as exc:
        raise web.HTTPBadRequest(text=f"the body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="the body must be a JSON object")
    return body


def admin_routes(sim: BkCmdbSimulator) -> list[web.RouteDef]:
    """The `/_sim/` routes bound to one simulator."""
    hosts = sim.model.hosts

    async def seed(request: web.Request) -> web.Response:
        body = await _json(request)
        try:
            for biz in body.get("businesses", []):
                hosts.add_business(int(biz["id"]), biz.get("name"))
            modules = [hosts.add_module(int(m["biz_id"]), str(m["set"]), str(m["module"]))
                       for m in body.get("modules", [])]
            made = [hosts.add_host(str(h["ip"]), biz_id=h.get("biz_id"),
                                   cloud_id=int(h.get("cloud_id", 0)), host_id=h.get("id"))
                    for h in body.get("hosts", [])]
        except (KeyError, TypeError, ValueError) as exc:
            raise web.HTTPBadRequest(text=f"bad seed entry: {exc!r}") from None
        return _reply({"modules": modules, "hosts": made})

    async def remove_host(request: web.Request) -> web.Response:
        hosts.remove_host(int(request.match_info["id"]))
        return _reply({})

    async def remove_module(request: web.Request) -> web.Response:
        hosts.remove_module(int(request.match_info["id"]))
        return _reply({})

    async def add_fault(request: web.Request) -> web.Response:
        body = await _json(request)
        try:
            fault = sim.fail(**body)
        except (TypeError, ValueError) as exc:
            raise web.HTTPBadRequest(text=f"bad fault: {exc}") from None
        return _reply({"queued": len(sim.faults.faults), "kind": fault.kind})

    async def clear_faults(request: web.Request) -> web.Response:
        sim.faults.clear()
        return _reply({})

    async def stats(request: web.Request) -> web.Response:
        return _reply(sim.stats.as_dict())

    async def reset_stats(request: web.Request) -> web.Response:
        sim.stats.reset()
        return _reply({})

    async def auth(request: web.Request) -> web.Response:
        body = await _json(request)
        for key in AUTH_KEYS:
            if key in body:
                setattr(sim.auth, key, str(body[key]))
        for key in ("denied_users", "denied_apps"):
            if key in body:
                setattr(sim.auth, key, set(body[key]))
        if sim.auth.mode not in ("gateway", "direct"):
            raise web.HTTPBadRequest(text=f"unknown auth mode {sim.auth.mode!r}")
        return _reply({"mode": sim.auth.mode})

    async def state(request: web.Request) -> web.Response:
        return _reply(sim.model.snapshot())

    return [
        web.post("/_sim/seed", seed),
        web.delete("/_sim/hosts/{id:\\d+}", remove_host),
        web.delete("/_sim/modules/{id:\\d+}", remove_module),
        web.post("/_sim/faults", add_fault),
        web.delete("/_sim/faults", clear_faults),
        web.get("/_sim/stats", stats),
        web.delete("/_sim/stats", reset_stats),
        web.post("/_sim/auth", auth),
        web.get("/_sim/state", state),
    ]
