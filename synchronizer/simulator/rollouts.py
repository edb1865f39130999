"""What the workload controllers do, one change at a time: rollouts, scaling, Jobs.

Why simulate the controllers and not just edit workloads: a synchronizer of workloads and
Pods sees a rollout as a burst of related events across kinds (the Deployment's template
changes, a ReplicaSet with a new hash appears, old Pods go, new Pods named after the new
ReplicaSet come, status counts move), and its correctness depends on that burst being
coherent. Each method here makes one such burst the way kube-controller-manager would,
synchronously, through `SimCluster`'s Python API:

- `rollout`: a Deployment gets a new image; a ReplicaSet `<name>-<new hash>` takes all the
  replicas, the old ones are scaled to 0 and their Pods deleted; ReplicaSets beyond the
  two newest old ones are deleted (revisionHistoryLimit, kept small here).
- `scale`: a Deployment's or StatefulSet's replicas change by a few; Pods come or go
  (StatefulSet Pods by ordinal, from the top).
- `update_statefulset`: a new image; every Pod is recreated under its own name.
- `cron_tick`: a CronJob starts a Job `<cronjob>-<minute>` with one Pod; finished Jobs
  beyond three are deleted with their Pods. `finish_job`: a running Job completes.
- `new_deployment` / `delete_deployment`: a Deployment appears (with its ReplicaSet and
  Pods) or is deleted (the garbage collector takes the rest).

Every write goes through `apply(noise, write)`, which counts it as a real change or as
status-only noise: spec and object changes are real; status counts are noise.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from .cluster import SimCluster
from .nodes import timestamp
from .pods import IMAGES, make_pod, pod_from_template, random_suffix
from .store import split_key
from .workloads import (
    deployment_status,
    job_labels,
    make_deployment,
    make_job,
    make_replicaset,
    owner_ref,
    replicaset_status,
    statefulset_status,
    template_hash,
    with_image,
)

Apply = Callable[[bool, Callable[[], object]], None]
"""Run a write, counting what it changed as noise (True) or as real changes (False)."""
NodePicker = Callable[[], tuple[str, str]]
"""A schedulable Node for a new Pod: (name, InternalIP)."""
OLD_REPLICASETS_KEPT = 2
FINISHED_JOBS_KEPT = 3


def new_image(image: str, rng: random.Random) -> str:
    """The same repository with another tag (a rollout's change)."""
    repo = image.rsplit(":", 1)[0] if ":" in image else rng.choice(IMAGES)
    return f"{repo}:{rng.randrange(5, 20)}.{rng.randrange(40)}.{rng.randrange(100)}"


class WorkloadControllers:
    """kube-controller-manager's workload controllers, stepped by hand."""

    def __init__(self, cluster: SimCluster, rng: random.Random, apply: Apply,
                 node: NodePicker) -> None:
        self.cluster = cluster
        self.rng = rng
        self.apply = apply
        self.node = node
        self.serial = 0

    def step(self) -> None:
        """One workload change, chosen like a busy cluster's mix."""
        roll = self.rng.random()
        if roll < 0.35:
            self.rollout()
        elif roll < 0.65:
            self.scale()
        elif roll < 0.75:
            self.update_statefulset()
        elif roll < 0.85:
            self.cron_tick()
        elif roll < 0.88:
            self.finish_job()
        elif roll < 0.95:
            ns = self.cluster.random_key(self.rng, "namespaces")
            self.new_deployment(ns[1] if ns else "default", self.rng.randrange(1, 5))
        else:
            self.delete_deployment()

    # -- helpers --------------------------------------------------------------------------

    def _pick(self, resource: str) -> tuple[str, str, dict[str, Any]] | None:
        key = self.cluster.random_key(self.rng, resource)
        if key is None:
            return None
        obj = self.cluster.get(key[0], key[1], resource=resource)
        return None if obj is None else (key[0], key[1], obj)

    def _now(self) -> str:
        return timestamp(self.cluster.now())

    def _make_pods(self, owner: dict[str, Any], template: dict[str, Any],
                   labels: dict[str, str], names: list[str], *,
                   generate_name: str | None, per_pod: bool = False) -> None:
        ns = owner["metadata"]["namespace"]
        for name in names:
            pod_labels = labels
            if per_pod:
                ordinal = name.rsplit("-", 1)[1]
                pod_labels = dict(labels, **{"statefulset.kubernetes.io/pod-name": name,
                                             "apps.kubernetes.io/pod-index": ordinal})
            pod = pod_from_template(template, namespace=ns, name=name, rng=self.rng,
                                    labels=pod_labels, owner=owner_ref(owner),
                                    generate_name=generate_name, node=self.node(),
                                    now=self.cluster.now())
            self.apply(False, lambda p=pod: self.cluster.create(p))

    def _delete_pods_of(self, owner_uid: str, namespace: str, count: int | None = None,
                        *, from_top: bool = False) -> int:
        keys = self.cluster.owned_by(owner_uid, "pods", namespace)
        if from_top:
            keys.sort(key=lambda k: int(k.rsplit("-", 1)[1]), reverse=True)
        victims = keys if count is None else keys[:count]
        for key in victims:
            ns, name = split_key(key)
            self.apply(False, lambda ns=ns, name=name: self.cluster.delete(ns, name))
        return len(victims)

    def _status(self, ns: str, name: str, resource: str, status: dict[str, Any]) -> None:
        def write(obj: dict[str, Any]) -> None:
            obj["status"] = status
        self.apply(True, lambda: self.cluster.update(ns, name, write, resource=resource))

    # -- Deployments ----------------------------------------------------------------------

    def rollout(self) -> None:
        """A new image for a random Deployment, rolled out to a new ReplicaSet."""
        picked = self._pick("deployments")
        if picked is None:
            return
        ns, name, dep = picked
        old_template = dep["spec"]["template"]
        template = with_image(old_template, new_image(
            old_template["spec"]["containers"][0]["image"], self.rng))
        revision = int(dep["metadata"].get("annotations", {}).get(
            "deployment.kubernetes.io/revision", "1")) + 1

        def change(obj: dict[str, Any]) -> None:
            obj["spec"]["template"] = template
            obj["metadata"].setdefault("annotations", {})[
                "deployment.kubernetes.io/revision"] = str(revision)
        self.apply(False, lambda: self.cluster.update(ns, name, change,
                                                      resource="deployments"))
        self._adopt_template(ns, name, template, dep["spec"]["replicas"], revision)

    def _adopt_template(self, ns: str, name: str, template: dict[str, Any], replicas: int,
                        revision: int) -> None:
        dep = self.cluster.get(ns, name, resource="deployments")
        if dep is None:
            return
        rs_name = f"{name}-{template_hash(template)}"
        old = [split_key(k)[1] for k in self.cluster.owned_by(
            dep["metadata"]["uid"], "replicasets", ns) if split_key(k)[1] != rs_name]
        for rs_old in old:
            rs_obj = self.cluster.get(ns, rs_old, resource="replicasets")
            if rs_obj is None:
                continue
            self._delete_pods_of(rs_obj["metadata"]["uid"], ns)
            if rs_obj["spec"]["replicas"]:
                self.apply(False, lambda r=rs_old: self.cluster.merge_patch(
                    ns, r, {"spec": {"replicas": 0}}, resource="replicasets"))
                self._status(ns, rs_old, "replicasets", replicaset_status(0, 0, 2))
        for rs_old in old[:-OLD_REPLICASETS_KEPT] if len(old) > OLD_REPLICASETS_KEPT else []:
            self.apply(False, lambda r=rs_old: self.cluster.delete(ns, r,
                                                                   resource="replicasets"))
        rs = self.cluster.get(ns, rs_name, resource="replicasets")
        if rs is None:
            obj = make_replicaset(ns, rs_name, uid=self.cluster.new_uid(), template=template,
                                  replicas=replicas, owner=owner_ref(dep), revision=revision)
            self.apply(False, lambda: self.cluster.create(
                obj, resource="replicasets", uid=obj["metadata"]["uid"]))
            rs = self.cluster.get(ns, rs_name, resource="replicasets")
        assert rs is not None
        have = len(self.cluster.owned_by(rs["metadata"]["uid"], "pods", ns))
        if rs["spec"]["replicas"] != replicas:
            self.apply(False, lambda: self.cluster.merge_patch(
                ns, rs_name, {"spec": {"replicas": replicas}}, resource="replicasets"))
        labels = rs["spec"]["template"]["metadata"]["labels"]
        self._make_pods(rs, rs["spec"]["template"], labels,
                        [f"{rs_name}-{random_suffix(self.rng)}"
                         for _ in range(max(0, replicas - have))], generate_name=f"{rs_name}-")
        if have > replicas:
            self._delete_pods_of(rs["metadata"]["uid"], ns, have - replicas)
        gen = int(dep["metadata"].get("generation", 1))
        self._status(ns, rs_name, "replicasets", replicaset_status(replicas, replicas))
        self._status(ns, name, "deployments",
                     deployment_status(replicas, replicas, gen, self._now()))

    def new_deployment(self, namespace: str, replicas: int) -> None:
        """A Deployment appears, with its ReplicaSet and Pods."""
        self.serial += 1
        name = f"churn-{self.serial}-{random_suffix(self.rng, 4)}"
        image = f"{self.rng.choice(IMAGES)}:{self.rng.randrange(1, 5)}.0.0"
        labels = {"app": name, "app.kubernetes.io/name": name, "team": "churn"}
        base = make_pod(namespace, name, rng=self.rng, app=name, annotated=False)
        spec = {k: v for k, v in base["spec"].items() if k != "nodeName"}
        spec["containers"] = [dict(spec["containers"][0], image=image),
                              *spec["containers"][1:]]
        template = {"metadata": {"labels": labels, "annotations": {}}, "spec": spec}
        obj = make_deployment(namespace, name, uid=self.cluster.new_uid(), template=template,
                              replicas=replicas, ts=self._now())
        self.apply(False, lambda: self.cluster.create(obj, resource="deployments",
                                                      uid=obj["metadata"]["uid"]))
        self._adopt_template(namespace, name, template, replicas, 1)

    def delete_deployment(self) -> None:
        """A random Deployment is deleted (its ReplicaSets and Pods follow)."""
        key = self.cluster.random_key(self.rng, "deployments")
        if key is not None:
            self.apply(False, lambda: self.cluster.delete(key[0], key[1],
                                                          resource="deployments"))

    # -- scaling --------------------------------------------------------------------------

    def scale(self) -> None:
        """A Deployment (70%) or StatefulSet (30%) grows or shrinks by one or two."""
        delta = self.rng.choice((-2, -1, 1, 2))
        if self.rng.random() < 0.7 or not self.cluster.count("statefulsets"):
            picked = self._pick("deployments")
            if picked is None:
                return
            ns, name, dep = picked
            replicas = max(0, int(dep["spec"]["replicas"]) + delta)
            self.apply(False, lambda: self.cluster.merge_patch(
                ns, name, {"spec": {"replicas": replicas}}, resource="deployments"))
            self._adopt_template(ns, name, dep["spec"]["template"], replicas, int(
                dep["metadata"].get("annotations", {}).get(
                    "deployment.kubernetes.io/revision", "1")))
            return
        picked = self._pick("statefulsets")
        if picked is None:
            return
        ns, name, sts = picked
        old = int(sts["spec"]["replicas"])
        replicas = max(0, old + delta)
        self.apply(False, lambda: self.cluster.merge_patch(
            ns, name, {"spec": {"replicas": replicas}}, resource="statefulsets"))
        revision = sts["status"].get("currentRevision", f"{name}-0")
        labels = dict(sts["spec"]["template"]["metadata"]["labels"],
                      **{"controller-revision-hash": revision})
        if replicas > old:
            self._make_pods(sts, sts["spec"]["template"], labels,
                            [f"{name}-{n}" for n in range(old, replicas)],
                            generate_name=f"{name}-", per_pod=True)
        else:
            self._delete_pods_of(sts["metadata"]["uid"], ns, old - replicas, from_top=True)
        self._status(ns, name, "statefulsets",
                     statefulset_status(replicas, replicas, revision,
                                        int(sts["metadata"].get("generation", 1)) + 1))

    def update_statefulset(self) -> None:
        """A new image for a random StatefulSet; each Pod is recreated under its name."""
        picked = self._pick("statefulsets")
        if picked is None:
            return
        ns, name, sts = picked
        template = with_image(sts["spec"]["template"], new_image(
            sts["spec"]["template"]["spec"]["containers"][0]["image"], self.rng))
        revision = f"{name}-{template_hash(template)}"

        def change(obj: dict[str, Any]) -> None:
            obj["spec"]["template"] = template
        self.apply(False, lambda: self.cluster.update(ns, name, change,
                                                      resource="statefulsets"))
        count = self._delete_pods_of(sts["metadata"]["uid"], ns)
        labels = dict(template["metadata"]["labels"], **{"controller-revision-hash": revision})
        self._make_pods(sts, template, labels, [f"{name}-{n}" for n in range(count)],
                        generate_name=f"{name}-", per_pod=True)
        replicas = int(sts["spec"]["replicas"])
        self._status(ns, name, "statefulsets", statefulset_status(
            replicas, replicas, revision, int(sts["metadata"].get("generation", 1)) + 1))

    # -- Jobs -----------------------------------------------------------------------------

    def cron_tick(self) -> None:
        """A random CronJob starts its next Job; finished Jobs beyond three are deleted."""
        picked = self._pick("cronjobs")
        if picked is None:
            return
        ns, name, cj = picked
        jobs = sorted(split_key(k)[1] for k in self.cluster.owned_by(
            cj["metadata"]["uid"], "jobs", ns))
        last = max((int(j.rsplit("-", 1)[1]) for j in jobs if j.rsplit("-", 1)[1].isdigit()),
                   default=int(self.cluster.now().timestamp()) // 60)
        job_name = f"{name}-{last + 10}"
        spec = cj["spec"]["jobTemplate"]["spec"]["template"]
        uid = self.cluster.new_uid()
        job = make_job(ns, job_name, uid=uid, template=spec, ts=self._now(), done=False,
                       owner=owner_ref(cj))
        self.apply(False, lambda: self.cluster.create(job, resource="jobs", uid=uid))
        stored = self.cluster.get(ns, job_name, resource="jobs")
        assert stored is not None
        labels = dict(spec["metadata"].get("labels") or {}, **job_labels(job_name, uid))
        self._make_pods(stored, stored["spec"]["template"], labels,
                        [f"{job_name}-{random_suffix(self.rng)}"],
                        generate_name=f"{job_name}-")
        for old in jobs[:max(0, len(jobs) + 1 - FINISHED_JOBS_KEPT)]:
            self.apply(False, lambda j=old: self.cluster.delete(ns, j, resource="jobs"))

        def stamp(obj: dict[str, Any]) -> None:
            obj.setdefault("status", {})["lastScheduleTime"] = self._now()
        self.apply(True, lambda: self.cluster.update(ns, name, stamp, resource="cronjobs"))

    def finish_job(self) -> None:
        """A running Job (if one is found) completes: its Pod Succeeded, its status done."""
        picked = self._pick("jobs")
        if picked is None:
            return
        ns, name, job = picked
        if job.get("status", {}).get("succeeded"):
            return
        for key in self.cluster.owned_by(job["metadata"]["uid"], "pods", ns):
            pod_ns, pod_name = split_key(key)

            def done(pod: dict[str, Any]) -> None:
                pod.setdefault("status", {})["phase"] = "Succeeded"
            self.apply(False, lambda n=pod_name, ns_=pod_ns: self.cluster.update(ns_, n, done))
        now = self._now()

        def complete(obj: dict[str, Any]) -> None:
            obj["status"].update(active=0, succeeded=1, ready=0, completionTime=now,
                                 conditions=[{"type": "Complete", "status": "True",
                                              "lastProbeTime": now,
                                              "lastTransitionTime": now}])
        self.apply(True, lambda: self.cluster.update(ns, name, complete, resource="jobs"))
