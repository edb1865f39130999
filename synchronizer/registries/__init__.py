"""Where clusters come from: registries yielding cluster specs, merged for the master.

Role: tell the master which clusters exist and how to reach them (`ClusterSpec`, secrets by
reference only); keep each registry's last good answer; report conflicts and health.
Inputs: the config file (static), and in later modules SyncCluster resources, the BCS
cluster manager and the admin API's topologies. Next stage: coordination assigns the
merged specs to members; a member resolves a spec's secrets (`SecretResolver`) and
connects (`endpoint_of`).
"""

from .api import Registry, RegistryHealth, RegistryPull, StaticRegistry
from .resolve import SecretError, SecretResolver, endpoint_of
from .spec import PRECEDENCE, ClusterSpec, Origin, SecretRef

__all__ = [
    "PRECEDENCE",
    "ClusterSpec",
    "Origin",
    "Registry",
    "RegistryHealth",
    "RegistryPull",
    "SecretError",
    "SecretRef",
    "SecretResolver",
    "StaticRegistry",
    "endpoint_of",
]
