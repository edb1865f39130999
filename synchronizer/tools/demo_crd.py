"""`demo --crd`: the demo cluster registered by a SyncCluster resource instead of the config.

The simulator also plays the home cluster (the SyncCluster CRD installed, namespace
`bkcmdb`); the instance runs with `registries.crd` pointing at it and no static cluster;
once it serves, the demo creates `SyncCluster bkcmdb/demo` over HTTP (as `kubectl apply`
would) and prints its status each time the operator changes it - Pending, then Running
with its owner, Ready/Synced, the pod count and the last full sync - so the declarative
loop is visible: the user writes `spec`, the product writes `status`.
"""

from __future__ import annotations

from typing import Any

import httpx

from synchronizer.settings import CrdRegistrySettings, RegistriesSettings, Settings
from synchronizer.simulator import SimCluster, Simulator
from synchronizer.simulator.crd import SYNC_CLUSTER_CRD, install_crd
from synchronizer.simulator.nodes import make_namespace

HOME = "home"
NAMESPACE = "bkcmdb"
PATH = f"/apis/bkcmdb.bkbcs.tencent.com/v1/namespaces/{NAMESPACE}/syncclusters"


def prepare_home(sim: Simulator) -> SimCluster:
    """The home cluster in the simulator: the CRD and the namespace."""
    home = sim.add_cluster(HOME)
    install_crd(home, SYNC_CLUSTER_CRD)
    home.create(make_namespace(NAMESPACE), resource="namespaces")
    return home


def crd_settings(settings: Settings, home_url: str) -> Settings:
    """The demo's settings with the cluster left to the SyncCluster registry."""
    registries = RegistriesSettings(crd=CrdRegistrySettings(enabled=True, server=home_url))
    return settings.model_copy(update={"clusters": [], "registries": registries})


def describe(obj: dict[str, Any]) -> str:
    """One line of a SyncCluster's status."""
    status = obj.get("status") or {}
    ready = next((c for c in status.get("conditions") or () if c.get("type") == "Ready"), {})
    return (f"demo: SyncCluster {NAMESPACE}/{obj['metadata']['name']}: "
            f"state={status.get('state', '-')} owner={status.get('owner') or '-'} "
            f"Ready={ready.get('status', '-')} ({ready.get('reason', '-')}) "
            f"pods={status.get('pods', '-')} lastFullSync={status.get('lastFullSync') or '-'}")


async def register_and_follow(sim: Simulator, home: SimCluster, cluster: str, biz_id: int
                              ) -> None:
    """Create the SyncCluster, then print its status on every change (until cancelled)."""
    async with httpx.AsyncClient(base_url=sim.url_for(HOME), timeout=10) as http:
        reply = await http.post(PATH, json={
            "apiVersion": "bkcmdb.bkbcs.tencent.com/v1", "kind": "SyncCluster",
            "metadata": {"name": cluster},
            "spec": {"clusterId": cluster, "bizId": biz_id, "server": sim.url_for(cluster)}})
        reply.raise_for_status()
    print(f"demo: created SyncCluster {NAMESPACE}/{cluster} (spec.bizId={biz_id}); its status"
          " is written by the operator", flush=True)

    def current() -> str:
        obj = home.get(NAMESPACE, cluster, resource="syncclusters")
        return describe(obj) if obj else ""

    shown = [""]
    while True:
        await home.wait_until(lambda: current() not in ("", shown[-1]))
        shown.append(current())
        print(shown[-1], flush=True)
