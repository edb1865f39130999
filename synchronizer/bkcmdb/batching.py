"""Chunking, paging and idempotent creates: the shapes every bk-cmdb type's methods share.

- `chunks` cuts input to a type's per-request limit, so no request is ever over it.
- `list_all` pages a list route by 500 (`page.sort = id`, so pages do not shift under
  inserts of newer objects) and stops on a short page: bk-cmdb answers `count: 0` unless
  asked for a count, so the count cannot say when to stop.
- `create_all` makes creates idempotent. bk-cmdb writes a batch in one transaction, so one
  existing object (left by a crash, an ambiguous create, or another instance) fails the
  whole batch with 1199014 and says only which key clashed. On that answer the chunk's keys
  are looked up, the existing objects are adopted (their ids returned as if created) and the
  rest is created again; a second clash means someone else is creating the same objects
  concurrently, and is raised. A caller that must know which objects were adopted rather
  than made (the pusher checks an adopted object's fields, since it may be a stale leftover)
  passes `adopted`, a dict that receives the found records by key.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from . import codes
from .errors import DuplicateError, RejectedError
from .transport import Endpoint, Transport

log = logging.getLogger("synchronizer.bkcmdb")
T = TypeVar("T")
K = TypeVar("K", bound=Hashable)


class Keyed(Protocol[K]):
    """Anything with bk-cmdb's unique key."""

    @property
    def key(self) -> K:
        """The unique key."""
        ...


class Identified(Protocol):
    """A record bk-cmdb answered, with its id."""

    @property
    def id(self) -> int:
        """bk-cmdb's id."""
        ...


S = TypeVar("S", bound=Keyed[Any])
R = TypeVar("R", bound=Identified)


def chunks(items: Sequence[T], size: int) -> list[Sequence[T]]:
    """`items` in consecutive slices of at most `size`."""
    if size < 1:
        raise ValueError("chunk size must be >= 1")
    return [items[i:i + size] for i in range(0, len(items), size)]


def check_limit(name: str, count: int, limit: int) -> None:
    """Refuse locally what bk-cmdb would refuse with 1199035, before sending it."""
    if count > limit:
        raise ValueError(f"{name}: {count} objects in one request, bk-cmdb allows {limit}")


def rule(field: str, operator: str, value: Any) -> dict[str, Any]:
    """One atomic filter rule."""
    return {"field": field, "operator": operator, "value": value}


def all_of(*rules: dict[str, Any]) -> dict[str, Any]:
    """The AND of `rules` as a bk-cmdb filter."""
    return {"condition": "AND", "rules": list(rules)}


async def list_all(transport: Transport, endpoint: Endpoint, body: Mapping[str, Any], *,
                   params: Mapping[str, object] | None = None,
                   page_size: int = codes.MAX_PAGE) -> list[dict[str, Any]]:
    """Every row of a list route, page by page."""
    rows: list[dict[str, Any]] = []
    start = 0
    while True:
        page = {"start": start, "limit": page_size, "sort": "id", "enable_count": False}
        data = await transport.call(endpoint, {**body, "page": page}, params=params)
        info = data.get("info") if isinstance(data, Mapping) else None
        batch = [row for row in info or [] if isinstance(row, dict)]
        rows.extend(batch)
        if len(batch) < page_size:
            return rows
        start += page_size


async def list_in(values: Iterable[Any], fetch: Callable[[list[Any]], Awaitable[list[T]]],
                  *, size: int = codes.MAX_IN_VALUES) -> list[T]:
    """`fetch` for every slice of `values` small enough for one `in` rule, concatenated."""
    unique = list(dict.fromkeys(values))
    found: list[T] = []
    for part in chunks(unique, size):
        found.extend(await fetch(list(part)))
    return found


def unique_by_key(specs: Iterable[S]) -> list[S]:
    """`specs` without repeated keys (the first one of a key wins)."""
    seen: dict[Any, S] = {}
    for spec in specs:
        seen.setdefault(spec.key, spec)
    return list(seen.values())


async def create_all(specs: Iterable[S], *, limit: int,
                     send: Callable[[Sequence[S]], Awaitable[list[int]]],
                     find: Callable[[Sequence[S]], Awaitable[Mapping[Any, R]]],
                     what: str, adopted: dict[Any, R] | None = None) -> dict[Any, int]:
    """Create `specs` in chunks of `limit`; existing ones are adopted. Returns key → id.

    `adopted`, if given, receives the records of the objects that already existed.
    """
    created: dict[Any, int] = {}
    for chunk in chunks(unique_by_key(specs), limit):
        try:
            ids = await send(chunk)
        except DuplicateError as exc:
            existing = await find(chunk)
            found = {spec.key: existing[spec.key] for spec in chunk if spec.key in existing}
            log.info("%s: %d of %d already exist (%s); adopting them", what, len(found),
                     len(chunk), exc.message)
            created.update((key, record.id) for key, record in found.items())
            if adopted is not None:
                adopted.update(found)
            rest = [spec for spec in chunk if spec.key not in found]
            if not rest:
                continue
            ids, chunk = await send(rest), rest
        if len(ids) != len(chunk):
            raise RejectedError(what, f"created {len(chunk)}, the answer has {len(ids)} ids")
        created.update((spec.key, oid) for spec, oid in zip(chunk, ids, strict=True))
    return created
