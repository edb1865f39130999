"""The Kubernetes side: reaching API servers and reading their objects as `reconciler.Source`s.

`connection` turns a cluster's settings (server URL, kubeconfig, in-cluster service
account) into credentials; `client` holds one shared aiohttp session per cluster; `source`
lists one resource through it and watches it (the request in `wire`, parsed by httptools
in the protocol's callback; framing in `lines`, events in `events`, the queue between
socket and engine in `feed`, one stream in `stream`), projecting objects with the kind's
projection from `synchronizer.kinds`, never the kubernetes model classes.
"""

from .client import ClusterClient, probe
from .connection import ClusterEndpoint, Credentials, KubeConfigError, connect
from .errors import Absent, AccessDenied
from .source import KubeSource

__all__ = [
    "Absent",
    "AccessDenied",
    "ClusterClient",
    "ClusterEndpoint",
    "Credentials",
    "KubeConfigError",
    "KubeSource",
    "connect",
    "probe",
]
