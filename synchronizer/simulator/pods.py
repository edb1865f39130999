"""Realistic Pod objects, and realistic ways to change them.

Why realistic: the synchronizer's cost is dominated by parsing and projecting Pods, so a
benchmark against 300-byte toy pods would flatter it by an order of magnitude. A Pod made
here looks like what a real API server returns for a Deployment's replica (4-6 KB of JSON):
labels, annotations including kubectl's last-applied configuration, an owner reference,
managedFields, two containers with env, ports, resources, probes and mounts, and a status
with conditions and container statuses. Identity fields that the server owns (uid,
resourceVersion, creationTimestamp) are left for `SimCluster.create` to fill in.

The mutators change a Pod the way a cluster does (relabel, move between CMDB modules, a
phase or IP change, a rollout of a new image, a restart that only touches volatile status)
and work in place on a dict, so they can be passed to `SimCluster.update`.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

SET_ANNOTATION = "set.bkcmdb.bkbcs.tencent.com"
MODULE_ANNOTATION = "module.bkcmdb.bkbcs.tencent.com"
"""The contract's CMDB placement annotations (kept here so the simulator does not depend on
the product's projection code)."""

PHASES: tuple[str, ...] = ("Pending", "Running", "Succeeded", "Failed")
TEAMS: tuple[str, ...] = ("payments", "search", "ads", "games", "infra", "storage")
SETS: tuple[str, ...] = ("set-gz", "set-sh", "set-bj", "set-sz", "set-cd")
MODULES: tuple[str, ...] = ("gateway", "api", "worker", "cache", "db-proxy", "scheduler", "web")
IMAGES: tuple[str, ...] = ("mirrors.tencent.com/app/server", "mirrors.tencent.com/app/worker")
SIDECAR_IMAGE = "mirrors.tencent.com/bcs/log-agent"

_ALNUM = "bcdfghjklmnpqrstvwxz2456789"


def random_suffix(rng: random.Random, n: int = 5) -> str:
    """The random tail kube-controller-manager puts on generated names."""
    return "".join([_ALNUM[b % len(_ALNUM)] for b in rng.randbytes(n)])


def generated_names(rng: random.Random, prefix: str, count: int) -> list[str]:
    """`count` distinct `prefix` + random-suffix names. Five characters of 27 collide
    within a few thousand draws (one time in seven at 2,000 nodes). kube-apiserver draws
    a generateName suffix again on a collision (KEP-4420, RetryGenerateName, GA in 1.32;
    before it answered 409 and the controller retried), and so does this."""
    names: dict[str, None] = {}
    while len(names) < count:
        names[prefix + random_suffix(rng)] = None
    return list(names)


def pod_name(rng: random.Random, app: str) -> str:
    """A ReplicaSet-style pod name: `<app>-<template hash>-<suffix>`."""
    return f"{app}-{random_suffix(rng, 10)}-{random_suffix(rng)}"


def _hex(rng: random.Random, n: int) -> str:
    return f"{rng.getrandbits(4 * n):0{n}x}"


def _ip(rng: random.Random, prefix: str) -> str:
    return f"{prefix}.{rng.randrange(0, 256)}.{rng.randrange(1, 255)}"


def _ts(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _container(name: str, image: str, rng: random.Random, *, port: int,
               probe: bool = True) -> dict[str, Any]:
    liveness = {
        "httpGet": {"path": "/healthz", "port": port, "scheme": "HTTP"},
        "initialDelaySeconds": 10, "timeoutSeconds": 1, "periodSeconds": 10,
        "successThreshold": 1, "failureThreshold": 3,
    }
    container: dict[str, Any] = {
        "name": name,
        "image": image,
        "args": [f"--port={port}"],
        "ports": [
            {"name": "http", "containerPort": port, "protocol": "TCP"},
        ],
        "env": [
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1",
                                                            "fieldPath": "metadata.name"}}},
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"apiVersion": "v1",
                                                          "fieldPath": "status.podIP"}}},
        ],
        "resources": {
            "limits": {"cpu": f"{rng.choice((500, 1000, 2000))}m", "memory": "1Gi"},
            "requests": {"cpu": f"{rng.choice((100, 250))}m", "memory": "256Mi"},
        },
        "volumeMounts": [
            {"name": "config", "mountPath": "/etc/app", "readOnly": True},
            {"name": "kube-api-access", "readOnly": True,
             "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"},
        ],
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "imagePullPolicy": "IfNotPresent",
    }
    if probe:
        container["livenessProbe"] = liveness
    return container


def _status(spec: dict[str, Any], rng: random.Random, *, phase: str, now: datetime,
            host_ip: str, pod_ip: str) -> dict[str, Any]:
    started = _ts(now)
    ready = "True" if phase == "Running" else "False"
    conditions = [
        {"type": t, "status": ready if t in ("Ready", "ContainersReady") else "True",
         "lastProbeTime": None, "lastTransitionTime": started}
        for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")
    ]
    statuses = [
        {
            "name": c["name"],
            "state": {"running": {"startedAt": started}},
            "lastState": {},
            "ready": phase == "Running",
            "restartCount": 0,
            "image": c["image"],
            "imageID": f"{c['image'].split(':')[0]}@sha256:{_hex(rng, 64)}",
            "containerID": f"containerd://{_hex(rng, 64)}",
            "started": phase == "Running",
        }
        for c in spec["containers"]
    ]
    return {
        "phase": phase, "conditions": conditions, "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}], "podIP": pod_ip, "podIPs": [{"ip": pod_ip}],
        "startTime": started, "containerStatuses": statuses, "qosClass": "Burstable",
    }


def make_pod(
    namespace: str,
    name: str,
    *,
    rng: random.Random,
    annotated: bool | None = None,
    set_name: str | None = None,
    module_name: str | None = None,
    app: str | None = None,
    phase: str = "Running",
    node_name: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Build one Pod dict of 4-6 KB; `annotated=None` flips a coin for the CMDB annotations.

    When annotated, `set_name`/`module_name` (random when not given) go into the
    `set.bkcmdb…`/`module.bkcmdb…` annotations; otherwise the Pod has neither and the CMDB
    row falls back to `bkbcs`/`bkbcs`.
    """
    now = now or datetime.now(UTC)
    if annotated is None:
        annotated = rng.random() < 0.5
    app = app or name.rsplit("-", 2)[0]
    template_hash = random_suffix(rng, 10)
    labels = {
        "app": app, "app.kubernetes.io/name": app, "pod-template-hash": template_hash,
        "team": rng.choice(TEAMS), "version": f"v{rng.randrange(1, 9)}.{rng.randrange(0, 30)}",
    }
    image = f"{rng.choice(IMAGES)}:{rng.randrange(1, 5)}.{rng.randrange(0, 40)}.{rng.randrange(10)}"
    spec: dict[str, Any] = {
        "volumes": [
            {"name": "config", "configMap": {"name": f"{app}-config", "defaultMode": 420}},
            {"name": "kube-api-access", "projected": {"defaultMode": 420, "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt",
                               "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            ]}},
        ],
        "containers": [
            _container(app, image, rng, port=8080),
            # container names are unique in a Pod (the API server refuses a duplicate): the
            # log-agent DaemonSet's own Pods get the sidecar under another name
            _container("log-agent" if app != "log-agent" else "log-shipper",
                       f"{SIDECAR_IMAGE}:1.{rng.randrange(9)}", rng, port=2020, probe=False),
        ],
        "restartPolicy": "Always", "terminationGracePeriodSeconds": 30,
        "dnsPolicy": "ClusterFirst", "serviceAccountName": "default",
        "serviceAccount": "default",
        "nodeName": node_name or f"node-{rng.randrange(1, 200):03d}.cluster.local",
        "securityContext": {}, "schedulerName": "default-scheduler",
        "tolerations": [
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists",
             "effect": "NoExecute", "tolerationSeconds": 300},
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists",
             "effect": "NoExecute", "tolerationSeconds": 300},
        ],
        "priority": 0, "enableServiceLinks": True, "preemptionPolicy": "PreemptLowerPriority",
    }
    last_applied = orjson.dumps({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"labels": {"app": app}, "name": name, "namespace": namespace},
        "spec": {"containers": [{"image": image, "name": app}]},
    }).decode()
    annotations = {
        "kubectl.kubernetes.io/last-applied-configuration": last_applied + "\n",
        "prometheus.io/scrape": "true", "prometheus.io/port": "9080",
    }
    if annotated:
        annotations[SET_ANNOTATION] = set_name or rng.choice(SETS)
        annotations[MODULE_ANNOTATION] = module_name or rng.choice(MODULES)
    rs = f"{app}-{template_hash}"
    metadata = {
        "name": name, "generateName": f"{rs}-", "namespace": namespace,
        "labels": labels, "annotations": annotations,
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs,
                             "uid": _uuid(rng), "controller": True,
                             "blockOwnerDeletion": True}],
        "managedFields": [
            {"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1",
             "time": _ts(now), "fieldsType": "FieldsV1", "fieldsV1": {
                 "f:metadata": {"f:generateName": {}, "f:labels": {".": {}, "f:app": {}},
                                "f:ownerReferences": {".": {}}},
                 "f:spec": {"f:containers": {f"k:{{\"name\":\"{app}\"}}": {
                     ".": {}, "f:image": {}, "f:name": {}, "f:ports": {}}}}}},
            {"manager": "kubelet", "operation": "Update", "apiVersion": "v1",
             "time": _ts(now + timedelta(seconds=3)), "fieldsType": "FieldsV1",
             "subresource": "status", "fieldsV1": {"f:status": {
                 "f:conditions": {}, "f:containerStatuses": {}, "f:hostIP": {},
                 "f:phase": {}, "f:podIP": {}, "f:startTime": {}}}},
        ],
    }
    status = _status(spec, rng, phase=phase, now=now, host_ip=_ip(rng, "9.134"),
                     pod_ip=_ip(rng, "10.2") if phase != "Pending" else "")
    return {"kind": "Pod", "apiVersion": "v1", "metadata": metadata, "spec": spec,
            "status": status}


def _uuid(rng: random.Random) -> str:
    h = _hex(rng, 32)
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{h[16:20]}-{h[20:]}"


# -- mutators: each changes a Pod in place, like one real-world update ----------------------

def relabel(pod: dict[str, Any], rng: random.Random) -> None:
    """Change a label (a stored field): someone edited the version or team label."""
    labels = pod["metadata"].setdefault("labels", {})
    labels["version"] = f"v{rng.randrange(1, 9)}.{rng.randrange(0, 30)}.{rng.randrange(100)}"


def move_module(pod: dict[str, Any], rng: random.Random) -> None:
    """Move the Pod to another CMDB set/module, or add or remove the annotations."""
    annotations = pod["metadata"].setdefault("annotations", {})
    roll = rng.random()
    if roll < 0.2:
        annotations.pop(SET_ANNOTATION, None)
        annotations.pop(MODULE_ANNOTATION, None)
    else:
        annotations[SET_ANNOTATION] = rng.choice(SETS)
        annotations[MODULE_ANNOTATION] = rng.choice(MODULES)


def set_phase(pod: dict[str, Any], phase: str, pod_ip: str | None = None) -> None:
    """Set the phase (and pod IP, cleared when not given for a Pending pod)."""
    status = pod.setdefault("status", {})
    status["phase"] = phase
    if pod_ip is not None:
        status["podIP"], status["podIPs"] = pod_ip, [{"ip": pod_ip}]
    elif phase == "Pending":
        status["podIP"], status["podIPs"] = "", []


def change_phase(pod: dict[str, Any], rng: random.Random) -> None:
    """A phase change with a new pod IP: a restart onto a new sandbox."""
    set_phase(pod, rng.choice(PHASES), _ip(rng, "10.3"))


def bump_image(pod: dict[str, Any], rng: random.Random) -> None:
    """Roll the main container to a new image; the container gets a new id too."""
    containers = pod["spec"]["containers"]
    image = f"{rng.choice(IMAGES)}:{rng.randrange(5, 9)}.{rng.randrange(40)}.{rng.randrange(10)}"
    containers[0]["image"] = image
    for status in pod.get("status", {}).get("containerStatuses", []):
        if status.get("name") == containers[0]["name"]:
            status["image"] = image
            status["containerID"] = f"containerd://{_hex(rng, 64)}"


def touch_status(pod: dict[str, Any], rng: random.Random) -> None:
    """Change only volatile status (a restart count, a probe time): not a stored field."""
    for status in pod.get("status", {}).get("containerStatuses", []):
        status["restartCount"] = int(status.get("restartCount", 0)) + 1
    for cond in pod.get("status", {}).get("conditions", []):
        cond["lastProbeTime"] = f"2024-01-01T00:{rng.randrange(60):02d}:00Z"


Mutator = Callable[[dict[str, Any], random.Random], None]
MUTATORS: tuple[Mutator, ...] = (relabel, move_module, change_phase, bump_image, touch_status)
"""Every realistic mutator, for a random pick; `touch_status` is the only no-write one."""


def mutate(pod: dict[str, Any], rng: random.Random) -> str:
    """Apply one random mutator in place and return its name."""
    fn = rng.choice(MUTATORS)
    fn(pod, rng)
    return fn.__name__


def adopt(pod: dict[str, Any], *, owner: dict[str, Any], labels: dict[str, str],
          generate_name: str | None) -> None:
    """Make a Pod (from `make_pod`) the child of a controller, in place: its controlling
    ownerReference, the controller's template labels (plus what the controller adds, such
    as `pod-template-hash`), and the generateName the controller would use."""
    meta = pod["metadata"]
    meta["ownerReferences"] = [dict(owner, controller=True, blockOwnerDeletion=True)]
    meta["labels"] = dict(labels)
    if generate_name is None:
        meta.pop("generateName", None)
    else:
        meta["generateName"] = generate_name


def bare(pod: dict[str, Any], labels: dict[str, str]) -> None:
    """Make a Pod (from `make_pod`) one nobody controls: no owner, no generateName."""
    meta = pod["metadata"]
    meta.pop("ownerReferences", None)
    meta.pop("generateName", None)
    meta["labels"] = dict(labels)


def pod_from_template(template: dict[str, Any], *, namespace: str, name: str,
                      rng: random.Random, labels: dict[str, str],
                      owner: dict[str, Any] | None, generate_name: str | None,
                      node: tuple[str, str], now: datetime | None = None,
                      phase: str = "Running") -> dict[str, Any]:
    """A Pod a controller makes from its pod template, running on `node` (name, IP).

    Like a real controller's Pod it has the template's spec and annotations, the labels the
    controller sets, its ownerReference, kube-controller-manager's and kubelet's
    managedFields and a status with container ids; like `make_pod` it is 4-6 KB.
    """
    pod = make_pod(namespace, name, rng=rng, annotated=False, app=labels.get("app"),
                   phase=phase, node_name=node[0], now=now)
    if owner is None:
        bare(pod, labels)
    else:
        adopt(pod, owner=owner, labels=labels, generate_name=generate_name)
    meta = pod["metadata"]
    meta["annotations"] = dict(meta["annotations"], **(template["metadata"].get("annotations")
                                                      or {}))
    spec = pod["spec"] = dict(template["spec"], nodeName=node[0])
    pod["status"] = _status(spec, rng, phase=phase, now=now or datetime.now(UTC),
                            host_ip=node[1],
                            pod_ip=_ip(rng, "10.2") if phase != "Pending" else "")
    return pod


def replica(template: dict[str, Any], name: str, *, rng: random.Random,
            annotated: bool | None, node: tuple[str, str] | None = None) -> dict[str, Any]:
    """Another replica of a template Pod (a ReplicaSet sibling): new name, node, IPs and
    container ids, with the CMDB annotations set or removed (`annotated=None`: as in the
    template). `node` is (name, InternalIP) of the Node it runs on; without one a random
    `node-NNN.cluster.local` is named, as in the first, Pod-only simulator.

    Why it shares structure: parsing or deep-copying a 5 KB Pod costs tens of microseconds,
    which would make populating 100,000 Pods take minutes; only the dicts on the paths that
    differ are copied, the rest (containers, volumes, managedFields) is shared with the
    template. The result is meant to be serialised (`SimCluster.create_many`), not kept.
    """
    meta = dict(template["metadata"], name=name)
    annotations = meta["annotations"] = dict(meta.get("annotations") or {})
    if annotated:
        annotations[SET_ANNOTATION] = rng.choice(SETS)
        annotations[MODULE_ANNOTATION] = rng.choice(MODULES)
    elif annotated is not None:
        annotations.pop(SET_ANNOTATION, None)
        annotations.pop(MODULE_ANNOTATION, None)
    if node is None:
        spec = dict(template["spec"], nodeName=f"node-{rng.randrange(1, 200):03d}.cluster.local")
        host_ip, pod_ip = _ip(rng, "9.134"), _ip(rng, "10.2")
    else:
        spec = dict(template["spec"], nodeName=node[0])
        host_ip, pod_ip = node[1], _ip(rng, "10.2")
    status = dict(template["status"])
    status["hostIP"], status["hostIPs"] = host_ip, [{"ip": host_ip}]
    if status.get("podIP"):
        status["podIP"], status["podIPs"] = pod_ip, [{"ip": pod_ip}]
    status["containerStatuses"] = [
        dict(cs, containerID=f"containerd://{_hex(rng, 64)}")
        for cs in status.get("containerStatuses", [])
    ]
    return dict(template, metadata=meta, spec=spec, status=status)
