"""The service's earlier Pod decoders, swapped into `KubePodSource` by `bench.ours --decode`.

Not used by the service: these keep the "before" of a change measurable next to its
"after" (docs/benchmarks.md). Until commit 4cf1545 the source parsed every page and watch
line with orjson into plain dicts and projected them (`synchronizer.projection.project`);
since then it decodes with msgspec into typed structs of the stored fields only
(`project_json`), which skips the rest of a ~5.5 KB Pod without allocating it.

- `service`: leave the service's decoder alone (msgspec, the default).
- `orjson`: the decoder as it was before 4cf1545, line for line: the whole page parsed
  into dicts with the cyclic GC paused (`_gc_paused`); the GC resumes while the parsed page
  (~10^5 containers) is still referenced, and the context manager's own exit allocates, so
  a young collection runs over all of it, once per page.
- `orjson-early-free`: the same, but the parsed page is freed while the GC is still paused.
"""

from __future__ import annotations

from typing import Any

import orjson

from reconciler import Event, Record, SourceUnavailable
from synchronizer.kube.errors import excerpt
from synchronizer.kube.source import KubePodSource, _gc_paused
from synchronizer.projection import BadObject, project

DECODERS = ("service", "orjson", "orjson-early-free")
_CHANGES = ("ADDED", "MODIFIED", "DELETED")


def _orjson_page(self: KubePodSource, body: bytes, early_free: bool
                 ) -> tuple[dict[str, Any], list[Record], int]:
    """One page, parsed with orjson into dicts and projected: the pre-4cf1545 code, line
    for line (including `_gc_paused`, whose exit re-enables the GC while `doc` is alive)."""
    with _gc_paused():
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            doc = None
        if not isinstance(doc, dict) or not isinstance(doc.get("items") or [], list):
            raise SourceUnavailable(
                f"cluster {self.cluster_id}: list pods: not a PodList: {excerpt(body)}")
        observed = self._clock()
        records: list[Record] = []
        skipped = 0
        for item in doc.get("items") or ():
            try:
                records.append(project(item, biz_id=self.biz_id, observed=observed))
            except BadObject as exc:
                skipped += 1
                self._skip_object(item, exc)
        meta = doc.get("metadata")
        if early_free:
            del doc
    return (meta if isinstance(meta, dict) else {}), records, skipped


def _orjson_event(self: KubePodSource, line: bytes, service: Any) -> Event | None:
    """One watch line parsed with orjson into dicts (changes); the rest as the service does."""
    try:
        doc = orjson.loads(line)
    except orjson.JSONDecodeError:
        return service(self, line)
    type_ = doc.get("type") if isinstance(doc, dict) else None
    if type_ not in _CHANGES:
        return service(self, line)
    self._count(type_)
    obj = doc.get("object")
    try:
        return project(obj, biz_id=self.biz_id, observed=self._clock(),
                       deleted=type_ == "DELETED")
    except BadObject as exc:
        self._skip_object(obj, exc)
        return None


def install(decoder: str) -> None:
    """Swap `decoder` into `KubePodSource` (process-wide; "service" leaves it alone)."""
    if decoder == "service":
        return
    if decoder not in DECODERS:
        raise ValueError(f"unknown decoder {decoder!r}")
    early_free = decoder == "orjson-early-free"
    service_event = KubePodSource._event

    def decode_page(self: KubePodSource, body: bytes
                    ) -> tuple[dict[str, Any], list[Record], int]:
        return _orjson_page(self, body, early_free)

    def event(self: KubePodSource, line: bytes) -> Event | None:
        return _orjson_event(self, line, service_event)

    KubePodSource._decode_page = decode_page  # type: ignore[method-assign]
    KubePodSource._event = event  # type: ignore[method-assign]
