"""Secrets by reference, resolved where they are used; a spec turned into an endpoint.

A member assigned a cluster holds its spec (from the assignment) and needs the cluster's
credentials. `SecretResolver` maps a `SecretRef` to the secret through a source-specific
lookup: the local config file's own entry (`static`), an environment variable (`env`), a
file (`file`, e.g. a mounted Secret), and whatever the running registries add (`secret`
for Kubernetes Secrets of SyncCluster resources, `registry` for the BCS token, `topology`
for the admin API's tokens in the CMDB). A reference nobody can resolve is an error for
that cluster only, in one line that names the reference, never a value.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

from synchronizer.kube import ClusterEndpoint

from .spec import ClusterSpec, SecretRef

Lookup = Callable[[str], Awaitable[str]]


class SecretError(LookupError):
    """A secret reference that cannot be resolved; one line naming the reference."""


class SecretResolver:
    """Resolves `SecretRef`s by source (see the module docstring)."""

    def __init__(self, *, static: Mapping[str, str] | None = None,
                 environ: Mapping[str, str] | None = None) -> None:
        self._static = dict(static or {})
        self._environ = environ if environ is not None else os.environ
        self._lookups: dict[str, Lookup] = {
            "static": self._from_static, "env": self._from_env, "file": self._from_file}

    def add(self, source: str, lookup: Lookup) -> None:
        """Resolve references of `source` with `lookup(name)` (a registry's secrets)."""
        self._lookups[source] = lookup

    async def resolve(self, ref: SecretRef) -> str:
        """The secret `ref` points at; `SecretError` when it cannot be had."""
        lookup = self._lookups.get(ref.source)
        if lookup is None:
            raise SecretError(f"secret {ref}: no resolver for source {ref.source!r} here")
        return await lookup(ref.name)

    async def _from_static(self, name: str) -> str:
        try:
            return self._static[name]
        except KeyError:
            raise SecretError(f"secret static:{name}: this instance's config has no token"
                              f" for cluster {name}") from None

    async def _from_env(self, name: str) -> str:
        value = self._environ.get(name)
        if not value:
            raise SecretError(f"secret env:{name}: the variable is not set")
        return value

    async def _from_file(self, name: str) -> str:
        try:
            text = await asyncio.to_thread(Path(name).read_text, encoding="utf-8")
            return text.strip()
        except OSError as exc:
            raise SecretError(f"secret file:{name}: {exc.strerror}") from None


async def endpoint_of(spec: ClusterSpec, secrets: SecretResolver) -> ClusterEndpoint:
    """What the Kubernetes connection needs, with the spec's secrets resolved."""
    token = await secrets.resolve(spec.token) if spec.token is not None else None
    kubeconfig = spec.kubeconfig
    if spec.kubeconfig_ref is not None:
        kubeconfig = await _kubeconfig_file(spec, await secrets.resolve(spec.kubeconfig_ref))
    return ClusterEndpoint(
        id=spec.id, server=spec.server, token=token, ca_file=spec.ca_file,
        insecure=spec.insecure, kubeconfig=kubeconfig, context=spec.context,
    )


async def _kubeconfig_file(spec: ClusterSpec, content: str) -> str:
    """Write a kubeconfig held as a secret to a private file the loaders can read."""
    import tempfile

    directory = Path(tempfile.gettempdir()) / "bkcmdb-synchronizer-kubeconfigs"
    directory.mkdir(mode=0o700, exist_ok=True)
    path = directory / f"{spec.id}.yaml"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(content)
    return str(path)
