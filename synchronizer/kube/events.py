"""Watch lines → engine events: the event layer of the watch.

A line is `{"type": ..., "object": {...}}`. ADDED, MODIFIED and DELETED take the typed fast
path: msgspec reads the type and keeps the object as raw bytes for the kind's projection,
so a Pod is parsed once. BOOKMARK only carries a resourceVersion (the resume point moves
on); a plain one is read from its bytes (`bookmark_version`, which the feed asks first:
bookmarks are most of what an idle fleet receives), any other by the general path.
ERROR carries a Status (410 → `Expired`, anything else → `SourceUnavailable`).
Anything odd — bad JSON, an unknown type, an object the projection refuses, a bookmark
without a version — is skipped with one log line and a counted reason; the stream goes on.
Every event is counted in `events_total` by type.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import msgspec
import orjson

from reconciler import (
    Bookmark,
    Event,
    Expired,
    Metrics,
    NullMetrics,
    Record,
    SourceUnavailable,
    bound,
)
from synchronizer.kinds import BadObject

from .errors import excerpt, too_large

CHANGE_TYPES = ("ADDED", "MODIFIED", "DELETED")
ALL_TYPES = (*CHANGE_TYPES, "BOOKMARK", "ERROR", "UNKNOWN")


class _WatchEvent(msgspec.Struct):
    """A watch line; the object stays raw bytes until its type is known."""

    type: str = ""
    object: msgspec.Raw = msgspec.field(default_factory=lambda: msgspec.Raw(b"null"))


_BOOKMARK_HEAD = b'{"type":"BOOKMARK",'
_VERSION_KEY = b'"resourceVersion":"'
_EVENT = msgspec.json.Decoder(_WatchEvent)
Project = Callable[[bytes, datetime, bool], Record]
Skip = Callable[[str, str], None]


class EventDecoder:
    """Decodes the lines of one resource's watch; counts events by type."""

    def __init__(self, *, cluster: str, kind: str, project: Project,
                 clock: Callable[[], datetime], metrics: Metrics | None, skip: Skip) -> None:
        self._cluster = cluster
        self._project = project
        self._clock = clock
        self._skip = skip
        sink = metrics if metrics is not None else NullMetrics()
        self._counters = {t: bound(sink, "events_total",
                                   {"cluster": cluster, "kind": kind, "type": t})
                          for t in ALL_TYPES}
        self._bookmarks = self._counters["BOOKMARK"]

    def _count(self, type_: str) -> None:
        self._counters[type_].inc()

    def _change(self, type_: str, raw: bytes) -> Record | None:
        self._count(type_)
        try:
            return self._project(raw, self._clock(), type_ == "DELETED")
        except BadObject as exc:
            self._skip("bad_object", f"{_ident(raw)}: {exc}")
            return None

    def bookmark_version(self, line: bytes) -> int:
        """The version of a line that is a plain bookmark as API servers write it (type
        first, one resourceVersion, digits), counted; -1 for any other line, which
        `decode` then reads. Bytes are searched, nothing is parsed or allocated: an idle
        fleet's watches receive little else (design 010)."""
        if not line.startswith(_BOOKMARK_HEAD) or not line.endswith(b"}") \
                or line.count(b"{") != line.count(b"}"):  # (torn, or braces in a string)
            return -1
        start = line.find(_VERSION_KEY)
        if start < 0 or line.find(_VERSION_KEY, start + 1) >= 0:
            return -1
        start += len(_VERSION_KEY)
        digits = line[start:line.find(b'"', start)]
        if not digits.isdigit():
            return -1
        self._bookmarks.inc()
        return int(digits)

    def decode(self, line: bytes) -> Event | None:
        """The event of one line; None when it is skipped. Raises on an ERROR event."""
        try:
            fast = _EVENT.decode(line)
        except (msgspec.ValidationError, msgspec.DecodeError):
            fast = None
        if fast is not None and fast.type in CHANGE_TYPES:
            return self._change(fast.type, bytes(fast.object))
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError:
            doc = None
        if not isinstance(doc, dict):
            self._count("UNKNOWN")
            self._skip("bad_json", f"watch line {excerpt(line)}")
            return None
        type_ = doc.get("type")
        obj = doc.get("object")
        if type_ in CHANGE_TYPES:
            return self._change(type_, orjson.dumps(obj))
        if type_ == "BOOKMARK":
            self._count("BOOKMARK")
            try:
                return Bookmark(int(obj["metadata"]["resourceVersion"]))
            except (TypeError, KeyError, ValueError):
                self._skip("bad_bookmark", f"watch line {excerpt(line)}")
                return None
        if type_ == "ERROR":
            self._count("ERROR")
            status = obj if isinstance(obj, dict) else {}
            msg = (f"cluster {self._cluster}: watch ERROR {status.get('code')}"
                   f" {status.get('reason')}: {excerpt(str(status.get('message', '')))}")
            if (status.get("code") == 410 or status.get("reason") in ("Expired", "Gone")
                    or too_large(status)):
                raise Expired(msg)
            raise SourceUnavailable(msg)
        self._count("UNKNOWN")
        self._skip("unknown_type", f"watch line {excerpt(line)}")
        return None


def _ident(raw: bytes) -> str:
    try:
        obj: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return excerpt(raw)
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    if not isinstance(meta, dict):
        return excerpt(raw)
    kind = obj.get("kind") if isinstance(obj.get("kind"), str) else "object"
    return (f"{kind.lower()} {meta.get('namespace')!r}/{meta.get('name')!r}"
            f" uid={meta.get('uid')!r}")
