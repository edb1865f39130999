"""What apiserver's per-kind strategies do to an object before it is stored.

Why these rules are simulated at all: controllers and operators are built on them. kopf
patches status through the `/status` subresource because a patch of the main resource
would silently drop it; it reads `metadata.generation` to tell a spec change from a status
write; it blocks deletion with a finalizer and expects the object to stay, marked with a
`deletionTimestamp`, until the finalizer is removed. A simulator that stored whatever it
was sent would let a client that gets these wrong pass its tests.

The rules (from the registry strategies of kube-apiserver and apiextensions-apiserver):

- *Parts.* A write names what it may change: `all` (the simulator's own Python callers,
  standing in for kubelet and the controllers), `main` (HTTP on the resource: for a kind
  with a status subresource the status is kept as it was), `status` (HTTP on `/status`:
  only the status changes, everything else is kept as it was).
- *Create.* Over HTTP a status is not accepted from the client: Pods start `Pending`,
  Namespaces `Active`, workloads with an empty status, custom resources with none; Nodes
  keep theirs (kubelet registers a Node with its status). `generation` starts at 1.
- *Generation.* Grows by one when anything outside `metadata` and `status` changes, and
  when deletion of an object that has finalizers begins.
- *Finalizers.* While an object is being deleted no finalizer may be added and the
  deletion timestamp cannot be taken back; the write that removes the last finalizer
  deletes the object (the store does that part).
- *Secrets.* `stringData` is folded into base64 `data`, as apiserver does on every write.
"""

from __future__ import annotations

import base64
from typing import Any, Literal

from .resources import ResourceSpec
from .schema import prune, validate
from .wire import SimError

Part = Literal["all", "main", "status"]
"""Which part of an object a write may change (see the module docstring)."""

CREATE_STATUS: dict[str, dict[str, Any] | None] = {
    "pods": {"phase": "Pending"},
    "namespaces": {"phase": "Active"},
}
"""The status an HTTP create stores, per resource; a kind with a status subresource not
listed here starts with an empty status (custom resources: none); Nodes keep theirs."""
KEEPS_STATUS_ON_CREATE = frozenset({"nodes"})

META_OWNED = ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds",
              "generation")
"""Metadata that only the server sets: a client's value is replaced by the stored one."""


def _rest(obj: dict[str, Any]) -> dict[str, Any]:
    """Everything outside metadata and status: what a generation counts changes of."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


def prepare_create(spec: ResourceSpec, obj: dict[str, Any], part: Part) -> None:
    """Apply the create strategy in place (obj is already the caller's own copy)."""
    meta = obj["metadata"]
    if spec.generation:
        meta["generation"] = 1
    if part != "all" and spec.has_status and spec.id not in KEEPS_STATUS_ON_CREATE:
        status = CREATE_STATUS.get(spec.id, None if spec.schema is not None else {})
        if status is None:
            obj.pop("status", None)
        else:
            obj["status"] = dict(status)
    if spec.id == "namespaces":
        ns_spec = obj.setdefault("spec", {})
        if "kubernetes" not in ns_spec.setdefault("finalizers", []):
            ns_spec["finalizers"].append("kubernetes")
    _common(spec, obj)


def prepare_update(spec: ResourceSpec, old: dict[str, Any], new: dict[str, Any],
                   part: Part) -> dict[str, Any]:
    """The object to store when `new` replaces `old`; raises SimError when not allowed.

    `new` carries the caller's change; identity metadata (name, namespace, uid) has
    already been restored by the store.
    """
    if part == "status":
        status = new.get("status")
        new = {k: v for k, v in old.items() if k != "status"}
        new["metadata"] = dict(old["metadata"])
        if status is not None:
            new["status"] = status
    elif part == "main" and spec.has_status:
        new.pop("status", None)
        if "status" in old:
            new["status"] = old["status"]
    old_meta, meta = old["metadata"], new["metadata"]
    for field in META_OWNED:
        if field in old_meta:
            meta[field] = old_meta[field]
        else:
            meta.pop(field, None)
    if old_meta.get("deletionTimestamp"):
        added = set(meta.get("finalizers") or ()) - set(old_meta.get("finalizers") or ())
        if added:
            raise SimError(422, f'{spec.kind} "{meta["name"]}" is invalid: '
                           "metadata.finalizers: Forbidden: no new finalizers can be added "
                           "if the object is being deleted, found new finalizers "
                           f"{sorted(added)!r}", details=_details(spec, meta["name"]))
    _common(spec, new)
    if spec.generation and _rest(new) != _rest(old):
        meta["generation"] = int(old_meta.get("generation") or 0) + 1
    return new


def mark_deleting(spec: ResourceSpec, obj: dict[str, Any], timestamp: str) -> bool:
    """Begin the deletion of an object that still has finalizers; False if it already had.

    As apiserver's markAsDeleting: the deletion timestamp, a grace period of 0, and one
    more generation for a kind that counts them.
    """
    meta = obj["metadata"]
    if meta.get("deletionTimestamp"):
        return False
    if spec.generation and meta.get("generation"):
        meta["generation"] = int(meta["generation"]) + 1
    meta["deletionTimestamp"] = timestamp
    meta["deletionGracePeriodSeconds"] = 0
    return True


def _common(spec: ResourceSpec, obj: dict[str, Any]) -> None:
    """Rules of create and update alike: Secret data, custom resource schemas."""
    if spec.id == "secrets":
        fold_string_data(obj)
    if spec.schema is not None:
        prune(obj, spec.schema)
        problems = validate(obj, spec.schema)
        if problems:
            name = obj["metadata"].get("name", "")
            raise SimError(422, f'{spec.kind}.{spec.group} "{name}" is invalid: '
                           + ", ".join(problems), details=dict(
                               _details(spec, name),
                               causes=[{"reason": "FieldValueInvalid", "message": p}
                                       for p in problems]))


def fold_string_data(secret: dict[str, Any]) -> None:
    """Move `stringData` into base64 `data` (stringData wins a clash, as in apiserver)."""
    string_data = secret.pop("stringData", None)
    if not string_data:
        return
    if not isinstance(string_data, dict):
        raise SimError(400, "Secret stringData must be a map of strings")
    data = secret.setdefault("data", {})
    for key, value in string_data.items():
        data[key] = base64.b64encode(str(value).encode()).decode()


def _details(spec: ResourceSpec, name: str) -> dict[str, Any]:
    return {"name": name, "group": spec.group, "kind": spec.plural}
