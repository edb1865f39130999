"""DSN parsing and the secrecy of passwords; opening a store that cannot be reached."""

from __future__ import annotations

import socket

import pytest

from reconciler import Transient
from synchronizer.cmdb import MySQLStore, open_store
from synchronizer.cmdb.dsn import parse_mysql as parse_dsn
from synchronizer.cmdb.dsn import parse_sqlite, redact


def test_mysql_dsn_fields():
    s = parse_dsn("mysql://us%40er:p%3Ass@db.example:3307/cmdb?pool_size=4&timeout=5")
    assert (s.driver, s.host, s.port, s.user, s.password, s.database) == (
        "asyncmy", "db.example", 3307, "us@er", "p:ss", "cmdb")
    assert (s.pool_size, s.timeout) == (4, 5.0)
    assert parse_dsn("mysql+aiomysql://root@h/d").driver == "aiomysql"
    assert "p:ss" not in repr(s) and "p:ss" not in s.redacted


@pytest.mark.parametrize(("dsn", "words"), [
    ("", "empty"),
    ("postgres://u:secret@h/d", "not supported"),
    ("mysql+pg://u:secret@h/d", "scheme"),
    ("mysql://u:secret@h", "no database"),
    ("mysql://u:secret@h:99999/d", "port"),
    ("mysql://u:secret@h/d?pool=3", "'pool' is unknown"),
    ("mysql://u:secret@h/d?timeout=soon", "timeout must be a number"),
    ("sqlite://", "sqlite:///"),
    ("sqlite:///", "names no database file"),
    ("sqlite:///x.db?mode=ro", "no parameters"),
])
async def test_bad_dsn_is_one_line_value_error(dsn, words):
    with pytest.raises(ValueError, match=words) as info:
        await open_store(dsn)
    assert "\n" not in str(info.value) and "secret" not in str(info.value)


@pytest.mark.parametrize("password", ["p#ss", "a/b", "w?x", "a@b#c/d?e"])
def test_special_characters_in_a_password_are_refused_or_parsed_never_leaked(password):
    dsn = f"mysql://user:{password}@db.example:3307/cmdb"
    shown = redact(dsn)
    assert password not in shown and "db.example:3307/cmdb" in shown
    try:
        settings = parse_dsn(dsn)
    except ValueError as exc:
        assert "unencoded" in str(exc) and "%" in str(exc)
        assert password not in str(exc) and "\n" not in str(exc)
    else:  # only '@' can be told apart (the last one ends the password)
        assert settings.password == password and settings.port == 3307


def test_redact_never_raises_and_hides_what_looks_like_a_password():
    assert redact("mysql://u:pw@h/d") == "mysql://u:***@h/d"
    assert redact("mysql://u@h/d") == "mysql://u@h/d"
    assert redact("sqlite:///x.db") == "sqlite:///x.db"
    assert "s3cr#t" not in redact("mysql://u:s3cr#t/x?y@h:1/d")


def test_tls_options():
    s = parse_dsn("mysql://u@h/d?ssl_mode=REQUIRED")
    assert s.ssl_mode == "required" and s.ssl_context() is not None
    assert parse_dsn("mysql://u@h/d").ssl_context() is None
    with pytest.raises(ValueError, match="ssl_mode must be one of"):
        parse_dsn("mysql://u@h/d?ssl_mode=sometimes")


def test_sqlite_paths():
    assert parse_sqlite("sqlite:///relative/cmdb.db") == "relative/cmdb.db"
    assert parse_sqlite("sqlite:////abs/cmdb.db") == "/abs/cmdb.db"


async def test_unreachable_mysql_is_transient_and_hides_password():
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(Transient) as info:
        await MySQLStore.open(f"mysql://root:hunter2@127.0.0.1:{port}/cmdb?connect_timeout=2")
    assert "hunter2" not in str(info.value) and str(port) in str(info.value)


async def test_opening_without_migration_writes_nothing(tmp_path, mysql_dsn):
    import pymysql
    import pytest

    from reconciler import StoreError
    from synchronizer.cmdb import open_store

    missing = tmp_path / "none.db"
    with pytest.raises(StoreError):
        await open_store(f"sqlite:///{missing}", migrate=False)
    assert not missing.exists()
    store = await open_store(mysql_dsn, migrate=False)
    await store.ping()
    await store.close()
    from urllib.parse import urlsplit

    u = urlsplit(mysql_dsn)
    conn = pymysql.connect(host=u.hostname, port=u.port or 3306, user=u.username or "root",
                           password=u.password or "", database=u.path.lstrip("/"))
    with conn.cursor() as cur:
        cur.execute("SHOW TABLES")
        assert cur.fetchall() == ()
    conn.close()
