"""Shared fixtures: a fresh MariaDB database per test on the real server, and real
ZooKeeper servers (one for the session, or a private one a test may stop and start).

The server comes from `scripts/ensure-services.sh` (run by `make test`), which writes its
DSN to `.test-services.env`; `BKCMDB_TEST_MYSQL` in the environment wins. Tests never skip
because a service is missing: they fail, loudly.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pymysql
import pytest
from zkserver import ZkServer

ROOT = Path(__file__).resolve().parent.parent


def _server_dsn() -> str:
    dsn = os.environ.get("BKCMDB_TEST_MYSQL")
    if dsn:
        return dsn
    env_file = ROOT / ".test-services.env"
    if env_file.exists():
        for line in env_file.read_text().splitlines():
            key, _, value = line.partition("=")
            if key == "BKCMDB_TEST_MYSQL":
                return value
    return "mysql://root@127.0.0.1:3306"


@pytest.fixture(scope="session")
def mysql_server_dsn() -> str:
    """DSN of the server, without a database."""
    return _server_dsn()


def _connect(server_dsn: str) -> pymysql.connections.Connection:
    from urllib.parse import urlsplit

    u = urlsplit(server_dsn)
    return pymysql.connect(
        host=u.hostname or "127.0.0.1", port=u.port or 3306, user=u.username or "root",
        password=u.password or "", autocommit=True,
    )


@pytest.fixture
def mysql_dsn(mysql_server_dsn: str) -> Iterator[str]:
    """A DSN naming a brand-new, empty database, dropped after the test."""
    name = "t_" + uuid.uuid4().hex[:12]
    conn = _connect(mysql_server_dsn)
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    try:
        yield f"{mysql_server_dsn.rstrip('/')}/{name}"
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        conn.close()


@pytest.fixture
def sqlite_dsn(tmp_path: Path) -> str:
    """A DSN naming a fresh SQLite file."""
    return f"sqlite:///{tmp_path / 'cmdb.db'}"


@pytest.fixture(params=["sqlite", "mysql"])
def store_dsn(request: pytest.FixtureRequest) -> str:
    """Each store-suite test runs once per backend."""
    return str(request.getfixturevalue(f"{request.param}_dsn"))




@pytest.fixture(scope="session")
def zk_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZkServer]:
    """One ZooKeeper server for the whole session (tick 200 ms, loopback, temp data)."""
    server = ZkServer(tmp_path_factory.mktemp("zookeeper"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def private_zk(tmp_path: Path) -> Iterator[ZkServer]:
    """A ZooKeeper server of this test's own, free to stop and start."""
    server = ZkServer(tmp_path / "zookeeper")
    server.start()
    try:
        yield server
    finally:
        server.stop()
