"""Records as table rows, and the small conversions every store shares.

A kind's table has `cluster_id, uid`, the kind's stored columns in descriptor order, then
the bookkeeping columns `resource_version, checksum, query_at, state`. `row()` builds that
tuple from a record, type-checking each field against its column (a wrong type is a row
the database would refuse: `ValueError`, dead-lettered), and filling what a record does
not carry (a bare full-sync tombstone knows only its key) from the column's default or
from `fixed` (the value of the discriminator column of the resource being written).

Time: `query_at`, `expires_at` and `at` are UTC with microseconds: DATETIME(6) on MySQL; on
SQLite fixed-width text `YYYY-MM-DD HH:MM:SS.ffffff` (readable in the sqlite3 shell, sorts
correctly as text, and the same text MySQL prints for DATETIME(6)).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

from reconciler import Record, State
from synchronizer.kinds import ColumnType, Kind

KEY_LIMIT = 128
"""Width of cluster_id and uid (a UID is 36 characters; cluster ids are short names)."""
CHECKSUM_LIMIT = 64
OWNER_LIMIT = 255
ERROR_LIMIT = 4000
"""Dead-letter error text is cut to this many characters (the DB's message is short)."""
PAYLOAD_LIMIT = 1_000_000
"""Dead-letter payloads are cut to this many characters: the row is evidence, not a backup."""
BOOKKEEPING: tuple[str, ...] = ("resource_version", "checksum", "query_at", "state")
RELEASED = "1970-01-01 00:00:00.000000"
"""The `expires_at` of a lease given up on purpose. Expired like any lapsed lease (anyone
with an epoch not lower may take it), and told apart from one that merely lapsed while
renewals were slow: a fenced write is refused under a released lease, but not under a
lapsed one that nobody has taken yet (its owner's writes are still the only ones)."""


def column_names(kind: Kind) -> tuple[str, ...]:
    """Every column of `kind`'s table, in the order rows are built and written."""
    return ("cluster_id", "uid", *(c.name for c in kind.stored), *BOOKKEEPING)


def row(kind: Kind, cluster: str, record: Record,
        fixed: Mapping[str, Any] | None = None) -> tuple[Any, ...]:
    """The `column_names(kind)` values of `record`; ValueError on a field of a wrong type."""
    fields = record.fields
    values: list[Any] = [cluster, record.key]
    for column in kind.stored:
        value = fields.get(column.name)
        if fixed and column.name in fixed:
            value = fixed[column.name]  # the view's resource decides its discriminator
        elif value is None:
            value = column.default
        elif column.type is ColumnType.INT:
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{column.name} is {type(value).__name__}, expected integer")
        elif column.type is ColumnType.JSON:
            if not isinstance(value, str):
                value = orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
        elif not isinstance(value, str):
            raise ValueError(f"{column.name} is {type(value).__name__}, expected string")
        values.append(value)
    values += [int(record.version), str(record.checksum), db_time(record.query_at),
               State(record.state).value]
    return tuple(values)


def db_time(moment: datetime) -> str:
    """Return `moment` as UTC text with microseconds; a naive datetime is taken as UTC."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.isoformat(sep=" ", timespec="microseconds")


def from_db_time(value: datetime | str) -> datetime:
    """Return a stored time (DATETIME or text) as an aware UTC datetime."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC)


def dead_letter_payload(record: Record) -> str:
    """Serialise a refused record for the dead-letter table (cut to `PAYLOAD_LIMIT`)."""
    text = orjson.dumps(
        {"key": record.key, "version": record.version, "checksum": record.checksum,
         "state": str(record.state), "query_at": str(record.query_at),
         "fields": dict(record.fields)},
        default=str, option=orjson.OPT_SORT_KEYS,
    ).decode()
    return clean_text(text, PAYLOAD_LIMIT)


def clean_text(text: str, limit: int) -> str:
    """Cut `text` to `limit` characters and replace lone surrogates, so it can be stored."""
    return text[:limit].encode("utf-8", "backslashreplace").decode("utf-8")
