"""The Kubernetes side: reaching API servers and reading their Pods as a `reconciler.Source`.

`connection` turns a cluster's settings (server URL, kubeconfig, in-cluster service
account) into an httpx client with refreshing credentials; `source` lists and watches Pods
over it with orjson and `synchronizer.projection`, never the kubernetes model classes.
"""

from .connection import ClusterEndpoint, Credentials, KubeConfigError, client_kwargs, connect
from .errors import AccessDenied, probe
from .source import KubePodSource

__all__ = [
    "AccessDenied",
    "ClusterEndpoint",
    "Credentials",
    "KubeConfigError",
    "KubePodSource",
    "client_kwargs",
    "connect",
    "probe",
]
