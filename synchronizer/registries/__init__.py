"""Where clusters come from: registries yielding cluster specs, merged for the master.

Role: tell the master which clusters exist and how to reach them (`ClusterSpec`, secrets by
reference only); keep each registry's last good answer; report conflicts, held clusters
and health. Inputs: the config file (`static`), SyncCluster resources in the home cluster
(`crd`, with the kopf operator in `crd_operator` and the status in `crd_status`), the BCS
cluster manager (`bcs`) and the admin API's topologies (`topology`, stored in `tables`).
Next stage: coordination assigns the merged specs to members; a member resolves a spec's
secrets (`SecretResolver`) and connects (`endpoint_of`). `removal` deals with clusters that
left every registry; `setup` puts it all together for one instance.
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
