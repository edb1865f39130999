"""Consistent list pages: snapshots at a revision, paging by key, list bodies.

Why snapshots: apiserver serves every page of a `limit`/`continue` list from the same etcd
revision, so a client that pages through 100,000 Pods while they change still sees one
consistent state. The simulator does the same: the first page that leaves a remainder
freezes the key order and object bytes of that resource at that revision (cheap:
references to the cached bytes, not copies), and later pages read from the frozen
snapshot. A snapshot for an older revision can also be rebuilt from the current state by
undoing the retained history, which is how `resourceVersionMatch=Exact` and evicted
snapshots are served.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import orjson


@dataclass(slots=True)
class Snapshot:
    """Every object's bytes of one resource at revision `rv`, with keys in etcd order."""

    rv: int
    order: list[str]
    items: dict[str, bytes]


def reconstruct(items: dict[str, bytes],
                newer: Iterable[tuple[str, str, str, bytes, bytes | None]],
                resource: str) -> None:
    """Undo, newest first, the history events of `resource` in `newer` on `items` (its
    current state).

    An ADDED is undone by removing the key; a MODIFIED or DELETED by restoring the bytes
    the object had before it; a revision of another resource is skipped.
    """
    for kind, res, key, _, prev in reversed(list(newer)):
        if not kind or res != resource:
            continue
        if kind == "ADDED" or prev is None:
            items.pop(key, None)
        else:
            items[key] = prev


def page(
    order: Sequence[str],
    lookup: Callable[[str], bytes],
    *,
    start: str | None,
    limit: int | None,
    namespace: str | None,
) -> tuple[list[bytes], str | None, int]:
    """(object bytes, last key if more remain, remaining count) of one page.

    `start` is the first key to include (a continue token's start); a namespace limits the
    range to keys `ns/…`, which sort together ("/" < "0", names are DNS labels).
    """
    lo_key = start or ""
    if namespace is not None:
        lo_key = max(lo_key, namespace + "/")
    lo = bisect.bisect_left(order, lo_key)
    hi = bisect.bisect_left(order, namespace + "0") if namespace is not None else len(order)
    hi = max(lo, hi)
    stop = hi if limit is None else min(hi, lo + limit)
    keys = order[lo:stop]
    raws = [lookup(k) for k in keys]
    remaining = hi - stop
    return raws, (keys[-1] if remaining and keys else None), remaining


def render(rv: int, raws: list[bytes], *, continue_token: str | None, remaining: int,
           list_kind: str = "PodList", api_version: str = "v1") -> bytes:
    """A list body (`PodList`, `NodeList`, ...) around already-serialised items."""
    meta: dict[str, object] = {"resourceVersion": str(rv)}
    if continue_token:
        meta["continue"] = continue_token
        meta["remainingItemCount"] = remaining
    return b"".join((
        b'{"kind":"', list_kind.encode(), b'","apiVersion":"', api_version.encode(),
        b'","metadata":', orjson.dumps(meta),
        b',"items":[', b",".join(raws), b"]}",
    ))
