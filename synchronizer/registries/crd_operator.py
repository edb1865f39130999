"""The SyncCluster operator: kopf, embedded, running only while this instance is master.

How kopf is embedded, and why this way (kopf's docs/embedding.rst and its sources,
`kopf/_core/reactor/running.py`): kopf gets an event loop of its own, in a thread of its
own, started with `kopf.operator(registry=..., settings=..., standalone=True,
stop_flag=..., ready_flag=...)`. Not in our loop, because when kopf's root tasks end it
cancels every task created in its loop after it started - here that would be every
reconciler started since - and in the main thread it would take over SIGINT/SIGTERM. In
its own thread it does neither (it logs that OS signals are ignored; that line is
filtered out). The thread is stopped with the stop flag and joined with a bound.
`settings.process.ultimate_exiting_timeout` is None, because kopf's last resort sends
SIGKILL to its thread - that is, to the whole process.

Settings: standalone (no peering: one master, one watcher, and the peering CRDs are not
installed); our own finalizer (`FINALIZER`) and annotation prefix for kopf's progress and
diff-base, so nothing of kopf's default names ends up in the user's objects; Kubernetes
Events posted for explicit calls only (`kopf.warn` on an unusable spec).

The handlers are small on purpose. The registry is level-triggered (`crd.CrdRegistry`
lists the SyncClusters on every pull) and the status is written by `crd_status`, so the
operator's jobs are: kick the master's pull when a SyncCluster is created, changed or
resumed (so it is assigned within a second); post an Event when a spec is unusable; and
hold the finalizer on deletion until the cluster is stopped everywhere (and, with
`sync.on_cluster_removed: delete`, its rows soft-deleted): the delete handler waits on
the `Board` the master's status writer keeps, so a deletion made while no instance runs
is still carried out when one does.

kopf's thread talks to our loop only through `loop.call_soon_threadsafe` (the kick) and
by reading `Board` snapshots, which the loop replaces whole (an atomic reference swap).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any

import kopf

from .crd_status import Board
from .home import GROUP, PLURAL, VERSION, HomeCluster
from .synccluster import INVALID, cluster_id_of, hold_reason, source_of, spec_of

log = logging.getLogger(__name__)

FINALIZER = f"{GROUP}/finalizer"
"""Holds a deleted SyncCluster until its cluster is stopped (and its rows dealt with)."""
ANNOTATIONS = GROUP
"""Prefix of kopf's bookkeeping annotations on SyncClusters."""
READY_TIMEOUT = 60.0
"""Seconds kopf may take to log in and start watching."""
STOP_TIMEOUT = 15.0
"""Seconds kopf's thread may take to stop before it is abandoned (it is a daemon thread)."""
DELETE_WAIT = 120.0
"""Seconds one run of the delete handler waits for the cluster to stop before kopf retries
it (a retry logs an error line, so it is not done every second)."""
DELETE_POLL = 0.25
"""Seconds between two looks at the board while a delete waits."""
SIGNALS_NOTE = "OS signals are ignored: running not in the main thread."


class _NoSignalNote(logging.Filter):
    """kopf warns about OS signals in a non-main thread; embedding implies it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != SIGNALS_NOTE


def kopf_settings() -> kopf.OperatorSettings:
    """The settings the module docstring explains."""
    settings = kopf.OperatorSettings()
    settings.peering.standalone = True
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=ANNOTATIONS)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATIONS, key="last-handled-configuration")
    settings.posting.enabled = True
    settings.posting.loggers = False
    settings.process.ultimate_exiting_timeout = None
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 30
    return settings


class SyncClusterOperator:
    """kopf in its own thread; see the module docstring."""

    def __init__(self, *, home: HomeCluster, namespace: str, kick: Callable[[], None],
                 board: Callable[[], Board], pulls_started: Callable[[], int]) -> None:
        self._home = home
        self._namespace = namespace
        self._kick = kick
        self._board = board
        self._pulls_started = pulls_started
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._deleting_since: dict[str, int] = {}

    # -- the handlers (run in kopf's thread and loop) -------------------------------------

    def _kick_threadsafe(self) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # our loop is closing
                loop.call_soon_threadsafe(self._kick)

    def registry(self) -> kopf.OperatorRegistry:
        """The handlers, in a registry of their own (never kopf's global one)."""
        registry = kopf.OperatorRegistry()
        home = self._home

        @kopf.on.login(registry=registry)
        def login(**_: Any) -> kopf.ConnectionInfo:
            loaded = home.loaded()
            scheme, _, token = (loaded.authorization or "").partition(" ")
            return kopf.ConnectionInfo(
                server=loaded.server, ca_path=loaded.ca_file, insecure=not loaded.verify,
                scheme=scheme or None, token=token or None,
                certificate_path=loaded.cert_file, private_key_path=loaded.key_file,
                default_namespace=self._namespace or None)

        async def changed(body: Any, *, warn: bool) -> None:
            spec = spec_of(body)
            if warn and spec.hold is not None and hold_reason(spec.hold)[0] == INVALID:
                kopf.warn(body, reason=INVALID, message=hold_reason(spec.hold)[1])
            self._kick_threadsafe()

        @kopf.on.create(GROUP, VERSION, PLURAL, registry=registry)
        async def created(body: Any, **_: Any) -> None:
            await changed(body, warn=True)

        @kopf.on.update(GROUP, VERSION, PLURAL, field="spec", registry=registry)
        async def updated(body: Any, **_: Any) -> None:
            await changed(body, warn=True)

        @kopf.on.resume(GROUP, VERSION, PLURAL, registry=registry)
        async def resumed(body: Any, **_: Any) -> None:
            await changed(body, warn=False)

        @kopf.on.delete(GROUP, VERSION, PLURAL, registry=registry)
        async def deleted(body: Any, meta: Any, **_: Any) -> None:
            source = source_of(body)
            uid = str(meta.get("uid") or source)
            since = self._deleting_since.setdefault(uid, self._pulls_started())
            self._kick_threadsafe()
            waiting: str | None = None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(DELETE_WAIT):
                    while True:
                        waiting = self._board().waiting_for(cluster_id_of(body), source, since)
                        if waiting is None:
                            break
                        await asyncio.sleep(DELETE_POLL)
            if waiting is not None:
                raise kopf.TemporaryError(f"waiting: {waiting}", delay=1)
            self._deleting_since.pop(uid, None)

        return registry

    # -- lifecycle (our loop) ---------------------------------------------------------------

    def _thread_main(self) -> None:
        try:
            asyncio.run(kopf.operator(
                registry=self.registry(), settings=kopf_settings(), standalone=True,
                clusterwide=not self._namespace,
                namespaces=[self._namespace] if self._namespace else [],
                stop_flag=self._stop, ready_flag=self._ready))
        except BaseException as exc:  # handed to `run`, never lost in the thread
            self._error = exc

    async def run(self) -> None:
        """Run kopf until cancelled (stand-down, shutdown); raise if kopf ends by itself."""
        self._loop = asyncio.get_running_loop()
        self._stop.clear()
        self._ready.clear()
        self._error = None
        kopf_log = logging.getLogger("kopf")
        note = _NoSignalNote()
        logging.getLogger("kopf._core.reactor.running").addFilter(note)
        if kopf_log.level == logging.NOTSET and not log.isEnabledFor(logging.DEBUG):
            kopf_log.setLevel(logging.WARNING)  # per-handler chatter is debugging detail
        ended = asyncio.Event()
        loop = self._loop

        def main() -> None:
            try:
                self._thread_main()
            finally:
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(ended.set)

        self._thread = threading.Thread(target=main, name="kopf-synccluster", daemon=True)
        self._thread.start()
        log.info("SyncCluster operator started (%s)",
                 f"namespace {self._namespace}" if self._namespace else "every namespace")
        try:
            await ended.wait()
            raise RuntimeError(f"the SyncCluster operator stopped: {self._error!r}")
        finally:
            self._stop.set()
            if not ended.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(STOP_TIMEOUT):
                        await asyncio.shield(ended.wait())
                if not ended.is_set():
                    log.error("the SyncCluster operator did not stop within %.0f s;"
                              " abandoned", STOP_TIMEOUT)
            logging.getLogger("kopf._core.reactor.running").removeFilter(note)
            log.info("SyncCluster operator stopped")

    async def wait_ready(self) -> None:
        """Wait until kopf has started (logged in, handlers registered)."""
        async with asyncio.timeout(READY_TIMEOUT):
            while not self._ready.is_set():
                if self._error is not None:
                    raise RuntimeError(f"the SyncCluster operator failed: {self._error!r}")
                await asyncio.sleep(0.05)
