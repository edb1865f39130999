"""Realistic Node and Namespace objects, and the ways a cluster changes its Nodes.

Why realistic: a Node is the object where "status-only noise" is loudest. kubelet rewrites
`status.conditions[].lastHeartbeatTime` on every node every few seconds to minutes, and a
Node's JSON is dominated by `status.images` (kubelet reports up to 50 images, with digests
and sizes: 8-15 KB of a Node's bytes). A CMDB that stores Nodes must ignore both, and a
benchmark must pay for parsing them, so Nodes made here carry them: addresses with the
InternalIP, `nodeInfo` with the kubelet version, four conditions with heartbeat and
transition times, capacity and allocatable, and a 50-entry image list drawn from a shared
pool (cheap to build for thousands of Nodes: the image dicts are shared, not copied).

The mutators change a Node in place the way a cluster does: a heartbeat (noise), a label
change, cordon and uncordon (`spec.unschedulable` with its taint), a kubelet upgrade, a
Ready condition that flips. Each returns nothing and works on a dict, for `SimCluster.update`.
"""

from __future__ import annotations

import random
from datetime import datetime
from typing import Any

NODE_IMAGES = 50
"""Images kubelet reports per Node (its default `nodeStatusMaxImages`)."""
IMAGE_POOL = 160
"""Distinct images the Nodes of one populate draw from."""
KUBELET_VERSIONS: tuple[str, ...] = ("v1.28.9", "v1.29.4", "v1.29.6", "v1.30.2")
ZONES: tuple[str, ...] = ("ap-guangzhou-3", "ap-guangzhou-4", "ap-guangzhou-6")
INSTANCE_TYPES: tuple[str, ...] = ("S5.2XLARGE16", "S5.4XLARGE32", "SA2.8XLARGE64")
POOLS: tuple[str, ...] = ("default", "batch", "online", "gpu")
UNSCHEDULABLE_TAINT = "node.kubernetes.io/unschedulable"
CONDITIONS: tuple[tuple[str, str, str, str], ...] = (
    ("MemoryPressure", "False", "KubeletHasSufficientMemory",
     "kubelet has sufficient memory available"),
    ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
    ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
    ("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
)
"""(type, status, reason, message) of the conditions kubelet reports, healthy."""


def timestamp(t: datetime) -> str:
    """RFC 3339 in UTC, seconds precision, as apiserver writes times."""
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _hex(rng: random.Random, n: int) -> str:
    return f"{rng.getrandbits(4 * n):0{n}x}"


def image_pool(rng: random.Random, size: int = IMAGE_POOL) -> list[dict[str, Any]]:
    """Image entries as `status.images` lists them: names (digest and tag) and size."""
    repos = ("mirrors.tencent.com/app/server", "mirrors.tencent.com/app/worker",
             "mirrors.tencent.com/bcs/log-agent", "mirrors.tencent.com/tkeimages/kube-proxy",
             "mirrors.tencent.com/tkeimages/coredns", "mirrors.tencent.com/library/nginx",
             "mirrors.tencent.com/tkeimages/csi-node", "mirrors.tencent.com/library/redis")
    pool = []
    for n in range(size):
        repo = repos[n % len(repos)]
        tag = f"{rng.randrange(1, 9)}.{rng.randrange(40)}.{rng.randrange(10)}"
        pool.append({"names": [f"{repo}@sha256:{_hex(rng, 64)}", f"{repo}:{tag}"],
                     "sizeBytes": rng.randrange(5_000_000, 900_000_000)})
    return pool


def node_ip(n: int) -> str:
    """The InternalIP of the n-th Node (unique for n < 65,536)."""
    return f"10.{100 + n // 65536 % 100}.{n // 256 % 256}.{n % 256}"


def make_node(name: str, *, rng: random.Random, ip: str, now: datetime,
              pool: list[dict[str, Any]], unschedulable: bool = False,
              kubelet_version: str | None = None) -> dict[str, Any]:
    """One Node as kubelet registers and reports it (10-15 KB of JSON)."""
    ts = timestamp(now)
    zone = rng.choice(ZONES)
    labels = {
        "beta.kubernetes.io/arch": "amd64", "beta.kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64", "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux", "node.kubernetes.io/instance-type":
            rng.choice(INSTANCE_TYPES),
        "topology.kubernetes.io/region": "gz", "topology.kubernetes.io/zone": zone,
        "cloud.tencent.com/node-pool": rng.choice(POOLS),
    }
    node: dict[str, Any] = {
        "kind": "Node", "apiVersion": "v1",
        "metadata": {"name": name, "labels": labels, "annotations": {
            "node.alpha.kubernetes.io/ttl": "0",
            "volumes.kubernetes.io/controller-managed-attach-detach": "true"}},
        "spec": {"podCIDR": f"172.16.{rng.randrange(256)}.0/26",
                 "podCIDRs": [f"172.16.{rng.randrange(256)}.0/26"],
                 "providerID": f"qcloud:///{zone}/ins-{_hex(rng, 8)}"},
        "status": {
            "capacity": {"cpu": "16", "ephemeral-storage": "103079844Ki",
                         "hugepages-1Gi": "0", "hugepages-2Mi": "0",
                         "memory": "32617696Ki", "pods": "110"},
            "allocatable": {"cpu": "15890m", "ephemeral-storage": "94998384074",
                            "hugepages-1Gi": "0", "hugepages-2Mi": "0",
                            "memory": "29431520Ki", "pods": "110"},
            "conditions": [{"type": t, "status": s, "lastHeartbeatTime": ts,
                            "lastTransitionTime": ts, "reason": r, "message": m}
                           for t, s, r, m in CONDITIONS],
            "addresses": [{"type": "InternalIP", "address": ip},
                          {"type": "Hostname", "address": name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": _hex(rng, 32), "systemUUID": _hex(rng, 32).upper(),
                "bootID": _hex(rng, 32), "kernelVersion": "5.4.119-19.0009.44",
                "osImage": "TencentOS Server 3.1 (Final)",
                "containerRuntimeVersion": "containerd://1.6.9-tke.9",
                "kubeletVersion": kubelet_version or rng.choice(KUBELET_VERSIONS),
                "kubeProxyVersion": "v1.29.4", "operatingSystem": "linux",
                "architecture": "amd64"},
            "images": rng.sample(pool, min(NODE_IMAGES, len(pool))),
        },
    }
    if unschedulable:
        cordon(node, True, ts)
    return node


def heartbeat(node: dict[str, Any], ts: str) -> None:
    """kubelet's periodic status update: every condition's lastHeartbeatTime (noise)."""
    for cond in node.get("status", {}).get("conditions", []):
        cond["lastHeartbeatTime"] = ts


def cordon(node: dict[str, Any], unschedulable: bool, ts: str) -> None:
    """`kubectl cordon` (True) or `uncordon` (False): the flag and the taint it brings."""
    spec = node.setdefault("spec", {})
    taints = [t for t in spec.get("taints", []) if t.get("key") != UNSCHEDULABLE_TAINT]
    if unschedulable:
        spec["unschedulable"] = True
        taints.append({"key": UNSCHEDULABLE_TAINT, "effect": "NoSchedule", "timeAdded": ts})
    else:
        spec.pop("unschedulable", None)
    if taints:
        spec["taints"] = taints
    else:
        spec.pop("taints", None)


def relabel_node(node: dict[str, Any], rng: random.Random) -> None:
    """Move the Node to another node pool (a label a CMDB stores)."""
    labels = node["metadata"].setdefault("labels", {})
    labels["cloud.tencent.com/node-pool"] = rng.choice(
        [p for p in POOLS if p != labels.get("cloud.tencent.com/node-pool")])


def upgrade_kubelet(node: dict[str, Any], rng: random.Random) -> None:
    """A kubelet upgrade: a new `nodeInfo.kubeletVersion`."""
    info = node["status"]["nodeInfo"]
    info["kubeletVersion"] = rng.choice(
        [v for v in KUBELET_VERSIONS if v != info.get("kubeletVersion")])


def flip_ready(node: dict[str, Any], ts: str) -> None:
    """The Ready condition goes True -> Unknown (kubelet stopped posting) or back."""
    for cond in node["status"]["conditions"]:
        if cond["type"] == "Ready":
            ready = cond["status"] == "True"
            cond.update(status="Unknown" if ready else "True", lastTransitionTime=ts,
                        lastHeartbeatTime=ts,
                        reason="NodeStatusUnknown" if ready else "KubeletReady",
                        message="Kubelet stopped posting node status." if ready
                        else "kubelet is posting ready status")


def make_namespace(name: str, *, labels: dict[str, str] | None = None) -> dict[str, Any]:
    """A Namespace as `kubectl create namespace` makes it."""
    return {"kind": "Namespace", "apiVersion": "v1",
            "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name,
                                                  **(labels or {})}},
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}
