"""The full-sync diff: list pages against the stored index, in one pass, O(N + M).

Pages stream in; each listed record is compared with the stored stamp of its key and
emitted when the store would change (a new key, a different checksum or state); a newer
version of the same content is not sent, so a no-change re-sync writes nothing, however
many status-only changes the cluster made since. Emitted records are marked `repair`: at
an equal version the list's content wins, which is what repairs a row edited out of band
(the store reports such a row with an empty checksum, so it always differs). Keys seen
are remembered; once the list is complete — never before, so a partial list deletes nothing — stored
active keys that were not listed become tombstones at the list's version.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import datetime
from itertools import filterfalse

from ._checksum import TOMBSTONE
from ._types import ObjectKey, Record, State, StoredIndex


def changes(
    records: Sequence[Record], index: StoredIndex, seen: set[ObjectKey]
) -> Iterator[Record]:
    """Yield the listed records the store needs; add every listed key to `seen`."""
    if not records:  # every object vouched for: the checksum map is never built
        return
    active = State.ACTIVE
    stored = index.checksums.get  # None for a key with no Active row
    for record in records:
        seen.add(record.key)
        if stored(record.key) != record.checksum or record.state is not active:
            yield replace(record, repair=True)


def tombstones(
    index: StoredIndex, seen: set[ObjectKey], *, version: int, now: datetime
) -> Iterator[Record]:
    """Yield a delete at the list's `version` for every stored active key not listed."""
    for key in filterfalse(seen.__contains__, index.keys):
        yield Record(key=key, version=version, checksum=TOMBSTONE, query_at=now,
                     state=State.DELETED, repair=True)
