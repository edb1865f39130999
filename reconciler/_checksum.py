"""Canonical serialisation and hashing of a record's stored fields.

The checksum decides whether a write is needed, so it must change when any stored field
changes and never otherwise: fields are serialised with sorted keys (orjson, so the bytes
are identical across processes and runs) and hashed with xxh3-128, which is an order of
magnitude faster than a cryptographic hash and collision-safe at this scale. Volatile
noise (managedFields, heartbeat times) never reaches here: the projection drops it.

A delete has its own constant checksum, distinct from any live one, so a tombstone is a
change against a live row and an idempotent no-op against another tombstone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
import xxhash

from ._types import Checksum

TOMBSTONE: Checksum = Checksum("deleted")


def canonical(fields: Mapping[str, Any]) -> bytes:
    """Serialise `fields` canonically: sorted keys at every depth, compact, UTF-8."""
    return orjson.dumps(fields, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)


def checksum(fields: Mapping[str, Any]) -> Checksum:
    """Return the hex checksum of a live record's `fields`."""
    return Checksum(xxhash.xxh3_128_hexdigest(canonical(fields)))
