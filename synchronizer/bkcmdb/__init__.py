"""The BlueKing CMDB (bk-cmdb) side: a typed HTTP client, a reference model, a simulator.

- `BkCmdbClient` (`client`) talks to one bk-cmdb through its public HTTP API, via the API
  gateway or directly, paced, retried, chunked to bk-cmdb's limits and paged by 500;
  `kube` (the 3.12+ container model), `container` (the original pod API) and `topology`
  (hosts by IP, modules by name) are its parts. Errors (`errors`) say what to do:
  retry (`TransientError`), dead-letter (`PermanentError`), or adopt (`DuplicateError`).
- `BkCmdbModel` (`model`) is bk-cmdb's semantics in memory: the oracle of the tests and the
  state of `simulator.BkCmdbSimulator`, which serves it over HTTP.

docs/bkcmdb-api.md records the API and the sources every rule was checked against.
"""

from .client import BkCmdbClient
from .container import NoDefaultModule
from .errors import (
    AmbiguousWriteError,
    AuthError,
    BkCmdbError,
    DuplicateError,
    PermanentError,
    RateLimitedError,
    RejectedError,
    ServerError,
    TransientError,
    UnreachableError,
)
from .model import BkCmdbModel
from .settings import BkCmdbSettings
from .transport import RequestObserver
from .types import (
    BizTopology,
    ClusterSpec,
    ContainerPod,
    ContainerSpec,
    Host,
    KubeCluster,
    KubeNamespace,
    KubeNode,
    KubePod,
    KubeWorkload,
    NamespaceSpec,
    NodeSpec,
    PodSpec,
    WorkloadSpec,
)

__all__ = [
    "AmbiguousWriteError",
    "AuthError",
    "BizTopology",
    "BkCmdbClient",
    "BkCmdbError",
    "BkCmdbModel",
    "BkCmdbSettings",
    "ClusterSpec",
    "ContainerPod",
    "ContainerSpec",
    "DuplicateError",
    "Host",
    "KubeCluster",
    "KubeNamespace",
    "KubeNode",
    "KubePod",
    "KubeWorkload",
    "NamespaceSpec",
    "NoDefaultModule",
    "NodeSpec",
    "PermanentError",
    "PodSpec",
    "RateLimitedError",
    "RejectedError",
    "RequestObserver",
    "ServerError",
    "TransientError",
    "UnreachableError",
    "WorkloadSpec",
]
