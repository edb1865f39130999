"""Database-side faults made to happen at a known moment: a held row lock, and what a
writer's sessions are doing on the server right now.

A fault test that needs a writer *inside* a transaction (to pause it there, to restart
the server under it, to make its statement time out) must not wait for luck. It makes
the moment instead: an admin session takes `SELECT ... FOR UPDATE` on every row of one
cluster (`RowLock`), so the writer's next write transaction for that cluster blocks at
its upsert, after its fence check took the shared lock on the lease row. The server says
when that has happened: `information_schema.INNODB_TRX` shows the writer's transaction in
`LOCK WAIT` (`wait_for_transaction`). From there the test knows exactly where the writer
is: inside a write transaction, holding its lease row, its batch not yet applied.

The admin session runs at the server's default isolation (REPEATABLE READ), so its
locking read also locks the gaps of the cluster's key range: inserts of new pods of that
cluster block as well as updates, and every write to the cluster waits for it.

Sessions are told apart by database user: give the writer a user of its own (see
`scaleout_oracles.create_user`). Use these on a private server (tests/mariadbserver.py):
InnoDB refreshes its transaction list only when nobody has read it for 100 ms (see
`CACHE_IDLE`), so another test polling it on a shared server could freeze what we see.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import pymysql
from integration.harness import admin

CACHE_IDLE = 0.1
"""InnoDB serves `INNODB_TRX` from a snapshot that it refreshes only when nobody has read
it for 100 ms (`CACHE_MIN_IDLE_TIME` in trx0i_s.cc): a reader polling faster than that,
anywhere on the server, keeps seeing the same stale snapshot forever."""
POLL = 0.25
"""Seconds between two looks at the server's transaction list: the writer is another
process, so there is no event to await; slower than `CACHE_IDLE`, so each look is fresh."""
GUARD = 60.0
"""Upper bound of any wait here."""


@dataclass(frozen=True, slots=True)
class Trx:
    """One open InnoDB transaction of a session, as the server reports it."""

    thread: int
    state: str
    """`RUNNING` (between or inside statements) or `LOCK WAIT` (blocked on a lock)."""
    rows_locked: int
    started: str


def transactions(dsn: str, user: str) -> list[Trx]:
    """The open transactions of `user`'s sessions on the server of `dsn`."""
    conn = admin(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT t.trx_mysql_thread_id, t.trx_state, t.trx_rows_locked, t.trx_started"
                " FROM information_schema.INNODB_TRX t JOIN information_schema.PROCESSLIST p"
                " ON p.ID = t.trx_mysql_thread_id WHERE p.USER = %s", (user,))
            return [Trx(int(a), str(b), int(c), str(d)) for a, b, c, d in cur.fetchall()]
    finally:
        conn.close()


async def wait_for_transaction(dsn: str, user: str, *, state: str,
                               timeout: float = GUARD) -> list[Trx]:
    """Wait until `user` has an open transaction in `state` that holds a row lock (its
    lease row, for a fenced write); returns those transactions."""
    async with asyncio.timeout(timeout):
        while True:
            found = [t for t in await asyncio.to_thread(transactions, dsn, user)
                     if t.state == state and t.rows_locked > 0]
            if found:
                return found
            await asyncio.sleep(POLL)  # the server's state: a bounded poll, see POLL


class RowLock:
    """An admin session holding `SELECT ... FOR UPDATE` on every row (and gap) of one
    cluster's pods until `release()`."""

    def __init__(self, dsn: str, cluster: str, *, table: str = "pods") -> None:
        self.dsn = dsn
        self.cluster = cluster
        self.table = table
        self._conn: pymysql.connections.Connection | None = None
        self.rows = 0

    def hold(self) -> RowLock:
        """Open the transaction and lock the rows; returns self."""
        conn = admin(self.dsn)
        with conn.cursor() as cur:
            cur.execute("SET SESSION innodb_lock_wait_timeout = 50")
            cur.execute("BEGIN")
            cur.execute(f"SELECT uid FROM `{self.table}` WHERE cluster_id = %s FOR UPDATE",
                        (self.cluster,))
            self.rows = len(cur.fetchall())
        self._conn = conn
        return self

    def release(self) -> None:
        """Roll back and close: the blocked writers go on."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        # the server may have gone away under it (a restart test): the lock is gone too
        with contextlib.suppress(pymysql.Error):
            conn.rollback()
        with contextlib.suppress(pymysql.Error):
            conn.close()

    async def __aenter__(self) -> RowLock:
        return await asyncio.to_thread(self.hold)

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.release)


COM_QUERY = 0x03
COM_STMT_BULK_EXECUTE = 0xFA
"""MariaDB's one-round-trip `executemany` (what the store's batch upsert is sent as)."""


class CommitAfterWrite:
    """A `tcpproxy.Trigger` for the MySQL protocol: fires on the COMMIT of a transaction
    that wrote pods (a bulk execute, or a text `INSERT INTO pods`), not on the COMMIT of a
    read or of a lease renewal.

    It reassembles the client's packets (3-byte length, sequence number, payload); a
    command is the payload of a packet with sequence number 0, its first byte the command
    code (the login exchange uses other sequence numbers and is skipped).
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._wrote = False

    def feed(self, data: bytes) -> bool:
        """Take client bytes; True if they hold the COMMIT of a write transaction."""
        self._buffer += data
        fired = False
        while len(self._buffer) >= 4:
            length = int.from_bytes(self._buffer[:3], "little")
            if len(self._buffer) < 4 + length:
                break
            sequence, payload = self._buffer[3], bytes(self._buffer[4:4 + length])
            del self._buffer[:4 + length]
            if sequence != 0 or not payload:
                continue
            command, body = payload[0], payload[1:].strip().upper()
            if command == COM_STMT_BULK_EXECUTE or (
                    command == COM_QUERY and body.startswith(b"INSERT INTO PODS")):
                self._wrote = True
            elif command == COM_QUERY and body == b"COMMIT":
                fired, self._wrote = fired or self._wrote, False
        return fired
