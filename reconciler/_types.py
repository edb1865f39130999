"""Value types of the engine: records, stamps, bookmarks, pages, fences.

A `Record` is one observed version of one object (a Pod, for the synchronizer): its key
(the Pod UID), its version (the API server's resourceVersion as an integer: the only clock
we trust), the checksum of its stored fields, when it was observed, whether it is alive,
and the projected fields themselves. The engine never looks inside `fields`; only the
source that builds records and the store that writes them agree on their meaning.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple, NewType

ClusterId = NewType("ClusterId", str)
ObjectKey = NewType("ObjectKey", str)
Checksum = NewType("Checksum", str)


class State(enum.StrEnum):
    """Lifecycle of a stored row; a delete is soft, so rows only ever move to Deleted."""

    ACTIVE = "Active"
    DELETED = "Deleted"


@dataclass(frozen=True, slots=True, kw_only=True)
class Record:
    """One observed version of one object, ready to be written under the merge rule.

    `fields` holds the projected columns (already serialised where the store needs text);
    for a delete it may be empty (a full-sync tombstone knows only the key).
    """

    key: ObjectKey
    version: int
    checksum: Checksum
    query_at: datetime
    state: State = State.ACTIVE
    fields: Mapping[str, Any] = field(default_factory=dict)
    repair: bool = False
    """Set on full-sync records: also written at a version equal to the stored one, in
    full, because a list is the truth at its version; this is what repairs rows edited or
    deleted out of band (which keep their version). Watch events never set it."""

    @property
    def deleted(self) -> bool:
        """True for a delete (an observed DELETED event or a full-sync tombstone)."""
        return self.state is State.DELETED


class Stamp(NamedTuple):
    """What the full-sync diff needs of a stored row: not the whole row.

    A NamedTuple, not a dataclass: a store builds one per row of a 100k-row index, and a
    tuple is several times cheaper to construct.
    """

    version: int
    checksum: Checksum
    state: State


@dataclass(frozen=True, slots=True)
class Bookmark:
    """A watch BOOKMARK: no object changed, but the stream has reached `version`."""

    version: int


Unchanged = Callable[[ObjectKey, int], bool]
"""Asked by a source during a list, per object: is the stored row of this key, at exactly
this version, already what projecting the object would write? When it says yes the source
may skip building the record (projection, checksum) and hold the key instead: the no-change
re-sync of a large cluster then costs little more than reading the list."""


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a consistent list; every page of one list carries the list's version.

    `held` names listed objects that have no record in the page, whose rows stay as they
    are: objects that could not be made into records (a field the store cannot hold, a
    malformed status; the source reports them, and a live object is never marked deleted
    because it could not be stored), and objects the engine vouched for as `Unchanged`.
    Either way they exist, so the full sync must not tombstone their rows.
    """

    version: int
    records: Sequence[Record]
    skipped: int = 0
    held: Sequence[ObjectKey] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Fence:
    """Who may write a cluster: an owner and its epoch (a monotonic fencing token).

    A store accepts a batch only while the cluster's lease row names this owner with this
    epoch, checked in the same transaction as the write, so a paused or partitioned old
    owner's late writes are rejected (`Fenced`).
    """

    owner: str
    epoch: int = 0


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """Outcome of one `Store.apply`: rows written, rows left alone by the rule, rows refused.

    `rejected` pairs each refused key with the store's error text (for example a value too
    long under strict mode); the rest of the batch was still applied.
    """

    written: int = 0
    unchanged: int = 0
    rejected: Sequence[tuple[ObjectKey, str]] = ()


Event = Record | Bookmark
"""What a watch yields: a changed object, or a bookmark that only advances the resume point."""
