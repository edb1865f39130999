"""Realistic workload objects: Deployment, ReplicaSet, StatefulSet, DaemonSet, Job, CronJob.

Why they are shaped exactly so: the synchronizer names each Pod's workload from the Pod
alone (DESIGN.md §7), which works because of conventions kube-controller-manager keeps:
a Deployment's ReplicaSet is `<deployment>-<hash>` where the hash is computed from the pod
template, the ReplicaSet's Pods carry the label `pod-template-hash=<hash>` and a
controlling ownerReference to it; StatefulSet Pods are `<name>-<ordinal>`, DaemonSet and
Job Pods are owned by their controller directly, and a CronJob's Jobs are
`<cronjob>-<scheduled minute>`. The factories here keep those conventions, so a test of
the workload column can trust them, and a rollout that changes the image changes the hash.

Every factory takes the pod `template` (`{"metadata": {labels, annotations}, "spec": ...}`)
and the object's uid (the caller draws it first, so owner references can be written before
anything is stored), and fills a status consistent with its replicas. The `*_status`
functions are what the noise churn rewrites: counts that move with every Pod that becomes
ready, which a CMDB must not store.
"""

from __future__ import annotations

from typing import Any

import orjson
import xxhash

from .pods import MODULE_ANNOTATION, SET_ANNOTATION

SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
"""apimachinery's rand.SafeEncodeString alphabet: no vowels, no look-alike digits."""
TEMPLATE_ANNOTATIONS = ("prometheus.io/scrape", "prometheus.io/port", SET_ANNOTATION,
                        MODULE_ANNOTATION)
"""Pod annotations that come from a controller's template (the rest are the Pod's own)."""


def template_hash(template: dict[str, Any]) -> str:
    """The `pod-template-hash` of a template: a 32-bit hash of it, written in decimal and
    mapped digit by digit onto the safe alphabet, as kube-controller-manager does."""
    digest = xxhash.xxh32_intdigest(orjson.dumps(template, option=orjson.OPT_SORT_KEYS))
    return "".join(SAFE_ALPHABET[ord(c) % len(SAFE_ALPHABET)] for c in str(digest))


def template_of(pod: dict[str, Any], labels: dict[str, str]) -> dict[str, Any]:
    """The pod template of a controller whose Pods look like `pod` (from `make_pod`)."""
    annotations = {k: v for k, v in (pod["metadata"].get("annotations") or {}).items()
                   if k in TEMPLATE_ANNOTATIONS}
    spec = {k: v for k, v in pod["spec"].items() if k != "nodeName"}
    return {"metadata": {"labels": dict(labels), "annotations": annotations}, "spec": spec}


def with_image(template: dict[str, Any], image: str) -> dict[str, Any]:
    """A copy of a template whose main container runs `image` (a rollout's change)."""
    spec = dict(template["spec"])
    containers = [dict(c) for c in spec["containers"]]
    containers[0]["image"] = image
    spec["containers"] = containers
    return {"metadata": template["metadata"], "spec": spec}


def owner_ref(obj: dict[str, Any]) -> dict[str, Any]:
    """An ownerReference to `obj` (controller flags are added by `pods.adopt`)."""
    return {"apiVersion": obj["apiVersion"], "kind": obj["kind"],
            "name": obj["metadata"]["name"], "uid": obj["metadata"]["uid"]}


def _meta(namespace: str, name: str, uid: str, labels: dict[str, str],
          annotations: dict[str, str] | None = None,
          owner: dict[str, Any] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "uid": uid,
                            "labels": dict(labels)}
    if annotations:
        meta["annotations"] = annotations
    if owner is not None:
        meta["ownerReferences"] = [dict(owner, controller=True, blockOwnerDeletion=True)]
    return meta


def _selector(template: dict[str, Any]) -> dict[str, Any]:
    return {"matchLabels": {"app": template["metadata"]["labels"]["app"]}}


def deployment_status(replicas: int, ready: int, generation: int, ts: str) -> dict[str, Any]:
    """A Deployment's status with `ready` of `replicas` Pods ready."""
    status: dict[str, Any] = {
        "observedGeneration": generation, "replicas": replicas, "updatedReplicas": replicas,
        "readyReplicas": ready, "availableReplicas": ready,
        "conditions": [
            {"type": "Available", "status": "True" if ready >= replicas else "False",
             "lastUpdateTime": ts, "lastTransitionTime": ts,
             "reason": "MinimumReplicasAvailable",
             "message": "Deployment has minimum availability."},
            {"type": "Progressing", "status": "True", "lastUpdateTime": ts,
             "lastTransitionTime": ts, "reason": "NewReplicaSetAvailable",
             "message": "ReplicaSet has successfully progressed."}],
    }
    if replicas - ready:
        status["unavailableReplicas"] = replicas - ready
    return status


def make_deployment(namespace: str, name: str, *, uid: str, template: dict[str, Any],
                    replicas: int, ts: str) -> dict[str, Any]:
    """A Deployment, fully rolled out."""
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": _meta(namespace, name, uid, template["metadata"]["labels"],
                              {"deployment.kubernetes.io/revision": "1"}),
            "spec": {"replicas": replicas, "selector": _selector(template),
                     "template": template, "revisionHistoryLimit": 10,
                     "progressDeadlineSeconds": 600,
                     "strategy": {"type": "RollingUpdate", "rollingUpdate": {
                         "maxUnavailable": "25%", "maxSurge": "25%"}}},
            "status": deployment_status(replicas, replicas, 1, ts)}


def replicaset_status(replicas: int, ready: int, generation: int = 1) -> dict[str, Any]:
    """A ReplicaSet's status."""
    return {"replicas": replicas, "fullyLabeledReplicas": replicas, "readyReplicas": ready,
            "availableReplicas": ready, "observedGeneration": generation}


def make_replicaset(namespace: str, name: str, *, uid: str, template: dict[str, Any],
                    replicas: int, owner: dict[str, Any] | None, revision: int = 1
                    ) -> dict[str, Any]:
    """A ReplicaSet; with an owner (its Deployment), `name` is `<deployment>-<hash>` and
    the template and selector carry `pod-template-hash`."""
    template = {"metadata": dict(template["metadata"]), "spec": template["spec"]}
    labels = dict(template["metadata"]["labels"])
    selector = _selector(template)
    annotations = None
    if owner is not None:
        labels["pod-template-hash"] = name.rsplit("-", 1)[1]
        selector["matchLabels"]["pod-template-hash"] = labels["pod-template-hash"]
        annotations = {"deployment.kubernetes.io/desired-replicas": str(replicas),
                       "deployment.kubernetes.io/max-replicas": str(replicas + 1),
                       "deployment.kubernetes.io/revision": str(revision)}
    template["metadata"]["labels"] = labels
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": _meta(namespace, name, uid, labels, annotations, owner),
            "spec": {"replicas": replicas, "selector": selector, "template": template},
            "status": replicaset_status(replicas, replicas)}


def statefulset_status(replicas: int, ready: int, revision: str,
                       generation: int = 1) -> dict[str, Any]:
    """A StatefulSet's status."""
    return {"observedGeneration": generation, "replicas": replicas, "readyReplicas": ready,
            "currentReplicas": replicas, "updatedReplicas": replicas,
            "availableReplicas": ready, "currentRevision": revision,
            "updateRevision": revision, "collisionCount": 0}


def make_statefulset(namespace: str, name: str, *, uid: str, template: dict[str, Any],
                     replicas: int) -> dict[str, Any]:
    """A StatefulSet with a headless service name and a volume claim template."""
    revision = f"{name}-{template_hash(template)}"
    return {"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": _meta(namespace, name, uid, template["metadata"]["labels"]),
            "spec": {"replicas": replicas, "selector": _selector(template),
                     "template": template, "serviceName": name,
                     "podManagementPolicy": "OrderedReady", "revisionHistoryLimit": 10,
                     "updateStrategy": {"type": "RollingUpdate",
                                        "rollingUpdate": {"partition": 0}},
                     "volumeClaimTemplates": [{
                         "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                         "metadata": {"name": "data"},
                         "spec": {"accessModes": ["ReadWriteOnce"],
                                  "resources": {"requests": {"storage": "10Gi"}},
                                  "storageClassName": "cbs", "volumeMode": "Filesystem"}}]},
            "status": statefulset_status(replicas, replicas, revision)}


def daemonset_status(desired: int, ready: int, generation: int = 1) -> dict[str, Any]:
    """A DaemonSet's status on `desired` Nodes."""
    return {"currentNumberScheduled": desired, "desiredNumberScheduled": desired,
            "numberAvailable": ready, "numberMisscheduled": 0, "numberReady": ready,
            "observedGeneration": generation, "updatedNumberScheduled": desired}


def make_daemonset(namespace: str, name: str, *, uid: str, template: dict[str, Any],
                   nodes: int) -> dict[str, Any]:
    """A DaemonSet running on every one of `nodes` Nodes."""
    return {"apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": _meta(namespace, name, uid, template["metadata"]["labels"],
                              {"deprecated.daemonset.template.generation": "1"}),
            "spec": {"selector": _selector(template), "template": template,
                     "revisionHistoryLimit": 10,
                     "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {
                         "maxUnavailable": 1, "maxSurge": 0}}},
            "status": daemonset_status(nodes, nodes)}


def job_labels(name: str, uid: str) -> dict[str, str]:
    """The labels the Job controller puts on its template and Pods."""
    return {"batch.kubernetes.io/controller-uid": uid, "batch.kubernetes.io/job-name": name,
            "controller-uid": uid, "job-name": name}


def make_job(namespace: str, name: str, *, uid: str, template: dict[str, Any], ts: str,
             done: bool, owner: dict[str, Any] | None = None) -> dict[str, Any]:
    """A one-Pod Job, finished (`done`) or running; `owner` is its CronJob."""
    labels = dict(template["metadata"]["labels"], **job_labels(name, uid))
    template = {"metadata": dict(template["metadata"], labels=labels),
                "spec": dict(template["spec"], restartPolicy="Never")}
    status: dict[str, Any] = {"startTime": ts, "active": 0 if done else 1,
                              "succeeded": 1 if done else 0, "ready": 0 if done else 1,
                              "uncountedTerminatedPods": {}}
    if done:
        status["completionTime"] = ts
        status["conditions"] = [{"type": "Complete", "status": "True",
                                 "lastProbeTime": ts, "lastTransitionTime": ts}]
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": _meta(namespace, name, uid, labels, None, owner),
            "spec": {"parallelism": 1, "completions": 1, "backoffLimit": 6,
                     "completionMode": "NonIndexed", "suspend": False,
                     "selector": {"matchLabels": {
                         "batch.kubernetes.io/controller-uid": uid}},
                     "template": template},
            "status": status}


def make_cronjob(namespace: str, name: str, *, uid: str, template: dict[str, Any],
                 schedule: str, ts: str) -> dict[str, Any]:
    """A CronJob that keeps 3 successful Jobs."""
    return {"apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": _meta(namespace, name, uid, template["metadata"]["labels"]),
            "spec": {"schedule": schedule, "concurrencyPolicy": "Forbid", "suspend": False,
                     "successfulJobsHistoryLimit": 3, "failedJobsHistoryLimit": 1,
                     "jobTemplate": {"metadata": {}, "spec": {
                         "backoffLimit": 6, "template": {
                             "metadata": template["metadata"],
                             "spec": dict(template["spec"], restartPolicy="Never")}}}},
            "status": {"lastScheduleTime": ts, "lastSuccessfulTime": ts}}
