"""Clusters onto members: a consistent-hash ring with virtual nodes (loads optionally capped).

Pure: `assign(clusters, members)` -> {cluster: member}. Input order does not matter and
the result is the same in every process (the ring hashes with md5 through uhashring,
never Python's salted `hash()`), so any master computes the same assignment.

Properties (tested in tests/coordination/test_coord_hashring.py):
- **Minimal movement, strictly.** Each member owns `vnodes` points on the ring; a cluster
  goes to the first member clockwise from its own point. When a member joins, only the
  clusters it takes move (about 1/n); when one leaves, only its own clusters move. Every
  moved cluster costs a full sync of that cluster, so this is the property we keep.
- **Balance, statistically.** A plain ring is balanced on average; the spread comes from
  the ring (160 vnodes: a member's arc is within ~±8 %) and from the clusters' own hashes
  (binomial noise, which dominates with few clusters per member). Measured on 1,000
  clusters over 2 to 16 members: max/mean <= 1.32, min/mean >= 0.7. With 12 clusters on
  3 members expect anything from 4/4/4 to 7/3/2.
- **Optional hard bound.** `load_factor=f` caps every member at `ceil(f * mean)`
  (consistent hashing with bounded loads, Mirrokni, Thorup and Zadimoghaddam 2018): a
  cluster whose ring owner is full goes on clockwise to the next member with room,
  clusters placed in ring order so the result stays deterministic. The guarantee is
  hard (total capacity >= clusters; the walk visits every member), the price is
  cascades: a leave or join also moves some other clusters (measured with f=1.25: +7 %
  moves at 100 clusters, +26 % at 12). Off by default for that reason.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from uhashring import HashRing

DEFAULT_VNODES = 160
"""Points per member on the ring (uhashring's default): more points, smoother shares."""

DEFAULT_LOAD_FACTOR: float | None = None
"""Cap on a member's load relative to the mean (e.g. 1.25); None: a plain ring."""


def assign(
    clusters: Iterable[str],
    members: Iterable[str],
    *,
    vnodes: int = DEFAULT_VNODES,
    load_factor: float | None = DEFAULT_LOAD_FACTOR,
) -> dict[str, str]:
    """Map every cluster to one member; empty when there are no members."""
    member_list = sorted(set(members))
    cluster_list = sorted(set(clusters))
    if not member_list or not cluster_list:
        return {}
    if load_factor is not None and load_factor < 1:
        raise ValueError("load_factor must be at least 1 (or None for a plain ring)")
    ring = HashRing(nodes=member_list, vnodes=vnodes)
    if load_factor is None:
        return {c: str(ring.get_node(c)) for c in cluster_list}

    cap = math.ceil(load_factor * len(cluster_list) / len(member_list))
    load = dict.fromkeys(member_list, 0)
    out: dict[str, str] = {}
    # Place clusters in ring order so that which cluster is pushed on by the cap does not
    # depend on how the caller ordered its input.
    for cluster in sorted(cluster_list, key=lambda c: (ring.get_key(c), c)):
        for member in ring.iterate_nodes(cluster):
            if load[member] < cap:
                load[member] += 1
                out[cluster] = member
                break
    return out


def moved(before: dict[str, str], after: dict[str, str]) -> int:
    """How many clusters present in both assignments changed owner."""
    return sum(1 for c, owner in after.items() if c in before and before[c] != owner)
