"""Connection building: every way a cluster can be reached, against a real loopback server.

The server is a tiny aiohttp app (HTTP or HTTPS, optionally demanding a client
certificate) that answers `GET /api/v1/pods` with an empty PodList when the request's
Authorization header is one it currently accepts, and records every header it saw.
Certificates come from the openssl CLI; the exec plugin is a Python script that prints an
ExecCredential with a new token each run.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

from reconciler import Bookmark, Event, SourceUnavailable
from synchronizer.kinds import PODS
from synchronizer.kube import (
    AccessDenied,
    ClusterClient,
    ClusterEndpoint,
    Credentials,
    KubeConfigError,
    KubeSource,
    connect,
    probe,
)
from synchronizer.kube.connection import load
from synchronizer.kube.errors import retry_after

# -- certificates -------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _issue(d: Path, name: str, cn: str, ext: str) -> None:
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}", cwd=d)
    (d / f"{name}.ext").write_text(ext)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", f"{name}.crt", "-days", "2",
             "-extfile", f"{name}.ext", cwd=d)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
             "-subj", "/CN=test-ca", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    _issue(d, "server", "127.0.0.1",
           "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    _issue(d, "client", "synchronizer",
           "extendedKeyUsage=clientAuth\n")
    return Pki(d / "ca.crt", d / "server.crt", d / "server.key",
               d / "client.crt", d / "client.key")


# -- the server ---------------------------------------------------------------------------


@dataclass
class FakeServer:
    url: str
    accepted: set[str | None]
    seen: list[str | None] = field(default_factory=list)
    peer_certs: list[object] = field(default_factory=list)


async def _serve(ssl_ctx: ssl.SSLContext | None, accepted: set[str | None]
                 ) -> AsyncIterator[FakeServer]:
    state = FakeServer(url="", accepted=accepted)

    async def pods(request: web.Request) -> web.StreamResponse:
        auth = request.headers.get("Authorization")
        state.seen.append(auth)
        transport = request.transport
        if transport is not None and transport.get_extra_info("ssl_object") is not None:
            state.peer_certs.append(transport.get_extra_info("peercert"))
        if auth not in state.accepted:
            return web.json_response(
                {"kind": "Status", "code": 401, "message": "Unauthorized"}, status=401
            )
        if request.query.get("watch"):  # one bookmark, then the stream ends
            stream = web.StreamResponse(headers={"Content-Type": "application/json"})
            stream.enable_chunked_encoding()
            await stream.prepare(request)
            await stream.write(WATCH_LINE)
            await stream.write_eof()
            return stream
        return web.json_response(
            {"kind": "PodList", "metadata": {"resourceVersion": "1"}, "items": []}
        )

    app = web.Application()
    app.router.add_get("/api/v1/pods", pods)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_ctx)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    state.url = f"{'https' if ssl_ctx else 'http'}://127.0.0.1:{port}"
    try:
        yield state
    finally:
        await runner.cleanup()


def _server_ssl(pki: Pki, *, require_client_cert: bool) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(pki.server_cert, pki.server_key)
    if require_client_cert:
        ctx.load_verify_locations(pki.ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


@pytest.fixture
async def http_server() -> AsyncIterator[FakeServer]:
    async for s in _serve(None, {None}):
        yield s


@pytest.fixture
async def https_server(pki: Pki) -> AsyncIterator[FakeServer]:
    async for s in _serve(_server_ssl(pki, require_client_cert=False), {None}):
        yield s


@pytest.fixture
async def mtls_server(pki: Pki) -> AsyncIterator[FakeServer]:
    async for s in _serve(_server_ssl(pki, require_client_cert=True), {None}):
        yield s


@asynccontextmanager
async def _client(creds: Credentials) -> AsyncIterator[ClusterClient]:
    """The production client on already-loaded credentials; closed on exit."""
    client = ClusterClient.of(creds)
    try:
        yield client
    finally:
        await client.aclose()


WATCH_LINE = b'{"type":"BOOKMARK","object":{"kind":"Pod","metadata":{"resourceVersion":"3"}}}\n'


async def _watch(client: ClusterClient) -> list[Event]:
    """A pods watch through the client's own watch transport (not aiohttp's session)."""
    source = KubeSource(client, kind=PODS, biz_id=1, inactivity=10)
    async with asyncio.timeout(20), aclosing(source.watch(1)) as events:
        return [e async for e in events]


async def _status(client: ClusterClient) -> int:
    async with client.request("/api/v1/pods", {"limit": "1"}, read_timeout=10) as response:
        await response.read()
        return response.status


def _kubeconfig(path: Path, server: str, user: dict[str, object], *,
                cluster_extra: dict[str, object] | None = None) -> Path:
    cfg = {
        "apiVersion": "v1", "kind": "Config", "current-context": "main",
        "clusters": [{"name": "c", "cluster": {"server": server, **(cluster_extra or {})}}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "main", "context": {"cluster": "c", "user": "u"}},
                     {"name": "other", "context": {"cluster": "c", "user": "u"}}],
    }
    path.write_text(json.dumps(cfg))  # JSON is YAML
    return path


# -- plain server -------------------------------------------------------------------------


async def test_plain_server_without_credentials(http_server: FakeServer) -> None:
    await probe(ClusterEndpoint(id="a", server=http_server.url))
    assert http_server.seen == [None]


async def test_plain_server_with_token(http_server: FakeServer) -> None:
    http_server.accepted = {"Bearer s3cret"}
    endpoint = ClusterEndpoint(id="a", server=http_server.url + "/", token="s3cret")
    assert "s3cret" not in repr(endpoint)
    creds = await connect(endpoint)
    assert "s3cret" not in repr(creds)
    assert "s3cret" not in repr(load(endpoint))
    async with _client(creds) as client:
        assert await _status(client) == 200
        session, _ = await client._open()
        assert "s3cret" not in repr(dict(session.headers))
    await probe(endpoint)
    assert http_server.seen == ["Bearer s3cret"] * 2


async def test_wrong_token_is_access_denied_in_one_line(http_server: FakeServer) -> None:
    http_server.accepted = {"Bearer right"}
    with pytest.raises(AccessDenied) as info:
        await probe(ClusterEndpoint(id="a", server=http_server.url, token="wrong"))
    message = str(info.value)
    assert "\n" not in message and "401" in message and "cluster a" in message
    assert "wrong" not in message


async def test_https_server_with_ca_file(https_server: FakeServer, pki: Pki) -> None:
    await probe(ClusterEndpoint(id="a", server=https_server.url, ca_file=str(pki.ca)))


async def test_https_server_without_ca_is_refused_unless_insecure(
    https_server: FakeServer,
) -> None:
    with pytest.raises(SourceUnavailable) as info:
        await probe(ClusterEndpoint(id="a", server=https_server.url))
    assert "\n" not in str(info.value)
    await probe(ClusterEndpoint(id="a", server=https_server.url, insecure=True))


async def test_unreachable_server_is_one_clear_line(unused_tcp_port: int) -> None:
    with pytest.raises(SourceUnavailable) as info:
        await probe(ClusterEndpoint(id="gone", server=f"http://127.0.0.1:{unused_tcp_port}"))
    assert "\n" not in str(info.value)
    assert "cluster gone" in str(info.value)


# -- kubeconfig ---------------------------------------------------------------------------


async def test_kubeconfig_with_token_and_ca(
    https_server: FakeServer, pki: Pki, tmp_path: Path
) -> None:
    https_server.accepted = {"Bearer kc-token"}
    path = _kubeconfig(tmp_path / "kc.yaml", https_server.url, {"token": "kc-token"},
                       cluster_extra={"certificate-authority": str(pki.ca)})
    await probe(ClusterEndpoint(id="b", kubeconfig=str(path)))
    assert https_server.seen == ["Bearer kc-token"]


async def test_kubeconfig_context_is_honoured(http_server: FakeServer, tmp_path: Path) -> None:
    path = _kubeconfig(tmp_path / "kc.yaml", http_server.url, {})
    await probe(ClusterEndpoint(id="b", kubeconfig=str(path), context="other"))
    with pytest.raises(KubeConfigError) as info:
        await probe(ClusterEndpoint(id="b", kubeconfig=str(path), context="nope"))
    assert "\n" not in str(info.value)


async def test_kubeconfig_with_client_certificate(
    mtls_server: FakeServer, pki: Pki, tmp_path: Path
) -> None:
    path = _kubeconfig(
        tmp_path / "kc.yaml", mtls_server.url,
        {"client-certificate": str(pki.client_cert), "client-key": str(pki.client_key)},
        cluster_extra={"certificate-authority": str(pki.ca)},
    )
    await probe(ClusterEndpoint(id="b", kubeconfig=str(path)))
    (cert,) = mtls_server.peer_certs
    assert cert["subject"] == ((("commonName", "synchronizer"),),)  # type: ignore[index]
    # The same server refuses a client without the certificate.
    with pytest.raises(SourceUnavailable):
        await probe(ClusterEndpoint(id="b", server=mtls_server.url, ca_file=str(pki.ca)))


async def test_watch_over_tls_with_a_client_certificate_and_a_server_name(
    mtls_server: FakeServer, pki: Pki, tmp_path: Path
) -> None:
    """The watch has its own transport (design 010): it must present the client
    certificate and check the server's name as the lists do, here the kubeconfig's
    tls-server-name (the certificate names localhost, the URL an address)."""
    path = _kubeconfig(
        tmp_path / "kc.yaml", mtls_server.url,
        {"client-certificate": str(pki.client_cert), "client-key": str(pki.client_key)},
        cluster_extra={"certificate-authority": str(pki.ca), "tls-server-name": "localhost"},
    )
    creds = await connect(ClusterEndpoint(id="b", kubeconfig=str(path)))
    assert creds.sni_hostname == "localhost"
    async with _client(creds) as client:
        assert await _watch(client) == [Bookmark(3)]
    (cert,) = mtls_server.peer_certs
    assert cert["subject"] == ((("commonName", "synchronizer"),),)  # type: ignore[index]
    wrong = _kubeconfig(
        tmp_path / "wrong.yaml", mtls_server.url,
        {"client-certificate": str(pki.client_cert), "client-key": str(pki.client_key)},
        cluster_extra={"certificate-authority": str(pki.ca), "tls-server-name": "evil"},
    )
    async with _client(await connect(ClusterEndpoint(id="b", kubeconfig=str(wrong)))) as c:
        with pytest.raises(SourceUnavailable, match=r"cluster b: watch pods: .*(?i:certificate)"):
            await _watch(c)


async def test_kubeconfig_with_embedded_certificate_data(
    mtls_server: FakeServer, pki: Pki, tmp_path: Path
) -> None:
    import base64

    def b64(p: Path) -> str:
        return base64.b64encode(p.read_bytes()).decode()

    path = _kubeconfig(
        tmp_path / "kc.yaml", mtls_server.url,
        {"client-certificate-data": b64(pki.client_cert),
         "client-key-data": b64(pki.client_key)},
        cluster_extra={"certificate-authority-data": b64(pki.ca)},
    )
    await probe(ClusterEndpoint(id="b", kubeconfig=str(path)))


def test_missing_kubeconfig_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(KubeConfigError, match="does not exist"):
        load(ClusterEndpoint(id="b", kubeconfig=str(tmp_path / "absent.yaml")))
    (tmp_path / "bad.yaml").write_text("clusters: [")
    with pytest.raises(KubeConfigError):
        load(ClusterEndpoint(id="b", kubeconfig=str(tmp_path / "bad.yaml")))


# -- exec plugin --------------------------------------------------------------------------

PLUGIN = """\
import json, sys
from pathlib import Path
counter = Path(sys.argv[1])
n = int(counter.read_text()) + 1 if counter.exists() else 1
counter.write_text(str(n))
print(json.dumps({
    "apiVersion": "client.authentication.k8s.io/v1beta1",
    "kind": "ExecCredential",
    "status": {"token": f"exec-{n}", "expirationTimestamp": sys.argv[2]},
}))
"""


@pytest.fixture
def plugin(tmp_path: Path) -> tuple[Path, Path]:
    """The exec plugin script and the counter file it numbers its tokens with."""
    script = tmp_path / "plugin.py"
    script.write_text(PLUGIN)
    return script, tmp_path / "counter"


def _exec_user(script: Path, counter: Path, expiry: str) -> dict[str, object]:
    return {"exec": {
        "apiVersion": "client.authentication.k8s.io/v1beta1",
        "command": sys.executable, "args": [str(script), str(counter), expiry],
        "interactiveMode": "Never",
    }}


async def _exec_creds(server: FakeServer, plugin: tuple[Path, Path], tmp_path: Path,
                      expiry: str = "2999-01-01T00:00:00Z") -> Credentials:
    """Credentials from a kubeconfig whose user is the exec plugin (tokens until `expiry`)."""
    script, counter = plugin
    path = _kubeconfig(tmp_path / "kc.yaml", server.url, _exec_user(script, counter, expiry))
    return await connect(ClusterEndpoint(id="c", kubeconfig=str(path)))


async def test_exec_plugin_token(
    http_server: FakeServer, plugin: tuple[Path, Path], tmp_path: Path
) -> None:
    _, counter = plugin
    http_server.accepted = {"Bearer exec-1"}
    creds = await _exec_creds(http_server, plugin, tmp_path)
    async with _client(creds) as client:
        for _ in range(3):
            assert await _status(client) == 200
    # A long-lived token is fetched once, not per request.
    assert http_server.seen == ["Bearer exec-1"] * 3
    assert counter.read_text() == "1"


async def test_exec_plugin_token_is_refreshed_before_it_expires(
    http_server: FakeServer, plugin: tuple[Path, Path], tmp_path: Path
) -> None:
    # Expires in a minute: inside the loader's five-minute skew, so every use refreshes.
    from datetime import UTC, datetime, timedelta

    soon = (datetime.now(UTC) + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    http_server.accepted = {f"Bearer exec-{n}" for n in range(1, 10)}
    creds = await _exec_creds(http_server, plugin, tmp_path, soon)
    async with _client(creds) as client:
        for _ in range(2):
            assert await _status(client) == 200
    assert http_server.seen == ["Bearer exec-2", "Bearer exec-3"]


async def test_exec_plugin_token_is_reloaded_after_401(
    http_server: FakeServer, plugin: tuple[Path, Path], tmp_path: Path
) -> None:
    creds = await _exec_creds(http_server, plugin, tmp_path)
    # The server revokes exec-1 and now accepts only the plugin's next token.
    http_server.accepted = {"Bearer exec-2"}
    async with _client(creds) as client:
        assert await _status(client) == 200
        assert await _status(client) == 200
    assert http_server.seen == ["Bearer exec-1", "Bearer exec-2", "Bearer exec-2"]


async def test_watch_reloads_the_exec_token_once_after_401(
    http_server: FakeServer, plugin: tuple[Path, Path], tmp_path: Path
) -> None:
    creds = await _exec_creds(http_server, plugin, tmp_path)
    http_server.accepted = {"Bearer exec-2"}
    async with _client(creds) as client:
        assert await _watch(client) == [Bookmark(3)]
    assert http_server.seen == ["Bearer exec-1", "Bearer exec-2"]
    http_server.accepted = {"Bearer revoked-for-good"}  # a reload cannot help: denied
    async with _client(creds) as client:
        with pytest.raises(AccessDenied, match="cluster c: watch pods: HTTP 401"):
            await _watch(client)


# -- in-cluster ---------------------------------------------------------------------------


async def test_in_cluster_service_account(
    https_server: FakeServer, pki: Pki, tmp_path: Path
) -> None:
    token = tmp_path / "token"
    token.write_text("sa-1")
    port = https_server.url.rsplit(":", 1)[1]
    env = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": port}
    https_server.accepted = {"bearer sa-1"}
    creds = await connect(
        ClusterEndpoint(id="self"), environ=env,
        service_token_file=str(token), service_ca_file=str(pki.ca),
    )
    assert creds.base_url == https_server.url
    async with _client(creds) as client:
        assert await _status(client) == 200
        # The kubelet rotates the projected token; the old one is revoked: one 401, reload.
        token.write_text("sa-2")
        https_server.accepted = {"bearer sa-2"}
        assert await _status(client) == 200
    assert https_server.seen == ["bearer sa-1", "bearer sa-1", "bearer sa-2"]


def test_no_server_no_kubeconfig_outside_a_cluster_is_a_config_error() -> None:
    with pytest.raises(KubeConfigError, match="KUBERNETES_SERVICE_HOST"):
        load(ClusterEndpoint(id="x"), environ={})


def test_in_cluster_without_token_file_is_a_config_error(tmp_path: Path) -> None:
    env = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    with pytest.raises(KubeConfigError, match="service account"):
        load(ClusterEndpoint(id="x"), environ=env,
             service_token_file=str(tmp_path / "none"), service_ca_file=str(tmp_path / "ca"))


# -- Retry-After --------------------------------------------------------------------------


def test_retry_after_forms() -> None:
    from datetime import UTC, datetime

    fixed = datetime(2024, 1, 1, 0, 0, 0, tzinfo=UTC)
    assert retry_after("7") == 7.0
    assert retry_after("1.5") == 1.5
    assert retry_after(None) is None
    assert retry_after("soon") is None
    assert retry_after("Mon, 01 Jan 2024 00:00:30 GMT", now=lambda: fixed) == 30.0
    assert retry_after("Sun, 31 Dec 2023 00:00:00 GMT", now=lambda: fixed) == 0.0

