"""`status.totals`: a cluster's figures summed over its kinds, as /status shows them."""

from __future__ import annotations

from datetime import UTC, datetime

from synchronizer.status import iso, totals


def _kind(**over: object) -> dict[str, object]:
    return {"events": 1, "events_per_second": 0.5, "parked": 2, "queued": 3,
            "resume_version": 10, "full_syncs": 4, "last_full_sync_seconds": 1.5, **over}


def test_totals_sum_counts_and_take_the_weakest_progress() -> None:
    out = totals({"pods": _kind(), "nodes": _kind(events=9, resume_version=7, full_syncs=1,
                                                 last_full_sync_seconds=None)})
    assert out == {"events": 10, "events_per_second": 1.0, "parked": 4, "queued": 6,
                   "resume_version": 7, "full_syncs": 1, "last_full_sync_seconds": 1.5}
    assert totals({"pods": _kind(), "nodes": _kind(resume_version=None)})[
        "resume_version"] is None
    assert totals({})["full_syncs"] == 0


def test_iso_is_isoformat() -> None:
    moment = datetime(2026, 12, 1, 6, 30, 0, 123456, tzinfo=UTC)
    assert iso(moment) == moment.isoformat() == iso(moment)
