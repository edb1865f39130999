"""The HTTP surfaces: /healthz, /readyz, /status (and the status page) on `port`, and
/metrics on `metric_port`.

Thin by design: handlers call providers the composition root hands in, so this module
knows nothing of reconcilers, stores or ZooKeeper. Both ports are always served (the Go
original served only one); if they are equal, one server carries all routes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

StatusProvider = Callable[[], Awaitable[dict[str, Any]]]
ReadinessProvider = Callable[[], tuple[bool, str]]
View = Callable[[Mapping[str, str]], Awaitable[Any]]
"""A read-only JSON view: query parameters in, a JSON-ready value out (`LookupError`: 404,
`ValueError`: 400)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpProviders:
    """What the handlers read: a status document, readiness with a reason, a metrics page,
    further JSON views by path (`/status/...`), and routes of other APIs on `port` (the
    admin API brings its own, with its own authentication)."""

    status: StatusProvider
    ready: ReadinessProvider
    metrics: Callable[[], bytes]
    views: Mapping[str, View] = field(default_factory=dict)
    routes: Sequence[web.RouteDef] = ()


def _page() -> bytes:
    try:
        return resources.files("synchronizer").joinpath("status.html").read_bytes()
    except FileNotFoundError:
        return b"<!doctype html><title>bkcmdb-synchronizer</title><a href=/status>/status</a>"


def _api_routes(providers: HttpProviders) -> list[web.RouteDef]:
    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(_: web.Request) -> web.Response:
        ok, reason = providers.ready()
        return web.Response(text=reason + "\n", status=200 if ok else 503)

    async def status(_: web.Request) -> web.Response:
        body = orjson.dumps(await providers.status(), option=orjson.OPT_INDENT_2)
        return web.Response(body=body, content_type="application/json")

    page = _page()

    async def index(_: web.Request) -> web.Response:
        return web.Response(body=page, content_type="text/html", charset="utf-8")

    def view_handler(view: View) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handler(request: web.Request) -> web.Response:
            try:
                doc = await view(request.query)
            except LookupError as exc:
                return web.json_response({"error": str(exc)}, status=404)
            except ValueError as exc:
                return web.json_response({"error": str(exc)}, status=400)
            return web.Response(body=orjson.dumps(doc), content_type="application/json")
        return handler

    views = [web.get(path, view_handler(view)) for path, view in providers.views.items()]
    return [web.get("/healthz", healthz), web.get("/readyz", readyz),
            web.get("/status", status), web.get("/", index), *views, *providers.routes]


def _metric_routes(providers: HttpProviders) -> list[web.RouteDef]:
    async def metrics(_: web.Request) -> web.Response:
        # In a thread: rendering a fleet's series is pure Python (about 0.5 s for 200
        # clusters of all kinds); on the loop it would stall every watch and every write
        # for that long at each scrape. The page reads copies of the series maps
        # (`series.Family.metric`), so the loop keeps updating meanwhile.
        response = web.Response(body=await asyncio.to_thread(providers.metrics))
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    return [web.get("/metrics", metrics)]


class HttpServer:
    """Serves the API and the metrics on their ports until `stop()`."""

    def __init__(self, *, address: str, port: int, metric_port: int,
                 providers: HttpProviders) -> None:
        self._address = address
        self._ports = (port, metric_port)
        self._providers = providers
        self._runners: list[web.AppRunner] = []
        self.bound: list[int] = []

    async def start(self) -> None:
        """Bind both ports; raise OSError (one line) if one is taken."""
        port, metric_port = self._ports
        plans = [(port, _api_routes(self._providers) + (
            _metric_routes(self._providers) if metric_port == port else []))]
        if metric_port != port:
            plans.append((metric_port, _metric_routes(self._providers)))
        for bind_port, routes in plans:
            app = web.Application()
            app.add_routes(routes)
            runner = web.AppRunner(app, access_log=None, handle_signals=False)
            await runner.setup()
            site = web.TCPSite(runner, self._address, bind_port, reuse_address=True)
            try:
                await site.start()
            except OSError as exc:
                await runner.cleanup()
                await self.stop()
                raise OSError(f"cannot listen on {self._address}:{bind_port}: "
                              f"{exc.strerror or exc}") from None
            self._runners.append(runner)
            server = site._server
            sockets = getattr(server, "sockets", None) or []
            self.bound.append(sockets[0].getsockname()[1] if sockets else bind_port)

    async def stop(self) -> None:
        """Close the listeners."""
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()
