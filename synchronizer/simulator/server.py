"""The simulated API server: many `SimCluster`s served over real HTTP by aiohttp.

Why real HTTP and not a fake client: the Kubernetes client is the part most likely to be
wrong about the wire (chunked watch streams, Status bodies, 410 as an ERROR event, continue
tokens, Retry-After), so tests drive it through a socket against a server that speaks the
protocol the way kube-apiserver does. Each cluster lives under `/clusters/<id>`; a cluster
named `default` is also served at the root, so `server: http://127.0.0.1:18080` works.

The Kubernetes API of every cluster is in `routes` (every built-in resource, installed
custom resources, discovery, `/version`, `/healthz`, `/readyz`, `/livez`); the control API
for other processes is under `/_sim/` (see `admin`). `bcs` is the BCS cluster manager's
registry on the same port (`/bcsapi/v4/clustermanager/v1/...`); its token, when set, makes
the server act as the BCS API gateway: every request under `/clusters/<id>/` needs it too.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self

from aiohttp import web

from .admin import admin_routes
from .bcs import ClusterManager, bcs_routes
from .churn import ChurnProgress, churn
from .cluster import SimCluster
from .controllers import Controllers
from .routes import api_routes


class Simulator:
    """Hosts simulated clusters on one HTTP port; also the owner of admin-started churns."""

    def __init__(self, *, bookmark_interval: float = 1.0, history_limit: int | None = 100_000,
                 seed: int | None = None) -> None:
        self.bookmark_interval = bookmark_interval
        self.history_limit = history_limit
        self.seed = seed
        self.host = "127.0.0.1"
        self.port: int | None = None
        """The bound port; kept after `stop` so `start(port=sim.port)` restarts in place."""
        self.bcs = ClusterManager()
        """The BCS cluster manager's registry (and the gateway token for /clusters/)."""
        self._clusters: dict[str, SimCluster] = {}
        self._runner: web.AppRunner | None = None
        self._churns: dict[str, tuple[asyncio.Task[ChurnProgress], ChurnProgress]] = {}
        self._controllers: dict[str, Controllers] = {}

    # -- clusters ------------------------------------------------------------------------------

    def add_cluster(self, cluster_id: str, **options: Any) -> SimCluster:
        """Create (or return the existing) cluster `cluster_id`; options go to `SimCluster`."""
        if cluster_id not in self._clusters:
            options.setdefault("bookmark_interval", self.bookmark_interval)
            options.setdefault("history_limit", self.history_limit)
            if self.seed is not None:
                options.setdefault("seed", self.seed + len(self._clusters))
            self._clusters[cluster_id] = SimCluster(cluster_id, **options)
        return self._clusters[cluster_id]

    def add_bcs_cluster(self, cluster_id: str, **fields: Any) -> SimCluster:
        """Simulate a cluster and register it in the BCS cluster manager (`fields` by
        their BCS names: businessID="2", status="RUNNING", clusterType="single", ...)."""
        self.bcs.add(cluster_id, **fields)
        return self.add_cluster(cluster_id)

    def remove_cluster(self, cluster_id: str) -> None:
        """Forget a cluster; its watches are cut and its requests answer 404."""
        cluster = self._clusters.pop(cluster_id)
        cluster.drop_streams()
        self.stop_churn(cluster_id)
        controllers = self._controllers.pop(cluster_id, None)
        if controllers is not None:
            controllers.stop()

    def cluster(self, cluster_id: str) -> SimCluster:
        """The cluster `cluster_id` (KeyError if absent)."""
        return self._clusters[cluster_id]

    @property
    def clusters(self) -> Mapping[str, SimCluster]:
        """Every cluster by id."""
        return self._clusters

    @property
    def base_url(self) -> str:
        """`http://host:port` of the running server."""
        if self.port is None:
            raise RuntimeError("simulator not started")
        return f"http://{self.host}:{self.port}"

    def url_for(self, cluster_id: str) -> str:
        """The API server URL of one cluster: `http://host:port/clusters/<id>`."""
        return f"{self.base_url}/clusters/{cluster_id}"

    # -- churn ---------------------------------------------------------------------------------

    def start_churn(self, cluster_id: str, *, events: int | None, rate: float | None,
                    seed: int | None = None) -> ChurnProgress:
        """Run `churn` on a cluster in the background (replacing a running one)."""
        self.stop_churn(cluster_id)
        progress = ChurnProgress(target=events)
        task = asyncio.get_running_loop().create_task(churn(
            self.cluster(cluster_id), events=events, rate=rate, rng=random.Random(seed),
            progress=progress))
        self._churns[cluster_id] = (task, progress)
        return progress

    def churn_progress(self, cluster_id: str) -> ChurnProgress | None:
        """The latest churn's progress for a cluster, or None if none was started."""
        entry = self._churns.get(cluster_id)
        return None if entry is None else entry[1]

    async def wait_churn(self, cluster_id: str) -> ChurnProgress:
        """Wait for a cluster's churn to finish (or be cancelled) and return its progress."""
        task, progress = self._churns[cluster_id]
        await asyncio.gather(task, return_exceptions=True)
        return progress

    def controllers(self, cluster_id: str, *, seed: int | None = None) -> Controllers:
        """The churn streams of every kind for a cluster (made on first use; `seed`
        defaults to one derived from the simulator's)."""
        if cluster_id not in self._controllers:
            if seed is None and self.seed is not None:
                seed = self.seed + 1000 + len(self._controllers)
            self._controllers[cluster_id] = Controllers(self.cluster(cluster_id), seed=seed)
        return self._controllers[cluster_id]

    def stop_churn(self, cluster_id: str) -> None:
        """Cancel a running churn (its progress stays readable)."""
        entry = self._churns.get(cluster_id)
        if entry is not None and not entry[0].done():
            entry[0].cancel()

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Bind and serve; returns the base URL. Port 0 picks a free port."""
        if self._runner is not None:
            raise RuntimeError("simulator already started")
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.add_routes(api_routes(self))
        app.add_routes(admin_routes(self))
        app.add_routes(bcs_routes(self))
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True,
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
        """Cut every watch, cancel admin churns and close the port (clusters are kept)."""
        for cluster in self._clusters.values():
            cluster.drop_streams()
        tasks = [task for task, _ in self._churns.values() if not task.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for controllers in self._controllers.values():
            await controllers.aclose()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        if self._runner is None:
            await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()
