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

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import replace
from datetime import datetime

from ._checksum import TOMBSTONE
from ._types import ObjectKey, Record, Stamp, State


def changes(
    records: Iterable[Record], index: Mapping[ObjectKey, Stamp], seen: set[ObjectKey]
) -> Iterator[Record]:
    """Yield the listed records the store needs; add every listed key to `seen`."""
    for record in records:
        seen.add(record.key)
        stamp = index.get(record.key)
        if stamp is None or stamp.checksum != record.checksum or stamp.state != record.state:
            yield replace(record, repair=True)


def tombstones(
    index: Mapping[ObjectKey, Stamp], seen: set[ObjectKey], *, version: int, now: datetime
) -> Iterator[Record]:
    """Yield a delete at the list's `version` for every stored active key not listed."""
    for key, stamp in index.items():
        if stamp.state == State.ACTIVE and key not in seen:
            yield Record(
                key=key, version=version, checksum=TOMBSTONE, query_at=now,
                state=State.DELETED, repair=True,
            )
