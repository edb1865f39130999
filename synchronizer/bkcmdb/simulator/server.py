"""The bk-cmdb simulator: the reference model served over real HTTP, as bk-cmdb serves it.

Why a server and not a fake client: the parts of our client most likely to be wrong are the
wire ones — paths, bodies, the two envelope dialects, auth headers, 429/5xx handling, what a
cut connection looks like — so tests drive the real client (httpx) through a socket. The
state is a `BkCmdbModel` (`sim.model`), which is the oracle: every request is translated into
one model call, and the model's `Refusal` becomes bk-cmdb's `result: false` answer.

Per request, in order: count it; check the credentials of the configured dialect (gateway or
direct); consult the fault script (delay, injected status or code, cut before or after
applying); parse the JSON body; record the batch size; apply it to the model; answer in the
dialect's envelope. Model calls never await, so each request is applied atomically.

Python API: `sim.model` (seed hosts and topology through `sim.model.hosts`), `sim.faults`
(`add(Fault(...))`), `sim.stats`, `sim.auth`; `await sim.start()` / `await sim.stop()`.
The same controls are under `/_sim/` for other processes (see `admin`).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from types import TracebackType
from typing import Any, Self

import orjson
from aiohttp import web

from .. import codes
from ..codes import Refusal
from ..model import BkCmdbModel
from .admin import admin_routes
from .faults import Fault, FaultScript, Stats
from .routes import ROUTES, Route
from .wire import AuthConfig, answer, check_auth, status_answer

log = logging.getLogger("synchronizer.bkcmdb.simulator")


def _cut(request: web.Request) -> None:
    """Drop the connection with a reset, so the client sees it broken mid-request."""
    transport = request.transport
    if transport is None or transport.is_closing():
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


class BkCmdbSimulator:
    """bk-cmdb's kube, host, topology and container-server pod routes on one HTTP port."""

    def __init__(self, *, auth: AuthConfig | None = None, model: BkCmdbModel | None = None) -> None:
        self.auth = auth or AuthConfig()
        self.model = model or BkCmdbModel(supplier_account=self.auth.supplier_account)
        self.faults = FaultScript()
        self.stats = Stats()
        self.host = "127.0.0.1"
        self.port: int | None = None
        """The bound port; kept after `stop` so `start(port=sim.port)` restarts in place."""
        self._runner: web.AppRunner | None = None

    # -- Python API -------------------------------------------------------------------------------

    def fail(self, **fault: Any) -> Fault:
        """Queue a fault: `sim.fail(kind="status", status=429, retry_after=2, route=...)`."""
        return self.faults.add(Fault(**fault))

    @property
    def base_url(self) -> str:
        """`http://host:port` of the running server."""
        if self.port is None:
            raise RuntimeError("simulator not started")
        return f"http://{self.host}:{self.port}"

    # -- HTTP -------------------------------------------------------------------------------------

    def _handler(self, route: Route) -> Any:
        async def handle(request: web.Request) -> web.StreamResponse:
            return await self._serve(route, request)
        return handle

    async def _serve(self, route: Route, request: web.Request) -> web.StreamResponse:
        mode = self.auth.mode
        refusal = check_auth(self.auth, request)
        if refusal is not None:
            self.stats.rejected_auth += 1
            return refusal
        delay, fault = self.faults.take(route.name)
        if delay > 0:
            await asyncio.sleep(delay)
        raw = await request.read()
        try:
            body = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            body = None
        self.stats.record(route.name, route.batch(body) if isinstance(body, dict) else 0)
        if fault is not None and fault.kind == "cut_before":
            _cut(request)
            return web.Response(status=499)
        if fault is not None and fault.kind == "status":
            return status_answer(mode, fault.status, fault.retry_after, fault.message)
        if fault is not None and fault.kind == "result":
            return answer(mode, None, code=fault.code,
                          text=fault.message or codes.message(fault.code, "injected"))
        if not isinstance(body, dict):
            return answer(mode, None, code=1199000, text="Deserializing JSON data failed")
        try:
            data = route.apply(self.model, request.match_info, body)
        except Refusal as exc:
            response = answer(mode, None, code=exc.code, text=exc.text)
        else:
            response = answer(mode, data)
        if fault is not None and fault.kind == "cut":
            _cut(request)
            return web.Response(status=499)
        return response

    def _app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        for route in ROUTES:
            app.router.add_route(route.method, route.path, self._handler(route), name=route.name)
        app.add_routes(admin_routes(self))
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Bind and serve; returns the base URL. Port 0 picks a free port."""
        if self._runner is not None:
            raise RuntimeError("simulator already started")
        runner = web.AppRunner(self._app(), access_log=None, handler_cancellation=True,
                               shutdown_timeout=1.0)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port, reuse_address=True).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.host = host
        self.port = int(runner.addresses[0][1])
        return self.base_url

    async def stop(self) -> None:
        """Close the port; the model keeps its state, so a restart resumes it."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start(port=self.port or 0)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()
