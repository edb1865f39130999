"""The two formulations of the merge rule on MySQL/MariaDB (docs/designs/007-mysql8.md):
which one a server gets, that the staged one uses nothing MySQL 8 deprecates, and that
both merge a key another session inserts while a batch is being written, instead of
refusing it (the rest of this suite runs every rule, kind, lease and fault test through
both formulations: see conftest.py).
"""

from __future__ import annotations

import asyncio
import re

import pytest
from cmdb_support import CLUSTER, PodsView, active, expected, with_option
from dbfaults import wait_for_transaction
from mariadbserver import MariaDbServer

from reconciler import ApplyResult, Fence
from synchronizer.cmdb import mysql, mysql_sql, open_store, rows
from synchronizer.cmdb.dsn import parse_mysql
from synchronizer.cmdb.mysql_conn import choose_upsert
from synchronizer.kinds import KINDS, PODS


@pytest.mark.parametrize(("version", "requested", "chosen"), [
    ("10.11.19-MariaDB-0+deb12u1", "auto", "variables"),
    ("11.4.2-MariaDB", "auto", "variables"),
    ("5.7.44-log", "auto", "variables"),
    ("8.0.36", "auto", "staged"),
    ("8.4.3-commercial", "auto", "staged"),
    ("9.1.0", "auto", "staged"),
    ("8.0.36", "variables", "variables"),
    ("10.11.19-MariaDB", "staged", "staged"),
])
def test_the_server_picks_the_formulation_unless_the_dsn_does(version, requested, chosen):
    assert choose_upsert(version, requested) == chosen


def test_the_dsn_names_a_formulation_or_is_refused_in_one_line():
    assert parse_mysql("mysql://u@h/d").upsert == "auto"
    assert parse_mysql("mysql://u@h/d?upsert=STAGED").upsert == "staged"
    with pytest.raises(ValueError, match="upsert must be one of auto, variables, staged"):
        parse_mysql("mysql://u@h/d?upsert=sometimes")


def staged_statements() -> list[str]:
    out = [mysql._CLAIM, mysql._TAKE]
    for kind in KINDS.values():
        out += [mysql_sql.stage_create(kind), mysql_sql.stage_clear(kind),
                mysql_sql.stage_insert(kind), mysql_sql.staged_update(kind),
                mysql_sql.staged_insert(kind), mysql_sql.staged_written(kind)]
    return out


def test_the_staged_statements_use_nothing_mysql_8_deprecates():
    """No `VALUES()` function, no user variable, no IGNORE (which would turn a too-long
    value into a silent truncation), no TRUNCATE (which commits the transaction)."""
    for statement in staged_statements():
        assert not re.search(r"\bVALUES\s*\(\s*`?\w+`?\s*\)", statement.split(" VALUES (%s")[0])
        assert "@" not in statement and ":=" not in statement
        assert not re.search(r"\b(IGNORE|TRUNCATE)\b", statement)


async def test_the_store_reports_its_formulation(mysql_dsn):
    for dsn, expected_form in ((mysql_dsn, "variables"),
                               (with_option(mysql_dsn, "upsert", "staged"), "staged")):
        store = await open_store(dsn)
        try:
            assert store.upsert == expected_form
        finally:
            await store.close()


def writer_dsn(server: MariaDbServer, database: str, upsert: str) -> str:
    """A user of its own for the store, so the server's transaction list tells it apart."""
    conn = server.connect()
    try:
        with conn.cursor() as cur:
            for host in ("%", "localhost"):
                cur.execute(f"CREATE USER IF NOT EXISTS 'writer'@'{host}' IDENTIFIED BY 'pw'")
                cur.execute(f"GRANT ALL ON `{database}`.* TO 'writer'@'{host}'")
    finally:
        conn.close()
    return f"mysql://writer:pw@127.0.0.1:{server.port}/{database}?upsert={upsert}"


@pytest.mark.parametrize("upsert", ["variables", "staged"])
@pytest.mark.parametrize(("theirs", "ours", "winner"), [(5, 9, "ours"), (12, 9, "theirs")])
async def test_a_key_inserted_by_another_session_meanwhile_is_merged(tmp_path, upsert, theirs,
                                                                     ours, winner):
    """Another session holds a gap lock over the cluster's keys, so this batch's INSERT
    waits; while it waits, that session inserts the same key and commits. The batch must
    not fail (a duplicate key is no reason to dead-letter a row) and must apply the rule
    to the row it now finds: it wins over an older version and loses to a newer one."""
    with MariaDbServer(tmp_path / "mariadb") as server:
        root = server.create_database("cmdb")
        store = PodsView(await open_store(writer_dsn(server, "cmdb", upsert)))
        fence = Fence(owner="writer-1", epoch=1)
        assert await store.acquire(CLUSTER, fence, 60.0)
        mine, other = active("p1", ours, variant=2), active("p1", theirs, variant=1)
        blocker = server.connect("cmdb")
        try:
            with blocker.cursor() as cur:
                cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                cur.execute("BEGIN")
                cur.execute("SELECT uid FROM pods WHERE cluster_id = %s FOR UPDATE", (CLUSTER,))
                apply = asyncio.create_task(store.apply(CLUSTER, [mine], fence=fence))
                await wait_for_transaction(root, "writer", state="LOCK WAIT")
                names = ", ".join(f"`{c}`" for c in rows.column_names(PODS))
                cur.execute(f"INSERT INTO pods ({names}) VALUES"
                            f" ({', '.join(['%s'] * len(rows.column_names(PODS)))})",
                            rows.row(PODS, CLUSTER, other))
                cur.execute("COMMIT")
            result = await apply
        finally:
            blocker.close()
        try:
            if winner == "ours":
                assert result == ApplyResult(written=1)
                assert await store.rows(CLUSTER) == [expected(mine)]
            else:
                assert result == ApplyResult(unchanged=1)
                assert await store.rows(CLUSTER) == [expected(other)]
        finally:
            await store.close()
