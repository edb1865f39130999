"""How to reach one cluster's API server: base URL, TLS and a self-refreshing credential.

A cluster is described by a `ClusterEndpoint`: a plain `server` URL (optional bearer token,
CA file, insecure flag), or a kubeconfig file (optional context), or nothing at all inside
a Pod (the in-cluster service account). Kubeconfigs and the service account are read with
the `kubernetes` library's own loaders, so every form kubectl understands (token, token
file, client certificate, exec plugin, basic auth) works here without a parser of ours.

Exec-plugin and service-account tokens expire. The loaders install a refresh hook that
re-runs the plugin / re-reads the token file when the old one is (nearly) stale; we call
it before every request, and on a 401 we reload everything from scratch once and retry.
Both run in a worker thread because an exec plugin is a blocking subprocess.

Secrets stay in `Credentials` (no `repr`) and in the request's Authorization header; they
are never logged and never placed in a session's default headers.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

SERVICE_TOKEN_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/token"
SERVICE_CA_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
USER_AGENT = "bkcmdb-synchronizer"


class KubeConfigError(ValueError):
    """A cluster's connection settings cannot be used; the message is one line."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterEndpoint:
    """What is needed to reach one cluster; the settings module maps its entries onto it.

    Exactly one of `server` and `kubeconfig` is normally set; with neither, the in-cluster
    service account is used (when `KUBERNETES_SERVICE_HOST` is set).
    """

    id: str
    server: str | None = None
    token: str | None = field(default=None, repr=False)
    ca_file: str | None = None
    insecure: bool = False
    kubeconfig: str | None = None
    context: str | None = None

    @property
    def kind(self) -> str:
        """Which way of connecting applies: `server`, `kubeconfig` or `in-cluster`."""
        if self.server:
            return "server"
        if self.kubeconfig:
            return "kubeconfig"
        return "in-cluster"


@dataclass(frozen=True, slots=True)
class Loaded:
    """One reading of the credentials: what a loader produced at one moment."""

    server: str
    authorization: str | None = field(repr=False)
    ca_file: str | None
    cert_file: str | None
    key_file: str | None
    verify: bool
    sni_hostname: str | None
    proxy: str | None
    config: Any = field(repr=False)
    """The kubernetes `Configuration` whose refresh hook re-reads tokens (None: static)."""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _from_configuration(cfg: Any) -> Loaded:
    """Read what we need off a `kubernetes.client.Configuration` the loaders filled in."""
    if not cfg.host:
        raise KubeConfigError("no server URL in the cluster configuration")
    return Loaded(
        server=cfg.host.rstrip("/"),
        authorization=cfg.api_key.get("BearerToken") or None,
        ca_file=cfg.ssl_ca_cert,
        cert_file=cfg.cert_file,
        key_file=cfg.key_file,
        verify=bool(cfg.verify_ssl),
        sni_hostname=cfg.tls_server_name,
        proxy=cfg.proxy,
        config=cfg,
    )


def load(
    endpoint: ClusterEndpoint,
    *,
    environ: Mapping[str, str] | None = None,
    service_token_file: str = SERVICE_TOKEN_FILE,
    service_ca_file: str = SERVICE_CA_FILE,
) -> Loaded:
    """Read the endpoint's credentials now (blocking: files, maybe an exec plugin)."""
    env = os.environ if environ is None else environ
    kind = endpoint.kind
    if kind == "server":
        assert endpoint.server is not None
        return Loaded(
            server=endpoint.server.rstrip("/"),
            authorization=f"Bearer {endpoint.token}" if endpoint.token else None,
            ca_file=endpoint.ca_file, cert_file=None, key_file=None,
            verify=not endpoint.insecure, sni_hostname=None, proxy=None, config=None,
        )
    # Imported lazily: the kubernetes client costs ~0.5 s to import and plain servers
    # never need it.
    from kubernetes.client import Configuration
    from kubernetes.config.incluster_config import InClusterConfigLoader
    from kubernetes.config.kube_config import load_kube_config

    cfg = Configuration()
    try:
        if kind == "kubeconfig":
            path = os.path.expanduser(str(endpoint.kubeconfig))
            if not os.path.isfile(path):
                raise KubeConfigError(f"kubeconfig {path} does not exist")
            load_kube_config(
                config_file=path, context=endpoint.context, client_configuration=cfg,
                persist_config=False,
            )
        else:
            if not env.get("KUBERNETES_SERVICE_HOST"):
                raise KubeConfigError(
                    "neither server nor kubeconfig given, and not running in a cluster"
                    " (KUBERNETES_SERVICE_HOST is unset)"
                )
            InClusterConfigLoader(
                token_filename=service_token_file, cert_filename=service_ca_file,
                environ=env,
            ).load_and_set(cfg)
    except KubeConfigError:
        raise
    except Exception as exc:  # the loaders raise anything on a malformed file
        where = endpoint.kubeconfig if kind == "kubeconfig" else "service account"
        raise KubeConfigError(f"cannot load {where}: {_first_line(exc)}") from None
    return _from_configuration(cfg)


def _ssl_context(loaded: Loaded) -> ssl.SSLContext:
    """A TLS context trusting the cluster's CA (or nothing, if insecure) with its client cert."""
    try:
        ctx = ssl.create_default_context(cafile=loaded.ca_file)
        if not loaded.verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if loaded.cert_file:
            ctx.load_cert_chain(loaded.cert_file, loaded.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise KubeConfigError(f"cannot load TLS material: {exc}") from None
    return ctx


class Credentials:
    """The live connection parameters of one cluster; refreshes expiring tokens.

    Built by `connect()`. `authorization()` is called before every request (cheap unless a
    refresh is due); `reload()` after a 401.
    """

    def __init__(
        self, endpoint: ClusterEndpoint, loaded: Loaded, reader: Callable[[], Loaded]
    ) -> None:
        self.endpoint = endpoint
        self._loaded = loaded
        self._reader = reader
        self._lock = asyncio.Lock()
        self.base_url = loaded.server
        self.proxy = loaded.proxy
        self.sni_hostname = loaded.sni_hostname
        self.ssl_context: ssl.SSLContext | None = (
            _ssl_context(loaded) if loaded.server.startswith("https") else None
        )

    def __repr__(self) -> str:
        return f"Credentials({self.endpoint.id!r}, {self.base_url!r}, {self.endpoint.kind})"

    @property
    def refreshable(self) -> bool:
        """True when the credential comes from a loader that can produce a new one."""
        return self._loaded.config is not None

    def _hook(self) -> str | None:
        cfg = self._loaded.config
        hook = getattr(cfg, "refresh_api_key_hook", None)
        try:
            if hook is not None:
                hook(cfg)
        except Exception as exc:  # a vanished token file, a failing plugin: say which
            raise KubeConfigError(f"cannot refresh credentials: {_first_line(exc)}") from None
        return cfg.api_key.get("BearerToken") or None

    async def authorization(self) -> str | None:
        """The current Authorization header value, refreshed first if the loader says so."""
        if self._loaded.config is None or self._loaded.config.refresh_api_key_hook is None:
            return self._loaded.authorization
        async with self._lock:
            return await asyncio.to_thread(self._hook)

    async def reload(self, stale: str | None) -> str | None:
        """Re-read everything (after a 401) unless another request already did since `stale`."""
        async with self._lock:
            current = self._loaded.config.api_key.get("BearerToken") or None
            if current != stale:
                return current
            loaded = await asyncio.to_thread(self._reader)
            if loaded.cert_file and self.ssl_context is not None:
                # New connections present the new certificate; the context is shared.
                self.ssl_context.load_cert_chain(loaded.cert_file, loaded.key_file)
            self._loaded = loaded
            return loaded.authorization


async def connect(
    endpoint: ClusterEndpoint,
    *,
    environ: Mapping[str, str] | None = None,
    service_token_file: str = SERVICE_TOKEN_FILE,
    service_ca_file: str = SERVICE_CA_FILE,
) -> Credentials:
    """Load the endpoint's credentials (in a thread: exec plugins block) once."""

    def reader() -> Loaded:
        return load(
            endpoint, environ=environ, service_token_file=service_token_file,
            service_ca_file=service_ca_file,
        )

    loaded = await asyncio.to_thread(reader)
    return Credentials(endpoint, loaded, reader)
