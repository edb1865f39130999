"""The merge rule through the real stores (SQLite file and MariaDB), column by column.

Each test runs once per backend (`store_dsn`). "Every column changes" and "no column
changes" are checked by comparing whole rows before and after, so a guard that leaks one
column's new value into another's (MySQL's left-to-right assignments) cannot hide.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from cmdb_support import CLUSTER, CONTENT, active, deleted, expected

from reconciler import TOMBSTONE, ApplyResult


async def one(store: Any, key: str) -> dict[str, Any]:
    rows = {row["uid"]: row for row in await store.rows(CLUSTER)}
    return rows[key]


async def test_insert_stores_every_column(store):
    record = active("p1", 5)
    assert await store.apply(CLUSTER, [record]) == ApplyResult(written=1, unchanged=0)
    assert await store.rows(CLUSTER) == [expected(record)]


async def test_newer_different_rewrites_every_column(store):
    # From a tombstone carrying other values, so that state changes too.
    await store.apply(CLUSTER, [deleted("p1", 5, variant=1)])
    before = await one(store, "p1")
    newer = active("p1", 9, variant=2)
    assert await store.apply(CLUSTER, [newer]) == ApplyResult(written=1, unchanged=0)
    after = await one(store, "p1")
    assert after == expected(newer)
    assert [c for c in CONTENT if before[c] == after[c]] == []


async def test_newer_live_update_rewrites_every_field(store):
    await store.apply(CLUSTER, [active("p1", 5, variant=1)])
    before = await one(store, "p1")
    newer = active("p1", 9, variant=2)
    await store.apply(CLUSTER, [newer])
    after = await one(store, "p1")
    assert after == expected(newer)
    assert [c for c in CONTENT if before[c] == after[c]] == ["state"]


async def test_older_or_equal_version_changes_no_column(store):
    await store.apply(CLUSTER, [active("p1", 9, variant=1)])
    before = await one(store, "p1")
    for stale in (active("p1", 5, variant=2), active("p1", 9, variant=3), deleted("p1", 8, 4),
                  deleted("p1", 9)):
        assert await store.apply(CLUSTER, [stale]) == ApplyResult(written=0, unchanged=1)
        assert await one(store, "p1") == before


async def test_newer_equal_checksum_writes_nothing(store):
    """Status-only noise (a heartbeat: newer version, same stored content) is no write,
    from a watch or a full sync (docs/designs/006-no-version-only-writes.md)."""
    await store.apply(CLUSTER, [active("p1", 5, variant=1)])
    before = await one(store, "p1")
    for noise in (active("p1", 7, variant=1), replace(active("p1", 9, variant=1), repair=True)):
        assert await store.apply(CLUSTER, [noise]) == ApplyResult(written=0, unchanged=1)
        assert await one(store, "p1") == before


async def test_delete_of_stored_row_keeps_other_columns(store):
    await store.apply(CLUSTER, [active("p1", 5, variant=1)])
    before = await one(store, "p1")
    for delete in (deleted("p1", 8, variant=2), deleted("p1", 12)):
        await store.apply(CLUSTER, [active("p1", delete.version - 1, variant=1)])
        assert await store.apply(CLUSTER, [delete]) == ApplyResult(written=1, unchanged=0)
        after = await one(store, "p1")
        assert after == expected(delete, base=before)
        changed = {c for c in CONTENT if before[c] != after[c]}
        assert changed == {"state", "checksum", "resource_version", "query_at"}


async def test_delete_of_unseen_key_writes_tombstone(store):
    bare, full = deleted("p1", 4), deleted("p2", 6, variant=3)
    assert await store.apply(CLUSTER, [bare, full]) == ApplyResult(written=2, unchanged=0)
    rows = await store.rows(CLUSTER)
    assert rows == [expected(bare), expected(full)]
    assert rows[0]["labels"] == "{}" and rows[0]["containers"] == "[]"
    assert rows[0]["biz_id"] == 0 and rows[0]["name"] == ""
    assert {r["state"] for r in rows} == {"Deleted"}


async def test_late_create_after_tombstone_is_ignored(store):
    await store.apply(CLUSTER, [deleted("p1", 10)])
    result = await store.apply(CLUSTER, [active("p1", 3)])
    assert result == ApplyResult(written=0, unchanged=1)
    assert (await one(store, "p1"))["state"] == "Deleted"


async def test_mixed_batch_counts(store):
    await store.apply(CLUSTER, [active("a", 5), active("b", 5), active("c", 5), active("d", 5)])
    # a: older; b: newer, same content (no write); c: changed; d: deleted; e, f: new
    batch = [active("a", 4, 1), active("b", 6), active("c", 6, 1), deleted("d", 6),
             active("e", 1), deleted("f", 1)]
    assert await store.apply(CLUSTER, batch) == ApplyResult(written=4, unchanged=2)


async def test_large_batch_spans_statements(store):
    records = [active(f"p{i:05}", i + 1, variant=i % 7) for i in range(1234)]
    assert await store.apply(CLUSTER, records) == ApplyResult(written=1234, unchanged=0)
    again = [active(f"p{i:05}", i + 1 + (i % 2), variant=i % 7 + i % 2) for i in range(1234)]
    assert await store.apply(CLUSTER, again) == ApplyResult(written=617, unchanged=617)
    index = await store.load_index(CLUSTER)
    assert len(index) == 1234
    assert index.versions["p00003"] == 5


# DESIGN §3, "what must hold under message loss and disorder": one test per row.

async def test_update_before_create(store):
    create, update = active("p1", 5, 0), active("p1", 7, 1)
    await store.apply(CLUSTER, [update])
    await store.apply(CLUSTER, [create])
    assert await store.rows(CLUSTER) == [expected(update)]


async def test_update2_before_update1(store):
    create, u1, u2 = active("p1", 5, 0), active("p1", 7, 1), active("p1", 9, 2)
    for record in (create, u2, u1):
        await store.apply(CLUSTER, [record])
    assert await store.rows(CLUSTER) == [expected(u2)]


async def test_delete_before_update(store):
    create, update, delete = active("p1", 5, 0), active("p1", 7, 1), deleted("p1", 9, 1)
    for record in (create, delete, update):
        await store.apply(CLUSTER, [record])
    assert await store.rows(CLUSTER) == [expected(delete, base=expected(create))]


async def test_delete_before_create(store):
    create, delete = active("p1", 5, 0), deleted("p1", 9, 0)
    for record in (delete, create):
        await store.apply(CLUSTER, [record])
    row = (await store.rows(CLUSTER))[0]
    assert (row["state"], row["resource_version"], row["checksum"]) == ("Deleted", 9, TOMBSTONE)


async def test_duplicates_are_idempotent(store):
    history = [active("p1", 5, 0), active("p1", 7, 1), deleted("p1", 9, 1), active("p2", 4, 3)]
    for record in history:
        await store.apply(CLUSTER, [record])
    before = await store.rows(CLUSTER)
    for record in history:  # a reconnect replays everything
        assert await store.apply(CLUSTER, [record]) == ApplyResult(written=0, unchanged=1)
    assert await store.apply(CLUSTER, history[2:]) == ApplyResult(written=0, unchanged=2)
    assert await store.rows(CLUSTER) == before


async def test_lost_create_then_update_converges(store):
    await store.apply(CLUSTER, [active("p1", 7, 1)])  # the create at v5 was lost
    assert await store.rows(CLUSTER) == [expected(active("p1", 7, 1))]


async def test_lost_update_then_later_event_converges(store):
    await store.apply(CLUSTER, [active("p1", 5, 0)])  # the update at v7 was lost
    later = active("p1", 9, 2)
    await store.apply(CLUSTER, [later])
    assert await store.rows(CLUSTER) == [expected(later)]


async def test_last_event_lost_full_sync_repairs(store):
    await store.apply(CLUSTER, [active("p1", 5, 0), active("p2", 5, 0)])
    # p1's update and p2's delete were lost; the next list (version 20) repairs both.
    listed, tombstone = active("p1", 20, 1), deleted("p2", 20)
    await store.apply(CLUSTER, [listed, tombstone])
    assert await store.rows(CLUSTER) == [
        expected(listed), expected(tombstone, base=expected(active("p2", 5, 0)))]


async def test_matrix_row_15_at_the_store_an_older_different_version_is_still_newer(store):
    """The store alone cannot know of a v9 it was never asked to write; row 15 is held by
    the sender pool, which never lets v7 follow v9 (tests/unit/reconciler). Here: what
    the store does with what it is given, v5 A then v7 B: a newer change, written."""
    a5, a9, b7 = active("p1", 5, 0), active("p1", 9, 0), active("p1", 7, 1)
    for record in (a5, a9):
        await store.apply(CLUSTER, [record])
    assert await store.rows(CLUSTER) == [expected(a5)]
    await store.apply(CLUSTER, [b7])
    assert await store.rows(CLUSTER) == [expected(b7)]


async def test_matrix_row_28_one_too_long_value_is_dead_lettered(store):
    await store.apply(CLUSTER, [active("p2", 1)])
    good = [active("p1", 5), active("p3", 5)]
    bad_insert = active("p0", 5, name="x" * 300)
    bad_update = active("p2", 6, pod_ip="1" * 65)
    result = await store.apply(CLUSTER, [*good, bad_insert, bad_update])
    assert (result.written, result.unchanged) == (2, 0)
    assert dict(result.rejected).keys() == {"p0", "p2"}
    errors = dict(result.rejected)
    assert "name" in errors["p0"] and "pod_ip" in errors["p2"]
    rows = {row["uid"]: row for row in await store.rows(CLUSTER)}
    assert rows.keys() == {"p1", "p2", "p3"}
    assert rows["p2"] == expected(active("p2", 1))
    letters = await store.dead_letters(CLUSTER)
    assert [(d["uid"], d["error"]) for d in letters] == [("p0", errors["p0"]),
                                                          ("p2", errors["p2"])]
    assert '"version":5' in letters[0]["payload"]


async def test_wrong_field_type_is_dead_lettered(store):
    result = await store.apply(CLUSTER, [active("p1", 5), active("p2", 5, biz_id="two")])
    assert result.written == 1 and [k for k, _ in result.rejected] == ["p2"]
    assert "biz_id" in result.rejected[0][1]


async def test_unicode_quotes_and_sql_text_stored_verbatim(store):
    nasty = "名前-🚀-'; DROP TABLE pods; -- \"q\" \\ %s %(x)s ? `tick` \n\t"
    labels = {"app.kubernetes.io/name": nasty, "ключ": "значение", "quote'": "back\\slash",
              "emoji": "👩‍💻", "percent": "100%"}
    import orjson

    record = active("p1", 5, name=nasty[:60], namespace="ns-'\"", phase="%%",
                    labels=orjson.dumps(labels, option=orjson.OPT_SORT_KEYS).decode())
    await store.apply(CLUSTER, [record])
    row = (await store.rows(CLUSTER))[0]
    assert row == expected(record)
    assert orjson.loads(row["labels"]) == labels


async def test_100kb_labels_stored(store):
    import orjson

    labels = {f"key-{i:05}": "v" * 90 for i in range(1100)}
    text = orjson.dumps(labels, option=orjson.OPT_SORT_KEYS).decode()
    assert len(text) > 100_000
    record = active("p1", 5, labels=text)
    assert await store.apply(CLUSTER, [record]) == ApplyResult(written=1, unchanged=0)
    assert (await one(store, "p1"))["labels"] == text


async def test_load_index_reads_active_rows_only_and_counts_are_per_cluster(store):
    """Tombstones are never read by a full sync (a cluster with CronJob churn collects
    millions); a listed object whose row is a tombstone is simply sent, and the merge
    rule decides."""
    await store.apply(CLUSTER, [active("a", 5), deleted("b", 6), active("c", 7, 1)])
    await store.apply("other", [active("z", 1)])
    index = await store.load_index(CLUSTER)
    assert index.versions == {"a": 5, "c": 7}
    assert index.checksums == {"a": active("a", 5).checksum, "c": active("c", 7, 1).checksum}
    assert index.intact == index.versions and index.newest == 7
    assert await store.pods.count_active(CLUSTER) == 2
    assert await store.count_by_state(CLUSTER) == {"Active": 2, "Deleted": 1}
    assert await store.count_by_state("nobody") == {"Active": 0, "Deleted": 0}
    assert len(await store.load_index("nobody")) == 0
    assert [r["uid"] for r in await store.rows("other")] == ["z"]
    await store.ping()


async def test_empty_batch_writes_nothing(store):
    assert await store.apply(CLUSTER, []) == ApplyResult()
