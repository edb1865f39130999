"""What a kind is: the API resources it comes from, the table it goes to, how it is projected.

The engine works on records and never looks inside them; everything kind-specific lives in
one `Kind` value, so the source, the stores, `verify` and `/status` are written once and
take a kind as a parameter. Adding a kind is one descriptor (this module's types), one
projection function, and one migration (docs/designs/005-kinds.md shows it done).

- A `Resource` is one API resource as the API server serves it (group, version, plural;
  cluster- or namespace-scoped). A kind has one or more: `workloads` gathers Deployments,
  StatefulSets, DaemonSets, Jobs and CronJobs in one table, told apart by its
  `discriminator` column (`kind`). One reconciler runs per (cluster, resource): each
  resource has its own list and watch, and so its own consistent snapshot and version.
- `columns` are the stored, checksummed fields, in table order after `cluster_id, uid`;
  the bookkeeping columns (resource_version, checksum, query_at, state) are the stores'
  business. Limits are characters; the projection cuts a longer value to the limit and
  names the column in `truncated` (the row stays correct and visibly flagged: a live
  object is never left out, let alone marked deleted, because one field was too long).
- `project` turns the JSON bytes of one object into a `Record`, or raises `BadObject`
  with a one-line reason (and the object's uid, when it has one, so a full sync knows the
  object exists).
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgspec
import orjson

from reconciler import TOMBSTONE, Checksum, ObjectKey, Record, State


class BadObject(ValueError):
    """An object that cannot be projected; the message is one line naming the problem.

    `uid` is the object's uid when it could be read: the object exists, so a full sync
    must not tombstone its row.
    """

    def __init__(self, message: str, *, uid: str | None = None) -> None:
        super().__init__(message)
        self.uid = uid


@dataclass(frozen=True, slots=True)
class Resource:
    """One API resource: where its list and watch live and what its objects are called."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        """`v1`, `apps/v1`: the apiVersion of its objects."""
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def path(self) -> str:
        """The cluster-wide collection path: `/api/v1/pods`, `/apis/apps/v1/deployments`."""
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        return f"{base}/{self.plural}"


class ColumnType(enum.StrEnum):
    """How a column is stored; the stores map these onto their SQL types."""

    TEXT = "text"
    """VARCHAR(limit) on MySQL, TEXT with a length CHECK on SQLite."""
    INT = "int"
    """BIGINT / INTEGER."""
    JSON = "json"
    """Serialised JSON text (sorted keys): MEDIUMTEXT on MySQL, so big labels fit."""


@dataclass(frozen=True, slots=True)
class Column:
    """One stored field of a kind."""

    name: str
    type: ColumnType = ColumnType.TEXT
    limit: int | None = None
    """Characters, for TEXT columns."""
    nullable: bool = False
    """NULL means "the object has no such field" (a DaemonSet's replicas)."""
    default: Any = ""
    """What a row holds when a record does not carry the field (a bare tombstone)."""


TRUNCATED = Column("truncated", limit=255)
"""Every kind's last column: the names of the columns whose value was cut to fit."""


@dataclass(frozen=True, slots=True)
class Projection:
    """The context a projection needs besides the object itself."""

    resource: Resource
    biz_id: int
    observed: datetime
    deleted: bool = False


Projector = Callable[[bytes, Projection], Record]
"""Turns one object's JSON into a record; raises `BadObject`."""


@dataclass(frozen=True, slots=True)
class Kind:
    """One kind of object the CMDB keeps: its resources, table, columns and projection."""

    name: str
    """The config name (`sync.kinds`) and the table name."""
    resources: tuple[Resource, ...]
    columns: tuple[Column, ...]
    """Stored, checksummed fields in table order (without `truncated`, added by `stored`)."""
    project: Projector
    discriminator: str | None = None
    """The column whose value tells this kind's resources apart in its one table."""
    indexes: tuple[tuple[str, ...], ...] = ()
    """Extra secondary indexes, each a tuple of column names after `cluster_id`."""
    volatile: tuple[str, ...] = ()
    """Fields of the objects that are deliberately not stored (documentation and tests)."""
    limits: Mapping[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        limits = {c.name: c.limit for c in self.stored if c.limit is not None}
        object.__setattr__(self, "limits", limits)

    @property
    def table(self) -> str:
        """The table holding this kind's rows."""
        return self.name

    @property
    def stored(self) -> tuple[Column, ...]:
        """Every stored field in table order, `truncated` last."""
        return (*self.columns, TRUNCATED)

    def resource(self, plural: str) -> Resource:
        """One of this kind's resources by plural name; KeyError when it is not one."""
        for r in self.resources:
            if r.plural == plural:
                return r
        raise KeyError(plural)


def fit(fields: dict[str, Any], limits: Mapping[str, int]) -> dict[str, Any]:
    """Cut every text value over its column's limit and name those columns in `truncated`."""
    cut = [name for name, limit in limits.items()
           if isinstance(fields.get(name), str) and len(fields[name]) > limit]
    for name in cut:
        fields[name] = fields[name][: limits[name]]
    fields["truncated"] = ",".join(cut)[: limits.get("truncated", 255)]
    return fields


def labels_json(labels: Mapping[str, Any] | None) -> str:
    """Labels as stored: JSON with sorted keys (stable bytes for the checksum)."""
    return orjson.dumps(labels or {}, option=orjson.OPT_SORT_KEYS).decode()


SEPARATOR = "\x1f"
"""Between column values in the checksummed text (ASCII unit separator, never in a name)."""


def rendered(value: Any) -> str:
    """A column value as the database renders it in a string context (NULL as empty)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def row_checksum(fields: Mapping[str, Any], columns: Sequence[Column]) -> Checksum:
    """MD5 (hex) of the stored columns' values joined by `SEPARATOR`, in table order.

    Why this and not a hash of canonical JSON: the database can compute the very same
    function over the columns it holds (MySQL `MD5(CONCAT_WS(CHAR(31), ...))`, SQLite a
    registered function), so a full sync can tell a row edited behind our back (its
    columns no longer hash to its checksum) from one we wrote, and repair it.
    """
    text = SEPARATOR.join(rendered(fields.get(c.name)) for c in columns)
    digest = hashlib.md5(text.encode("utf-8", "surrogatepass"), usedforsecurity=False)
    return Checksum(digest.hexdigest())


def record(uid: str, version: int, fields: dict[str, Any], ctx: Projection,
           columns: Sequence[Column]) -> Record:
    """A record of projected `fields`: a live version, or a delete when `ctx.deleted`.

    `columns` are the kind's stored columns, over which the checksum is taken.
    """
    sum_: Checksum = TOMBSTONE if ctx.deleted else row_checksum(fields, columns)
    return Record(
        key=ObjectKey(uid), version=version, checksum=sum_, query_at=ctx.observed,
        state=State.DELETED if ctx.deleted else State.ACTIVE, fields=fields,
    )


def version_of(text: Any, uid: str | None) -> int:
    """The integer resourceVersion, or `BadObject` naming the bad value."""
    try:
        return int(text)
    except (TypeError, ValueError):
        raise BadObject(f"metadata.resourceVersion {text!r} is not an integer",
                        uid=uid) from None


class Meta(msgspec.Struct):
    """The metadata every kind's fast decoder reads (null maps tolerated)."""

    uid: str = ""
    name: str = ""
    namespace: str = ""
    resourceVersion: str = ""
    labels: dict[str, str] | None = None


class _Ident(msgspec.Struct):
    metadata: dict[str, Any] | None = None


_IDENT = msgspec.json.Decoder(_Ident)


class _HeadMeta(msgspec.Struct):
    uid: str = ""
    resourceVersion: str = ""


class _Head(msgspec.Struct):
    metadata: _HeadMeta | None = None


_HEAD = msgspec.json.Decoder(_Head)


def head_of(raw: bytes) -> tuple[str, int] | None:
    """(uid, resourceVersion) of an object, read without decoding the rest of it; None
    when either is missing or malformed (the projection then says why)."""
    try:
        meta = _HEAD.decode(raw).metadata
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None
    if meta is None or not meta.uid or not meta.resourceVersion.isdigit():
        return None
    return meta.uid, int(meta.resourceVersion)


def uid_of(raw: bytes) -> str | None:
    """The uid of an object that could not be decoded otherwise, if it has a usable one."""
    try:
        meta = _IDENT.decode(raw).metadata or {}
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None
    uid = meta.get("uid")
    return uid if isinstance(uid, str) and uid else None


def decode(decoder: msgspec.json.Decoder[Any], raw: bytes) -> Any:
    """Decode `raw` with a typed decoder; `BadObject` with msgspec's one-line reason."""
    try:
        return decoder.decode(raw)
    except msgspec.ValidationError as exc:  # a subclass of DecodeError: first
        raise BadObject(str(exc).splitlines()[0], uid=uid_of(raw)) from None
    except msgspec.DecodeError:
        raise BadObject("object is not valid JSON") from None


def identity(meta: Meta, *, namespaced: bool) -> tuple[str, int]:
    """(uid, version) of an object, or `BadObject` naming what is missing."""
    if not meta.uid:
        raise BadObject("missing metadata.uid")
    if not meta.name:
        raise BadObject("missing metadata.name", uid=meta.uid)
    if namespaced and not meta.namespace:
        raise BadObject("missing metadata.namespace", uid=meta.uid)
    return meta.uid, version_of(meta.resourceVersion, meta.uid)
