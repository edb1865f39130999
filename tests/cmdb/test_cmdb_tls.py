"""TLS to the CMDB, against a real MariaDB that serves it (tests/tlscerts.py makes a CA and
the server's certificate; the server runs with `--ssl-ca/--ssl-cert/--ssl-key`).

For both drivers: `required`, `verify_ca` (with `ssl_ca`) and `verify_identity` connect
and every pooled session is encrypted (the server says which TLS version it speaks);
`preferred` is TLS where offered and plain text where not; and each refusal is one line
that names the cause and holds no secret -- an unknown CA, a certificate for another host,
a server that offers no TLS to a mode that requires it (aiomysql would quietly carry on in
plain text: the store refuses), and `disabled` against a server that requires secure
transport.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from cmdb_support import CLUSTER, PodsView, active, expected
from mariadbserver import MariaDbServer
from tlscerts import CertificateAuthority, ServerFiles

from reconciler import ApplyResult, StoreError, Transient
from synchronizer.cmdb import open_store

DRIVERS = ("asyncmy", "aiomysql")
SECRET = "hunter2-s3cret"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[ServerFiles, Path]:
    """The server's certificate files, and the certificate of a CA that did not sign it."""
    base = tmp_path_factory.mktemp("pki")
    files = CertificateAuthority(base, "bkcmdb test CA").issue("mariadb", ("127.0.0.1",))
    stranger = CertificateAuthority(base, "some other CA")
    return files, stranger.path


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory,
               pki: tuple[ServerFiles, Path]) -> Iterator[MariaDbServer]:
    """A private MariaDB serving TLS with the test CA's certificate for 127.0.0.1."""
    files, _ = pki
    server = MariaDbServer(tmp_path_factory.mktemp("tls-mariadb"), options={
        "ssl-ca": str(files.ca), "ssl-cert": str(files.cert), "ssl-key": str(files.key)})
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def database(tls_server: MariaDbServer) -> str:
    """A fresh database on the TLS server, and a user `app` (with a password) for it."""
    name = "t_" + uuid.uuid4().hex[:12]
    tls_server.create_database(name)
    conn = tls_server.connect()
    try:
        with conn.cursor() as cur:
            for host in ("%", "localhost"):
                cur.execute(f"CREATE USER IF NOT EXISTS 'app'@'{host}' IDENTIFIED BY '{SECRET}'")
                cur.execute(f"GRANT ALL ON `{name}`.* TO 'app'@'{host}'")
    finally:
        conn.close()
    return name


def dsn(server: MariaDbServer, database: str, driver: str, query: str, *,
        host: str = "127.0.0.1") -> str:
    return f"mysql+{driver}://app:{SECRET}@{host}:{server.port}/{database}?{query}"


async def encrypted(store: PodsView) -> str:
    """The TLS version of a pooled session of `store` ('' in plain text)."""
    ((_, version),) = await store.conn.query("tls", "SHOW SESSION STATUS LIKE 'Ssl_version'")
    return str(version)


def one_clean_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text and SECRET not in text and "Traceback" not in text
    return text


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("mode", ["required", "verify_ca", "verify_identity"])
async def test_tls_modes_connect_and_every_session_is_encrypted(tls_server, pki, database,
                                                                driver, mode):
    files, _ = pki
    query = f"ssl_mode={mode}" + ("" if mode == "required" else f"&ssl_ca={files.ca}")
    store = PodsView(await open_store(dsn(tls_server, database, driver, query)))
    try:
        record = active("p1", 5)
        assert await store.apply(CLUSTER, [record]) == ApplyResult(written=1)
        assert await store.rows(CLUSTER) == [expected(record)]
        assert (await encrypted(store)).startswith("TLS")
    finally:
        await store.close()


@pytest.mark.parametrize("driver", DRIVERS)
async def test_preferred_is_tls_where_offered_and_plain_text_elsewhere(tls_server, database,
                                                                       mysql_dsn, driver):
    store = PodsView(await open_store(dsn(tls_server, database, driver, "ssl_mode=preferred")))
    try:
        assert (await encrypted(store)).startswith("TLS")
    finally:
        await store.close()
    plain = mysql_dsn.replace("mysql://", f"mysql+{driver}://", 1) + "?ssl_mode=preferred"
    store = PodsView(await open_store(plain))  # the shared server has no certificate
    try:
        assert await encrypted(store) == ""
        assert await store.apply(CLUSTER, [active("p1", 5)]) == ApplyResult(written=1)
    finally:
        await store.close()


@pytest.mark.parametrize("driver", DRIVERS)
async def test_a_certificate_from_an_unknown_ca_is_refused_in_one_line(tls_server, pki,
                                                                       database, driver):
    _, stranger = pki
    with pytest.raises(StoreError) as info:
        await open_store(dsn(tls_server, database, driver,
                             f"ssl_mode=verify_ca&ssl_ca={stranger}"))
    assert not isinstance(info.value, Transient)  # retrying will not help: a config error
    text = one_clean_line(info.value)
    assert "TLS handshake failed (ssl_mode=verify_ca): certificate verify failed" in text


@pytest.mark.parametrize("driver", DRIVERS)
async def test_a_certificate_for_another_host_fails_verify_identity(tls_server, pki, database,
                                                                    driver):
    files, _ = pki
    query = f"ssl_mode=verify_identity&ssl_ca={files.ca}"
    with pytest.raises(StoreError) as info:  # the certificate names 127.0.0.1 only
        await open_store(dsn(tls_server, database, driver, query, host="localhost"))
    text = one_clean_line(info.value)
    assert "TLS handshake failed (ssl_mode=verify_identity)" in text
    assert "mismatch" in text.lower()


@pytest.mark.parametrize("driver", DRIVERS)
async def test_a_required_mode_refuses_a_server_without_tls(mysql_dsn, driver):
    """The shared server has no certificate (have_ssl DISABLED): asyncmy fails its
    handshake, aiomysql would quietly go on in plain text; both are refused, saying why."""
    u = urlsplit(mysql_dsn)
    plain = mysql_dsn.replace("mysql://", f"mysql+{driver}://", 1)
    for mode in ("required", "verify_ca"):
        with pytest.raises(StoreError) as info:
            await open_store(f"{plain}?ssl_mode={mode}")
        text = one_clean_line(info.value)
        assert f"the server does not offer TLS (its have_ssl is not YES) but ssl_mode={mode}" \
            in text and f"{u.hostname}:{u.port}" in text


@pytest.mark.parametrize("driver", DRIVERS)
async def test_disabled_against_a_server_requiring_secure_transport(tls_server, pki, database,
                                                                    driver):
    files, _ = pki
    admin = tls_server.connect()
    try:
        with admin.cursor() as cur:
            cur.execute("SET GLOBAL require_secure_transport = ON")
        with pytest.raises(StoreError) as info:
            await open_store(dsn(tls_server, database, driver, "ssl_mode=disabled"))
        text = one_clean_line(info.value)  # MariaDB 10.11 says only "Access denied"
        assert "Access denied" in text and "in plain text, to a server that offers TLS" in text
        assert "set ssl_mode=required" in text
        store = await open_store(dsn(tls_server, database, driver,
                                     f"ssl_mode=verify_ca&ssl_ca={files.ca}"))
        await store.close()  # the same server, asked properly
    finally:
        with admin.cursor() as cur:
            cur.execute("SET GLOBAL require_secure_transport = OFF")
        admin.close()
