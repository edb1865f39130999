"""The naive peer: how a synchronizer is usually first written, to compare ours with.

`python -m bench.naive_peer` obeys the same commands as `bench.ours` (ping, start, resync, arm,
catch_up, commits, exit; see there). What it does is the textbook loop:

- full sync: the official kubernetes Python client lists every Pod
  (`CoreV1Api.list_pod_for_all_namespaces`, pages of `--page-size`, so it does not hold
  100,000 model objects at once — the one concession to not running out of memory), each
  Pod is deserialised into the client's model classes (`V1Pod`), projected to the same
  columns as ours, and written with one single-row, autocommit
  `INSERT ... ON DUPLICATE KEY UPDATE` (pymysql), no batching, no checksum: every row is
  written every time, and the no-change re-sync writes them all again.
- watch: `kubernetes.watch.Watch().stream(list_pod_for_all_namespaces, resource_version=...)`
  from the list's version, in a thread; one autocommit upsert per event (a DELETED event
  upserts the row with state `Deleted`).

It writes the same `pods` table (the schema is created by `open_store`, as for ours), so
the database does the same work per row; the difference is batching, the client models,
and one round trip per row.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import threading
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import pymysql
from kubernetes import client, watch

from synchronizer.cmdb import open_store
from synchronizer.kinds.pods import DEFAULT_MODULE, DEFAULT_SET, MODULE_ANNOTATION, SET_ANNOTATION

from .common import serve_commands, vm_hwm_kib

COLUMNS = ("cluster_id", "uid", "namespace", "name", "biz_id", "set_name", "module_name",
           "node_name", "host_ip", "pod_ip", "phase", "labels", "containers",
           "resource_version", "checksum", "query_at", "state")
UPSERT = (f"INSERT INTO pods ({', '.join(COLUMNS)}) VALUES ({', '.join(['%s'] * len(COLUMNS))})"
          " ON DUPLICATE KEY UPDATE "
          + ", ".join(f"{c} = VALUES({c})" for c in COLUMNS[2:]))


def row(pod: client.V1Pod, *, cluster: str, biz_id: int, deleted: bool) -> tuple[Any, ...]:
    """The `pods` row of a V1Pod (the version 1 columns and rules of `synchronizer.kinds.pods`)."""
    meta, spec, status = pod.metadata, pod.spec, pod.status
    annotations = meta.annotations or {}
    set_name, module_name = annotations.get(SET_ANNOTATION), annotations.get(MODULE_ANNOTATION)
    if not (set_name and module_name):
        set_name, module_name = DEFAULT_SET, DEFAULT_MODULE
    ids = {s.name: s.container_id or "" for s in (status.container_statuses or [])}
    containers = [{"name": c.name, "image": c.image or "", "container_id": ids.get(c.name, "")}
                  for c in spec.containers]
    return (cluster, meta.uid, meta.namespace, meta.name, biz_id, set_name, module_name,
            spec.node_name or "", status.host_ip or "", status.pod_ip or "",
            status.phase or "", json.dumps(meta.labels or {}, sort_keys=True),
            json.dumps(containers), int(meta.resource_version), "",
            datetime.now(UTC).replace(tzinfo=None), "Deleted" if deleted else "Active")


class Naive:
    """The naive synchronizer of one cluster."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        u = urlsplit(args.dsn)
        self.db = dict(host=u.hostname or "127.0.0.1", port=u.port or 3306,
                       user=u.username or "root", password=u.password or "",
                       database=u.path.lstrip("/"), autocommit=True, charset="utf8mb4")
        asyncio.run(self._create_tables(args.dsn))
        self.version = ""
        self.seen = 0
        self.events = 0
        self.first_event: float | None = None
        self.log: list[tuple[str, int, float, float]] | None = None
        self.progress = threading.Condition()
        self.thread: threading.Thread | None = None
        self._cpu = 0.0

    @staticmethod
    async def _create_tables(dsn: str) -> None:
        store = await open_store(dsn)
        await store.close()

    def _api(self) -> client.CoreV1Api:
        config = client.Configuration()
        config.host = self.args.url
        return client.CoreV1Api(client.ApiClient(config))

    def full_sync(self) -> int:
        """List every Pod page by page and upsert each one; return how many."""
        api, a = self._api(), self.args
        conn = pymysql.connect(**self.db)
        n, token = 0, None
        with conn.cursor() as cur:
            while True:
                pods = api.list_pod_for_all_namespaces(limit=a.page_size, _continue=token)
                for pod in pods.items:
                    cur.execute(UPSERT, row(pod, cluster=a.cluster, biz_id=a.biz_id,
                                            deleted=False))
                    n += 1
                self.version = pods.metadata.resource_version
                token = pods.metadata._continue
                if not token:
                    break
        conn.close()
        return n

    def watch(self) -> None:
        """The watch loop: one upsert per event, forever (a daemon thread)."""
        api, a = self._api(), self.args
        conn = pymysql.connect(**self.db)
        cur = conn.cursor()
        stream = watch.Watch().stream(api.list_pod_for_all_namespaces,
                                      resource_version=self.version)
        for event in stream:
            received = time.time()  # the client has read and deserialised the event
            pod = event["object"]
            cur.execute(UPSERT, row(pod, cluster=a.cluster, biz_id=a.biz_id,
                                    deleted=event["type"] == "DELETED"))
            now = time.time()
            version = int(pod.metadata.resource_version)
            with self.progress:
                if self.first_event is None:
                    self.first_event = now
                self.events += 1
                if self.log is not None:
                    self.log.append((pod.metadata.uid, version, received, now))
                self.seen = max(self.seen, version)
                self.progress.notify_all()

    def handle(self, command: dict[str, Any]) -> dict[str, Any]:
        """Run one command; return its reply."""
        cmd = command["cmd"]
        if cmd == "ping":
            return {}
        if cmd in ("start", "resync"):
            started, cpu = time.perf_counter(), time.process_time()
            n = self.full_sync()
            reply = {"seconds": time.perf_counter() - started, "rows": n,
                     "cpu": time.process_time() - cpu, "vmhwm_kib": vm_hwm_kib()}
            if self.thread is None:
                self.seen = int(self.version)
                self.thread = threading.Thread(target=self.watch, daemon=True)
                self.thread.start()
            return reply
        if cmd == "arm":
            with self.progress:
                self.events, self.first_event, self.log = 0, None, []
            self._cpu = time.process_time()
            return {}
        if cmd == "catch_up":
            target = int(command["rv"])
            with self.progress:
                self.progress.wait_for(lambda: self.seen >= target)
                return {"done": time.time(), "first_event": self.first_event,
                        "events": self.events, "rows": self.events, "written": self.events,
                        "cpu": time.process_time() - self._cpu}
        if cmd == "commits":
            with self.progress:
                return {"commits": list(self.log or [])}
        if cmd == "exit":
            usage = os.times()
            return {"vmhwm_kib": vm_hwm_kib(), "cpu": usage.user + usage.system}
        raise ValueError(f"unknown command {cmd!r}")


def main() -> None:
    """Entry point: the same options as `bench.ours` (the tuning ones are ignored)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", required=True)
    p.add_argument("--dsn", required=True)
    p.add_argument("--cluster", required=True)
    p.add_argument("--biz-id", type=int, default=2)
    p.add_argument("--page-size", type=int, default=500)
    args, _ = p.parse_known_args()
    serve_commands(Naive(args).handle)
    sys.stdout.flush()
    os._exit(0)  # the watch thread blocks in a socket read; do not wait for it


if __name__ == "__main__":
    main()
