"""The MySQL/MariaDB statements of one kind's table, generated from its descriptor.

The merge rule is written twice, and the store picks one per server
(`mysql_conn.choose_upsert`; docs/designs/007-mysql8.md): "variables", then "staged".

Variables. The rule is one conditional `INSERT ... ON DUPLICATE KEY UPDATE` statement, sent for
a whole chunk of rows with `executemany`: with asyncmy on MariaDB that is one
COM_STMT_BULK_EXECUTE round trip of binary rows (no client-side escaping); elsewhere the
driver rewrites it into multi-row text statements.

MySQL evaluates the UPDATE assignments left to right, each seeing the columns already
assigned, so a per-column guard such as `IF(VALUES(checksum) <> checksum, ...)` breaks as
soon as `checksum` itself has been assigned. The first assignment therefore evaluates the
whole decision once, against the stored row, into the session variable `@bk_act`
(0: nothing — older, equal, or newer with the same content, so status-only noise writes
nothing; 2 newer live change: every column; 3 newer delete: state, checksum, version,
query_at), and every later assignment only reads it. Two more session counters
(`@bk_dup`, `@bk_chg`) count the rows that hit an existing key and the rows that changed,
so `ApplyResult` is exact without relying on the driver's affected-rows flags. Tested on
MariaDB 10.11; MySQL 8 accepts the statement but deprecates `VALUES()` and assignments in
expressions (warnings only).

Rows edited behind our back: a live row's checksum is the MD5 of its stored columns joined
by CHAR(31) (`kinds.descriptor.row_checksum`), which the server can recompute. The index a
full sync loads reports a row whose columns no longer hash to its checksum with an empty
checksum, so the diff sends the listed object again; and the repair variant of the upsert
treats such a row as different even at an equal version, which rewrites it.

Staged (MySQL 8). The same rule in statements whose meaning MySQL 8 documents without
relying on an evaluation order: the chunk is bulk-inserted into a session temporary table
shaped like the kind's (`stage_create`, made once per session), then
1. one multi-table `UPDATE stage JOIN kind` (`staged_update`) whose WHERE is the whole
   rule, evaluated against the stored row as it was before the statement, and whose every
   assignment reads only the staged row (a delete's data columns keep their own value), so
   the unspecified order of a multi-table UPDATE's assignments cannot matter; it marks the
   staged rows it wrote (`bk_done`) in the same statement;
2. one `INSERT ... SELECT` of the staged rows whose key is not stored yet
   (`staged_insert`): no IGNORE, which in strict mode would also turn a too-long value
   into a silent truncation; a row another session inserted meanwhile fails the statement
   with a duplicate key, which rolls back that statement only, and the store runs 1 and 2
   again, now seeing that row;
3. written = rows marked in 1 (marks are idempotent across a rerun) + rows inserted in 2.
"""

from __future__ import annotations

from collections.abc import Mapping

from synchronizer.kinds import Kind

from .rows import BOOKKEEPING, column_names
from .tables import CONTENT_SUM, MYSQL_TABLE_OPTIONS, content_sum, load_key, mysql_row_columns

_ACT = ("IF(VALUES(resource_version) <= resource_version OR VALUES(checksum) = checksum, 0,"
        " IF(VALUES(state) = 'Active', 2, 3))")


def _act_repair(kind: Kind) -> str:
    """For full-sync records (`Record.repair`): also act at an equal version when content,
    state or the row's own integrity differ, which repairs rows edited out of band."""
    same = (f"VALUES(checksum) = checksum AND VALUES(state) = state"
            f" AND (state = 'Deleted' OR checksum = {content_sum(kind)})")
    return (f"IF(VALUES(resource_version) < resource_version OR ({same}), 0,"
            f" IF(VALUES(state) = 'Active', 2, 3))")


def upsert(kind: Kind, *, repair: bool = False, logged: bool = False) -> str:
    """The conditional upsert of one row of `kind` (the decision is made once, see above).

    `logged`: for a statement carrying many groups' rows (`MySQLStore.apply_groups`), each
    row that hits an existing key appends to `@bk_log` whether it changed ('+' or '-') and
    its group (`log_tag`), so each group's `ApplyResult` is read from one string, instead
    of one statement and one read of the counters per group.
    """
    first, second, *rest = (c.name for c in kind.stored)
    act = _act_repair(kind) if repair else _ACT
    if logged:
        count = (f"(@bk_log := CONCAT(@bk_log, IF(@bk_act > 0, '+', '-'), {log_tag(kind)},"
                 f" CHAR(30))) IS NOT NULL")
    else:
        count = ("(@bk_dup := COALESCE(@bk_dup, 0) + 1) > 0"
                 " AND (@bk_chg := COALESCE(@bk_chg, 0) + (@bk_act > 0)) >= 0")
    assignments = [
        f"`{first}` = IF((@bk_act := {act}) = 2, VALUES(`{first}`), `{first}`)",
        f"`{second}` = IF({count} AND @bk_act = 2, VALUES(`{second}`), `{second}`)",
        *(f"`{c}` = IF(@bk_act = 2, VALUES(`{c}`), `{c}`)" for c in rest),
        "state = IF(@bk_act >= 2, VALUES(state), state)",
        "checksum = IF(@bk_act >= 2, VALUES(checksum), checksum)",
        "resource_version = IF(@bk_act >= 2, VALUES(resource_version), resource_version)",
        "query_at = IF(@bk_act >= 2, VALUES(query_at), query_at)",
    ]
    names = column_names(kind)
    values = ", ".join(["%s"] * len(names))
    columns = ", ".join(f"`{c}`" for c in names)
    return (f"INSERT INTO `{kind.table}` ({columns}) VALUES ({values})"
            f" ON DUPLICATE KEY UPDATE {', '.join(assignments)}")


def log_tag(kind: Kind) -> str:
    """The group of a row in `@bk_log`: its table, its cluster, and its resource where the
    table holds several (`kinds.descriptor`, discriminator); `group_tag` is the same
    string made on the client. One transaction's log spans every table it writes."""
    tag = f"'{kind.table}', CHAR(31), cluster_id"
    if kind.discriminator is None:
        return tag
    return f"{tag}, CHAR(31), VALUES(`{kind.discriminator}`)"


def group_tag(kind: Kind, cluster: str, fixed: Mapping[str, object]) -> str:
    """`log_tag` of a group's rows, made from the group (see `parse_log`)."""
    tag = f"{kind.table}\x1f{cluster}"
    if kind.discriminator is None:
        return tag
    return f"{tag}\x1f{fixed[kind.discriminator]}"


def parse_log(log: str) -> dict[str, tuple[int, int]]:
    """`@bk_log` read back: (rows that hit an existing key, of which changed) per tag."""
    out: dict[str, tuple[int, int]] = {}
    for entry in log.split("\x1e"):
        if entry:
            dup, chg = out.get(entry[1:], (0, 0))
            out[entry[1:]] = (dup + 1, chg + (entry[0] == "+"))
    return out


def load_index(kind: Kind, *, discriminated: bool) -> str:
    """uid, version, checksum ('' when the row was edited) of the Active rows of a scope
    (`reconciler.StoredIndex.of_rows`).

    Tombstones are not read: the diff needs the rows it may have to delete or leave alone,
    and a cluster with CronJob churn collects tombstones by the million.
    """
    where = "cluster_id = %s AND state = 'Active'"
    if discriminated:
        where += f" AND `{kind.discriminator}` = %s"
    # Forced: the optimizer prefers the primary key's prefix, which reads whole rows.
    return (f"SELECT uid, resource_version, IF(checksum = `{CONTENT_SUM}`, checksum, '')"
            f" FROM `{kind.table}` FORCE INDEX ({load_key(kind)[0]}) WHERE {where}")


def count_active(kind: Kind, clusters: int, *, discriminated: bool = False) -> str:
    """Active rows of each of `clusters` clusters (or of one resource of each), one row
    per cluster that has any: index range counts, one statement for a whole fleet."""
    where = (f"cluster_id IN ({', '.join(['%s'] * clusters)}) AND state = 'Active'")
    if discriminated:
        where += f" AND `{kind.discriminator}` = %s"
    return f"SELECT cluster_id, COUNT(*) FROM `{kind.table}` WHERE {where} GROUP BY cluster_id"


def purge_tombstones(kind: Kind) -> str:
    """Delete up to N tombstones of a cluster observed before a time (retention)."""
    return (f"DELETE FROM `{kind.table}` WHERE cluster_id = %s AND state = 'Deleted'"
            f" AND query_at < %s LIMIT %s")


# -- staged (MySQL 8) ---------------------------------------------------------------------------

STAGE_FLAGS = ("bk_repair",)
"""Staged columns beyond the table's own: whether the row is a full sync's repair record."""


def stage_table(kind: Kind) -> str:
    """The session temporary table that holds a chunk of `kind`'s rows."""
    return f"bk_stage_{kind.table}"


def stage_create(kind: Kind) -> str:
    """The stage of `kind`: its table's columns and types (so strict mode refuses the same
    values, with the same messages, when they are staged), the repair flag, the written
    mark, and the primary key the joins use. No secondary index: it holds one chunk."""
    return f"""CREATE TEMPORARY TABLE IF NOT EXISTS `{stage_table(kind)}` (
  {mysql_row_columns(kind)},
  bk_repair TINYINT NOT NULL,
  bk_done TINYINT NOT NULL DEFAULT 0,
  PRIMARY KEY (cluster_id, uid)
) {MYSQL_TABLE_OPTIONS}"""


def stage_clear(kind: Kind) -> str:
    """Empty the stage (DELETE, not TRUNCATE: TRUNCATE commits the transaction)."""
    return f"DELETE FROM `{stage_table(kind)}`"


def stage_insert(kind: Kind) -> str:
    """One staged row: the table's columns in `column_names` order, then the repair flag."""
    names = (*column_names(kind), *STAGE_FLAGS)
    return (f"INSERT INTO `{stage_table(kind)}` ({', '.join(f'`{c}`' for c in names)})"
            f" VALUES ({', '.join(['%s'] * len(names))})")


def staged_rule(kind: Kind) -> str:
    """The merge rule as a condition on the staged row `s` and the stored row `t`."""
    same = (f"s.checksum = t.checksum AND s.state = t.state"
            f" AND (t.state = 'Deleted' OR t.checksum = {content_sum(kind, 't')})")
    return (f"((s.bk_repair = 0 AND s.resource_version > t.resource_version"
            f" AND s.checksum <> t.checksum)"
            f" OR (s.bk_repair = 1 AND s.resource_version >= t.resource_version"
            f" AND NOT ({same})))")


def staged_update(kind: Kind) -> str:
    """Write every staged row the rule lets win over its stored row, and mark it.

    STRAIGHT_JOIN: the stage drives, each of its rows finding its stored row by primary
    key. A temporary table has no statistics worth the name, and left to itself the
    optimizer may scan the whole kind table instead, locking every row it reads.
    """
    data = [f"t.`{c.name}` = IF(s.state = 'Active', s.`{c.name}`, t.`{c.name}`)"
            for c in kind.stored]
    books = [f"t.{c} = s.{c}" for c in BOOKKEEPING]
    return (f"UPDATE `{stage_table(kind)}` AS s STRAIGHT_JOIN `{kind.table}` AS t"
            f" ON t.cluster_id = s.cluster_id AND t.uid = s.uid"
            f" SET {', '.join([*data, *books, 's.bk_done = 1'])}"
            f" WHERE {staged_rule(kind)}")


def staged_insert(kind: Kind) -> str:
    """Insert the staged rows whose key is not stored (a first sighting, or a tombstone)."""
    names = ", ".join(f"`{c}`" for c in column_names(kind))
    picked = ", ".join(f"s.`{c}`" for c in column_names(kind))
    return (f"INSERT INTO `{kind.table}` ({names}) SELECT {picked}"
            f" FROM `{stage_table(kind)}` AS s LEFT JOIN `{kind.table}` AS t"
            f" ON t.cluster_id = s.cluster_id AND t.uid = s.uid WHERE t.uid IS NULL")


def staged_written(kind: Kind) -> str:
    """How many staged rows the UPDATE wrote."""
    return f"SELECT COUNT(*) FROM `{stage_table(kind)}` WHERE bk_done = 1"
