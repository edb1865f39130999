"""The static registry: the `clusters:` list of the config file, as cluster specs.

A token written in the config file stays in this instance's settings; the spec carries
`SecretRef("static", <cluster id>)`, which every member resolves from its own copy of the
same config (a Deployment's replicas share one ConfigMap and one Secret).
"""

from __future__ import annotations

from collections.abc import Iterable

from synchronizer.settings import ClusterSettings

from .api import StaticRegistry
from .spec import ClusterSpec, Origin, SecretRef


def spec_of(cluster: ClusterSettings) -> ClusterSpec:
    """The spec of one `clusters:` entry."""
    return ClusterSpec(
        id=cluster.id, biz_id=cluster.biz_id, origin=Origin.STATIC, server=cluster.server,
        token=SecretRef("static", cluster.id) if cluster.token is not None else None,
        ca_file=cluster.ca_file, insecure=cluster.insecure_skip_tls_verify,
        kubeconfig=cluster.kubeconfig, context=cluster.context, in_cluster=cluster.in_cluster,
        kinds=tuple(cluster.kinds) if cluster.kinds is not None else None,
        source="config",
    )


def static_registry(clusters: Iterable[ClusterSettings]) -> StaticRegistry:
    """The registry of the config file's clusters."""
    return StaticRegistry({c.id: spec_of(c) for c in clusters})


def static_tokens(clusters: Iterable[ClusterSettings]) -> dict[str, str]:
    """cluster id → token, for the `static` secret source (never leaves this process)."""
    return {c.id: c.token.get_secret_value() for c in clusters if c.token is not None}
