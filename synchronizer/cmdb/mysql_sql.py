"""The MySQL/MariaDB statements of one kind's table, generated from its descriptor.

The merge rule is one conditional `INSERT ... ON DUPLICATE KEY UPDATE` statement, sent for
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
"""

from __future__ import annotations

from synchronizer.kinds import Kind

from .rows import column_names

_ACT = ("IF(VALUES(resource_version) <= resource_version OR VALUES(checksum) = checksum, 0,"
        " IF(VALUES(state) = 'Active', 2, 3))")


def content_sum(kind: Kind) -> str:
    """The server-side checksum of a stored row's columns (see the module docstring)."""
    parts = ", ".join(f"IFNULL(`{c.name}`, '')" if c.nullable else f"`{c.name}`"
                      for c in kind.stored)
    return f"MD5(CONCAT_WS(CHAR(31), {parts}))"


def _act_repair(kind: Kind) -> str:
    """For full-sync records (`Record.repair`): also act at an equal version when content,
    state or the row's own integrity differ, which repairs rows edited out of band."""
    same = (f"VALUES(checksum) = checksum AND VALUES(state) = state"
            f" AND (state = 'Deleted' OR checksum = {content_sum(kind)})")
    return (f"IF(VALUES(resource_version) < resource_version OR ({same}), 0,"
            f" IF(VALUES(state) = 'Active', 2, 3))")


def upsert(kind: Kind, *, repair: bool = False) -> str:
    """The conditional upsert of one row of `kind` (the decision is made once, see above)."""
    first, second, *rest = (c.name for c in kind.stored)
    act = _act_repair(kind) if repair else _ACT
    assignments = [
        f"`{first}` = IF((@bk_act := {act}) = 2, VALUES(`{first}`), `{first}`)",
        f"`{second}` = IF((@bk_dup := COALESCE(@bk_dup, 0) + 1) > 0"
        f" AND (@bk_chg := COALESCE(@bk_chg, 0) + (@bk_act > 0)) >= 0"
        f" AND @bk_act = 2, VALUES(`{second}`), `{second}`)",
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


def load_index(kind: Kind, *, discriminated: bool) -> str:
    """uid, version, checksum ('' when the row was edited) of the Active rows of a scope.

    Tombstones are not read: the diff needs the rows it may have to delete or leave alone,
    and a cluster with CronJob churn collects tombstones by the million.
    """
    where = "cluster_id = %s AND state = 'Active'"
    if discriminated:
        where += f" AND `{kind.discriminator}` = %s"
    return (f"SELECT uid, resource_version, IF(checksum = {content_sum(kind)}, checksum, ''),"
            f" state FROM `{kind.table}` WHERE {where}")


def count_active(kind: Kind, *, discriminated: bool = False) -> str:
    """Active rows of a cluster (or of one resource of it): an index range count."""
    where = "cluster_id = %s AND state = 'Active'"
    if discriminated:
        where += f" AND `{kind.discriminator}` = %s"
    return f"SELECT COUNT(*) FROM `{kind.table}` WHERE {where}"


def purge_tombstones(kind: Kind) -> str:
    """Delete up to N tombstones of a cluster observed before a time (retention)."""
    return (f"DELETE FROM `{kind.table}` WHERE cluster_id = %s AND state = 'Deleted'"
            f" AND query_at < %s LIMIT %s")
