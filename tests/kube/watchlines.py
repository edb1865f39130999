"""Watch lines as an API server writes them, for the tests of the watch's layers."""

from __future__ import annotations

import random

import orjson

from synchronizer.simulator import make_pod

RNG = random.Random(5)


def added(name: str, version: int) -> bytes:
    """An ADDED line of a Pod `ns/<name>` (uid `uid-<name>`) at `version`."""
    pod = make_pod("ns", name, rng=RNG)
    pod["metadata"].update(resourceVersion=str(version), uid=f"uid-{name}")
    return orjson.dumps({"type": "ADDED", "object": pod}) + b"\n"


def bookmark(version: int) -> bytes:
    """A BOOKMARK line at `version`."""
    return orjson.dumps({"type": "BOOKMARK", "object": {
        "kind": "Pod", "metadata": {"resourceVersion": str(version)}}}) + b"\n"
