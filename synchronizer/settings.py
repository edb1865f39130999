"""The configuration file: pydantic models, YAML loading, environment overrides.

Validated once at start-up (by `run` and `check-config` alike). Unknown keys are errors
(a typo must not be silently ignored), every key but `clusters[].id` and a way to reach
each cluster has a default, and a problem is reported as one line naming the key:
`config: clusters.0.biz_id: Input should be a valid integer`.

Environment variables override the file: `BKCMDB_` + the key path in upper case joined by
`__`, e.g. `BKCMDB_CMDB__DSN`, `BKCMDB_INSTANCE__PORT`, `BKCMDB_SYNC__SENDERS`; a list or
object takes JSON (`BKCMDB_CLUSTERS='[{"id": "a", "server": "http://..."}]'`). That is how
a Secret supplies the DSN without it ever being written in a ConfigMap. Secrets
(`cmdb.dsn`, `clusters[].token`) are `SecretStr`: they print as `**********`.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from synchronizer.cmdb.dsn import redact as redact_dsn
from synchronizer.cmdb.dsn import validate as validate_dsn

ENV_PREFIX = "BKCMDB_"
KindName = Literal["pods", "nodes", "namespaces", "workloads"]
ALL_KINDS: tuple[str, ...] = ("pods", "nodes", "namespaces", "workloads")
ENV_DELIMITER = "__"
Port = Annotated[int, Field(ge=1, le=65535)]
Seconds = Annotated[float, Field(gt=0)]


class ConfigError(ValueError):
    """An unusable configuration; `str()` is one line naming the key and the problem."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _default_instance_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class InstanceSettings(_Strict):
    """This process: its identity among replicas and where it serves HTTP."""

    id: str = Field(default_factory=_default_instance_id, min_length=1,
                    description="Stable instance id among replicas (default: hostname-pid).")
    address: str = Field("0.0.0.0", description="Bind address of the HTTP API and metrics.")
    port: Port = Field(8888, description="Port of /healthz, /readyz, /status and the page.")
    metric_port: Port = Field(9999, description="Port of /metrics.")
    admin_token: SecretStr | None = Field(
        None, description="Bearer token of the admin API (/v1/topologies); unset: the admin"
        " API is off.")
    event_loop: Literal["uvloop", "asyncio"] = Field(
        "uvloop", description="Event loop of `run`: uvloop (libuv; about half the CPU per"
        " socket read of a fleet's watches) or the standard library's.")


class ZooKeeperSettings(_Strict):
    """Coordination; absent means standalone (this instance owns every cluster)."""

    hosts: str = Field("127.0.0.1:2181", min_length=1,
                       description="ZooKeeper connect string: host:port[,host:port...][/chroot].")
    root: str = Field("/bkcmdb-synchronizer", pattern=r"^/[^\s]*$",
                      description="Root znode of this deployment.")
    session_timeout: Seconds = Field(10.0, description="Session timeout in seconds.")

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, hosts: str) -> str:
        """Catch here what kazoo would only reject inside its connection thread."""
        servers, slash, chroot = hosts.strip().partition("/")
        if slash and (not chroot or chroot.endswith("/") or "//" in chroot):
            raise ValueError(f"chroot /{chroot} is not a valid znode path")
        for server in servers.split(","):
            host, colon, port = server.strip().rpartition(":")
            if not colon:
                host, port = server.strip(), "2181"
            if not host or any(c.isspace() for c in host) or "/" in host:
                raise ValueError(f"{server.strip()!r} is not host:port")
            if not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{server.strip()!r} has an invalid port")
        return hosts.strip()


class CmdbSettings(_Strict):
    """Where the pods table lives."""

    dsn: SecretStr = Field(
        SecretStr("sqlite:///bkcmdb.db"),
        description="mysql://user:pass@host:port/db or sqlite:///path (default: ./bkcmdb.db).",
    )

    @field_validator("dsn")
    @classmethod
    def _parses(cls, dsn: SecretStr) -> SecretStr:
        """Refuse at load time a DSN the store could never open (messages hold no secret)."""
        validate_dsn(dsn.get_secret_value())
        return dsn


class SyncSettings(_Strict):
    """Timing and tuning of the reconcilers."""

    full_sync_interval: Seconds = Field(600.0, description="Seconds between full syncs.")
    cluster_pull_interval: Seconds = Field(
        600.0, description="Seconds between re-reads of the cluster registries.")
    senders: Annotated[int, Field(ge=1, le=256)] = Field(
        8, description="Sender coroutines of the instance's writer (shared by every cluster"
        " and kind), and shards of its queue: an object's events always go through the same"
        " shard, which is in one transaction at a time. Transactions of a backlog run this"
        " many at once.")
    batch_size: Annotated[int, Field(ge=1, le=10_000)] = Field(
        500, description="Most rows written in one transaction.")
    linger: Annotated[float, Field(ge=0)] = Field(
        0.1, description="Most seconds the writer waits for a batch to fill (it writes as"
        " soon as the batch is full). A quiet fleet's events are a few per cluster per second"
        " over many clusters: waiting gathers them, over every cluster and shard, into one"
        " transaction per linger.")
    gate_capacity: Annotated[int, Field(ge=1)] = Field(
        100_000, description="Events one kind of one cluster may park during its full sync"
        " before another is scheduled.")
    memory_budget: Annotated[int, Field(ge=100)] = Field(
        200_000, description="Records queued plus parked over the whole instance before each"
        " cluster's kind is held to its fair share (budget / kinds running).")
    max_concurrent_full_syncs: Annotated[int, Field(ge=1)] = Field(
        16, description="Full syncs listing and diffing at once on this instance (each holds"
        " its list page and stored index; its writes are then committed outside the limit)."
        " A small cluster's full sync mostly waits on the API server and the CMDB, so a"
        " fleet's first syncs overlap well.")
    page_size: Annotated[int, Field(ge=1, le=10_000)] = Field(
        500, description="Pods per list page.")
    watch_timeout: Seconds = Field(300.0, description="timeoutSeconds asked of each watch.")
    watch_inactivity: Seconds = Field(
        90.0, description="Seconds without an event or bookmark before a watch is reopened.")
    decode_linger: Annotated[float, Field(ge=0, le=1)] = Field(
        0.02, description="Most seconds a watch's change waits to be decoded together with"
        " other watches' (0: each as it arrives). A quiet fleet's changes come one at a time"
        " over many watches; decoding them in one pass keeps the decoder warm in the CPU's"
        " caches. A change is observed when decoded: `event_to_row_seconds` starts after"
        " this wait.")
    lease_ttl: Seconds = Field(30.0, description="Seconds a cluster lease lives unrenewed.")
    backoff_max: Seconds = Field(30.0, description="Cap on retry delays, in seconds.")
    kinds: list[KindName] = Field(
        default_factory=lambda: list(ALL_KINDS),
        description="Kinds synced from every cluster (a cluster's `kinds` overrides it).")
    tombstone_retention: Seconds | None = Field(
        None, description="Seconds after which Deleted rows are removed (default: never; the"
        " contract keeps every row).")
    on_cluster_removed: Literal["keep", "delete"] = Field(
        "keep", description="What happens to the rows of a cluster that left every registry:"
        " keep them as they are, or soft-delete them (state Deleted at their own version).")

    @field_validator("kinds")
    @classmethod
    def _some_kinds(cls, kinds: list[str]) -> list[str]:
        if not kinds:
            raise ValueError("name at least one kind")
        return list(dict.fromkeys(kinds))


class ClusterSettings(_Strict):
    """One cluster of the static registry."""

    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
                    description="Cluster id (required).")
    biz_id: Annotated[int, Field(ge=0)] = Field(0, description="Business id of its pods.")
    server: str | None = Field(None, description="API server URL.")
    token: SecretStr | None = Field(None, description="Bearer token for `server`.")
    ca_file: str | None = Field(None, description="CA bundle for `server`.")
    insecure_skip_tls_verify: bool = Field(False, description="Skip TLS verification.")
    kubeconfig: str | None = Field(None, description="Kubeconfig path (instead of `server`).")
    context: str | None = Field(None, description="Kubeconfig context (default: current).")
    in_cluster: bool = Field(False, description="Use the pod's service account instead.")
    kinds: list[KindName] | None = Field(
        None, description="Kinds synced from this cluster (default: `sync.kinds`).")

    @model_validator(mode="after")
    def _one_way_in(self) -> ClusterSettings:
        ways = [bool(self.server), bool(self.kubeconfig), self.in_cluster]
        if sum(ways) != 1:
            raise ValueError("give exactly one of server, kubeconfig or in_cluster: true")
        if self.server and urlsplit(self.server).scheme not in ("http", "https"):
            raise ValueError(f"server {self.server!r} is not an http(s) URL")
        return self


class CrdRegistrySettings(_Strict):
    """SyncCluster custom resources in the home cluster, watched with kopf by the master."""

    enabled: bool = Field(False, description="Register the clusters of SyncCluster resources.")
    namespace: str = Field("", description="Namespace of the SyncClusters (\"\": every namespace).")
    server: str = Field("", description="API server URL of the home cluster (default:"
                        " in-cluster, or `kubeconfig`).")
    kubeconfig: str = Field("", description="Kubeconfig of the home cluster (instead of"
                            " `server`).")
    context: str = Field("", description="Kubeconfig context (default: current).")
    token: SecretStr | None = Field(None, description="Bearer token for `server`.")
    ca_file: str = Field("", description="CA bundle for `server`.")
    insecure_skip_tls_verify: bool = Field(False, description="Skip TLS verification.")

    @model_validator(mode="after")
    def _one_home(self) -> CrdRegistrySettings:
        if self.server and self.kubeconfig:
            raise ValueError("give server or kubeconfig for the home cluster, not both")
        if self.server and urlsplit(self.server).scheme not in ("http", "https"):
            raise ValueError(f"server {self.server!r} is not an http(s) URL")
        return self


class HttpRegistrySettings(_Strict):
    """The BCS cluster manager, behind the BCS API gateway."""

    url: str = Field("", description="Gateway base URL (\"\": no HTTP registry).")
    token: SecretStr = Field(SecretStr(""), description="Gateway bearer token (also used"
                             " for each cluster through the gateway's Kubernetes proxy).")
    interval: Seconds | None = Field(
        None, description="Seconds between reads (default: `sync.cluster_pull_interval`).")
    ca_file: str = Field("", description="CA bundle for the gateway.")
    insecure_skip_tls_verify: bool = Field(False, description="Skip TLS verification.")

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if url and urlsplit(url).scheme not in ("http", "https"):
            raise ValueError(f"{url!r} is not an http(s) URL")
        return url.rstrip("/")


class RegistriesSettings(_Strict):
    """Cluster registries beyond the static `clusters:` list."""

    crd: CrdRegistrySettings = Field(default_factory=CrdRegistrySettings)
    http: HttpRegistrySettings = Field(default_factory=HttpRegistrySettings)


class Settings(BaseSettings):
    """The whole configuration file."""

    model_config = SettingsConfigDict(
        extra="forbid", frozen=True, env_prefix=ENV_PREFIX, env_nested_delimiter=ENV_DELIMITER,
        nested_model_default_partial_update=True,
    )

    instance: InstanceSettings = Field(default_factory=InstanceSettings)
    zookeeper: ZooKeeperSettings | None = None
    cmdb: CmdbSettings = Field(default_factory=CmdbSettings)
    sync: SyncSettings = Field(default_factory=SyncSettings)
    clusters: list[ClusterSettings] = Field(default_factory=list)
    registries: RegistriesSettings = Field(default_factory=RegistriesSettings)
    bkcmdb: BkCmdbConfig | None = None

    @model_validator(mode="after")
    def _unique_ids(self) -> Settings:
        seen: set[str] = set()
        for n, cluster in enumerate(self.clusters):
            if cluster.id in seen:
                raise ValueError(f"clusters.{n}.id: duplicate cluster id {cluster.id!r}")
            seen.add(cluster.id)
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Environment first, then the file (passed as init values), then defaults."""
        return (env_settings, init_settings)


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    loc = ".".join(str(p) for p in first["loc"] if p not in ("function-after",))
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "unknown key"
    elif first["type"] == "missing":
        message = "required key is missing"
    if message.startswith("clusters.") and ":" in message:
        return message  # the validator named the key itself
    return f"{loc}: {message}" if loc else message


def load_settings(path: str | Path | None, environ: dict[str, str] | None = None) -> Settings:
    """Read, merge and validate the configuration; raise `ConfigError` (one line)."""
    data: Any = {}
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            raise ConfigError(f"config file {path} is not valid YAML{where}") from None
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(f"config file {path} must be a mapping of keys")
    saved = None
    if environ is not None:
        saved = dict(os.environ)
        os.environ.clear()
        os.environ.update(environ)
    try:
        return Settings(**data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None
    except (ValueError, TypeError) as exc:  # e.g. a bad JSON value in an env override
        raise ConfigError(str(exc).splitlines()[0]) from None
    finally:
        if saved is not None:
            os.environ.clear()
            os.environ.update(saved)


__all__ = ["ALL_KINDS", "BkCmdbConfig", "ClusterSettings", "ConfigError", "Settings",
           "load_settings", "redact_dsn"]


class BkCmdbConfig(_Strict):
    """The BlueKing CMDB (bk-cmdb), kept equal to the CMDB tables through its HTTP API."""

    url: str = Field(min_length=1, description="Base URL; /api/v3/... is appended (the API"
                     " gateway stage URL, or bk-cmdb's apiserver for `auth: direct`).")
    api: Literal["kube", "container"] = Field(
        "kube", description="kube: the 3.12+ container model (cluster, namespace, node,"
        " workload, pod); container: the container-server pod API, pods placed by set/module.")
    auth: Literal["gateway", "direct"] = Field(
        "gateway", description="gateway: X-Bkapi-Authorization; direct: BK_User and"
        " HTTP_BLUEKING_SUPPLIER_ID headers.")
    app_code: str = Field("", description="Gateway app code (needed by `auth: gateway`).")
    app_secret: SecretStr = Field(
        SecretStr(""), description="Gateway app secret; give it by environment"
        " (BKCMDB_BKCMDB__APP_SECRET) or `app_secret_file`, never in a ConfigMap.")
    app_secret_file: str | None = Field(
        None, description="A file holding the app secret (e.g. a mounted Secret), read at"
        " start; instead of `app_secret`.")
    username: str = Field("admin", min_length=1, description="BK_User / bk_username.")
    supplier_account: str = Field("0", description="HTTP_BLUEKING_SUPPLIER_ID.")
    batch_size: Annotated[int, Field(ge=1, le=200)] = Field(
        200, description="Objects per write request (each type's own bk-cmdb limit, e.g."
        " 100 nodes, still caps it).")
    interval: Seconds = Field(600.0, description="Seconds between full reconciles (bk-cmdb"
                              " listed and repaired) of a cluster.")
    rate: Annotated[float, Field(gt=0)] = Field(
        20.0, description="Requests per second to bk-cmdb from this instance (token bucket).")
    burst: Annotated[int, Field(ge=1)] = Field(
        20, description="Requests that may go at once after a quiet spell.")
    timeout: Seconds = Field(30.0, description="Seconds per request.")
    period: Seconds = Field(
        5.0, description="Seconds between pushes of a cluster (changed rows only; a push"
        " with nothing new makes no request).")
    concurrency: Annotated[int, Field(ge=1, le=64)] = Field(
        4, description="Clusters pushed at once by this instance.")
    hold: Seconds = Field(
        300.0, description="Seconds a push task's claim lasts unrenewed: a crashed"
        " instance's push is taken over after this.")

    @field_validator("url")
    @classmethod
    def _http(cls, url: str) -> str:
        if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
            raise ValueError(f"{url!r} is not an http(s) URL")
        return url.rstrip("/")

    @model_validator(mode="after")
    def _credentials(self) -> BkCmdbConfig:
        if self.app_secret.get_secret_value() and self.app_secret_file:
            raise ValueError("give app_secret or app_secret_file, not both")
        if self.auth == "gateway" and not self.app_code:
            raise ValueError("auth gateway needs app_code")
        return self


Settings.model_rebuild()  # `bkcmdb` names a model defined after `Settings`
