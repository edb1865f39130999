"""The resource table: which kinds a simulated cluster serves and how discovery shows them.

Why a table and not code per kind: apiserver itself treats every resource the same way
(one generic registry store with a strategy per kind), so the simulator does too. A
`ResourceSpec` says what a client needs to find and address a resource (group, version,
plural, kind, namespaced, short names, subresources) and the few strategy bits that change
behaviour (does `metadata.generation` track spec changes, may an update omit the
resourceVersion, which other resources its objects control). Everything else, storage,
list and watch semantics, faults, is shared.

A cluster's `Registry` starts with the built-ins below; a CustomResourceDefinition adds
its resource at runtime (see `crd`). Resources are named by their canonical id,
`plural` for the core group and `plural.group` otherwise (`deployments.apps`), the way
`kubectl api-resources` and RBAC spell them; the bare plural is accepted where it is
unambiguous (the core group wins, as kubectl's short names do).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

VERBS: tuple[str, ...] = ("create", "delete", "get", "list", "patch", "update", "watch")
"""What every simulated resource supports (no deletecollection)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ResourceSpec:
    """One served resource: its API coordinates and its strategy bits."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    generation: bool = False
    """`metadata.generation` starts at 1 and grows on every change outside metadata and
    status, as apiserver does for workloads and custom resources."""
    unconditional_update: bool = True
    """Whether a PUT may omit `metadata.resourceVersion` (custom resources may not)."""
    dependents: tuple[str, ...] = ()
    """Resources whose objects this kind controls (ownerReferences with controller: true):
    what the garbage collector looks through when one of its objects is deleted."""
    schema: dict[str, object] | None = field(default=None, compare=False, hash=False)
    """The openAPIV3Schema of a custom resource (for pruning and validation), else None."""
    id: str = field(init=False)
    """The canonical name: `plural` in the core group, else `plural.group`."""
    api_version: str = field(init=False)
    """`v1` or `group/version`, as objects carry it."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "id", f"{self.plural}.{self.group}" if self.group
                           else self.plural)
        object.__setattr__(self, "api_version", f"{self.group}/{self.version}" if self.group
                           else self.version)

    @property
    def list_kind(self) -> str:
        """The kind of a list response."""
        return self.kind + "List"

    @property
    def singular(self) -> str:
        """The singular name discovery reports (the lowercased kind, as apiserver does)."""
        return self.kind.lower()

    @property
    def has_status(self) -> bool:
        """Whether `status` is a subresource (then the main resource cannot change it)."""
        return "status" in self.subresources

    def discovery(self) -> list[dict[str, object]]:
        """The APIResource entries of this resource and its subresources."""
        main: dict[str, object] = {
            "name": self.plural, "singularName": self.singular, "namespaced": self.namespaced,
            "kind": self.kind, "verbs": list(VERBS),
        }
        if self.short_names:
            main["shortNames"] = list(self.short_names)
        if self.categories:
            main["categories"] = list(self.categories)
        out = [main]
        for sub in self.subresources:
            verbs = ["get", "patch", "update"] if sub in ("status", "scale") else ["update"]
            out.append({"name": f"{self.plural}/{sub}", "singularName": "",
                        "namespaced": self.namespaced, "kind": self.kind, "verbs": verbs})
        return out


def _core(plural: str, kind: str, *, namespaced: bool = True, short: tuple[str, ...] = (),
          subresources: tuple[str, ...] = (), categories: tuple[str, ...] = ()
          ) -> ResourceSpec:
    return ResourceSpec(group="", version="v1", plural=plural, kind=kind, namespaced=namespaced,
                        short_names=short, subresources=subresources, categories=categories)


def _workload(group: str, plural: str, kind: str, short: tuple[str, ...],
              dependents: tuple[str, ...]) -> ResourceSpec:
    return ResourceSpec(group=group, version="v1", plural=plural, kind=kind, namespaced=True,
                        short_names=short, categories=("all",), generation=True,
                        subresources=("status",) if plural in ("cronjobs", "jobs")
                        else ("status", "scale"), dependents=dependents)


PODS = _core("pods", "Pod", short=("po",), subresources=("status",), categories=("all",))
NODES = _core("nodes", "Node", namespaced=False, short=("no",), subresources=("status",))
NAMESPACES = _core("namespaces", "Namespace", namespaced=False, short=("ns",),
                   subresources=("status", "finalize"))
SECRETS = _core("secrets", "Secret")
EVENTS = _core("events", "Event", short=("ev",))
DEPLOYMENTS = _workload("apps", "deployments", "Deployment", ("deploy",),
                        ("replicasets.apps",))
REPLICASETS = _workload("apps", "replicasets", "ReplicaSet", ("rs",), ("pods",))
STATEFULSETS = _workload("apps", "statefulsets", "StatefulSet", ("sts",), ("pods",))
DAEMONSETS = _workload("apps", "daemonsets", "DaemonSet", ("ds",), ("pods",))
JOBS = _workload("batch", "jobs", "Job", (), ("pods",))
CRONJOBS = _workload("batch", "cronjobs", "CronJob", ("cj",), ("jobs.batch",))
CRDS = ResourceSpec(group="apiextensions.k8s.io", version="v1",
                    plural="customresourcedefinitions", kind="CustomResourceDefinition",
                    namespaced=False, short_names=("crd", "crds"), subresources=("status",),
                    categories=("api-extensions",), generation=True)
EVENTS_K8S = ResourceSpec(group="events.k8s.io", version="v1", plural="events", kind="Event",
                          namespaced=True, short_names=("ev",))

BUILTINS: tuple[ResourceSpec, ...] = (
    PODS, NODES, NAMESPACES, SECRETS, EVENTS, DEPLOYMENTS, REPLICASETS, STATEFULSETS,
    DAEMONSETS, JOBS, CRONJOBS, CRDS, EVENTS_K8S,
)
"""What every simulated cluster serves before any CRD is installed."""

WORKLOAD_KINDS: tuple[str, ...] = ("deployments.apps", "statefulsets.apps", "daemonsets.apps",
                                   "jobs.batch", "cronjobs.batch")
"""The resources of the contract's `workloads` table, in its order."""


class Registry:
    """The resources one cluster serves: the built-ins plus those its CRDs define."""

    def __init__(self, specs: tuple[ResourceSpec, ...] = BUILTINS) -> None:
        self._specs: dict[str, ResourceSpec] = {}
        self._names: dict[str, str] = {}
        for spec in specs:
            self.add(spec)

    def add(self, spec: ResourceSpec) -> None:
        """Serve `spec` (replacing a resource of the same id)."""
        self._specs[spec.id] = spec
        self._reindex()

    def remove(self, resource_id: str) -> ResourceSpec | None:
        """Stop serving a resource; returns its spec if it was served."""
        spec = self._specs.pop(resource_id, None)
        self._reindex()
        return spec

    def _reindex(self) -> None:
        names: dict[str, str] = {}
        for spec in sorted(self._specs.values(), key=lambda s: s.group != ""):
            for name in (spec.plural, f"{spec.plural}.{spec.group}" if spec.group else None,
                         spec.kind, spec.kind.lower(), *spec.short_names):
                if name:
                    names.setdefault(name, spec.id)
            names[spec.id] = spec.id
        self._names = names

    def resolve(self, name: str) -> ResourceSpec:
        """The spec called `name` (id, plural, kind or short name); KeyError if none."""
        return self._specs[self._names[name]]

    def lookup(self, group: str, version: str, plural: str) -> ResourceSpec | None:
        """The spec served at `/api[s]/{group}/{version}/{plural}`, or None."""
        spec = self._specs.get(plural if not group else f"{plural}.{group}")
        return spec if spec is not None and spec.version == version else None

    def __iter__(self) -> Iterator[ResourceSpec]:
        return iter(self._specs.values())

    def __contains__(self, name: object) -> bool:
        return name in self._names

    def groups(self, hidden: frozenset[str] = frozenset()) -> dict[str, list[str]]:
        """Named groups (not the core one) and their versions, for `/apis`, skipping the
        resources in `hidden` (an "absent" API: a group left with none disappears)."""
        out: dict[str, list[str]] = {}
        for spec in self._specs.values():
            if spec.group and spec.id not in hidden:
                versions = out.setdefault(spec.group, [])
                if spec.version not in versions:
                    versions.append(spec.version)
        return out

    def in_version(self, group: str, version: str,
                   hidden: frozenset[str] = frozenset()) -> list[ResourceSpec]:
        """The specs of one group/version, in id order, skipping `hidden` ones."""
        return sorted((s for s in self._specs.values() if s.group == group
                       and s.version == version and s.id not in hidden), key=lambda s: s.id)


def api_resource_list(group_version: str, specs: list[ResourceSpec]) -> dict[str, object]:
    """An `APIResourceList` body, as `/api/v1` and `/apis/{group}/{version}` answer."""
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version,
            "resources": [entry for spec in specs for entry in spec.discovery()]}


def api_group(name: str, versions: list[str]) -> dict[str, object]:
    """One `APIGroup`; the first version is the preferred one."""
    listed = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"kind": "APIGroup", "apiVersion": "v1", "name": name, "versions": listed,
            "preferredVersion": listed[0]}


def api_group_list(groups: dict[str, list[str]]) -> dict[str, object]:
    """The `APIGroupList` that `/apis` answers."""
    items = []
    for name, versions in groups.items():
        item = api_group(name, versions)
        del item["kind"], item["apiVersion"]
        items.append(item)
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": items}
