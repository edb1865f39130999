"""TEST-MATRIX row 8: one cluster's credentials are revoked (the API server answers 403 to
every request of that cluster) while the instance runs.

What must hold: a clear error for that cluster only (its /status entry, its metrics, a
log line naming it), the others keep syncing while it is refused, the process neither
dies nor spins (it retries with backoff), and once access is restored the cluster
catches up. The refusal is the simulator's own fault script (`/_sim/.../fail`), answered
with the Status body a real API server sends for a forbidden list or watch.
"""

from __future__ import annotations

from collections.abc import Callable

from faults_support import CLUSTERS, readyz, total
from scaleout_oracles import converge, now, table_vs_truth
from scaleout_support import Fleet, SimProcess, Statuses

from synchronizer.kinds import KINDS

MIN_RETRY_DELAY = 0.1
"""The shortest retry delay the product may choose after a failure (its backoff starts at
0.2 s with full jitter down to half of it). A loop that retried faster would be a tight
loop; the bound below only fails for one, a slow machine can only make fewer requests."""


def entry(docs: Statuses, cluster: str) -> dict:
    """The /status entry of `cluster` (on whichever instance lists it)."""
    for doc in docs.values():
        for c in (doc or {}).get("clusters", []):
            if c["id"] == cluster:
                return dict(c)
    raise AssertionError(f"{cluster} is not listed by any instance")


async def test_row08_access_denied_for_one_cluster_stays_with_that_cluster(
    cmdb: str, fleets: Callable[..., Fleet], sim: SimProcess,
) -> None:
    fleet = fleets(cmdb)
    inst = await fleet.add(0)
    await fleet.settled()
    x, others = CLUSTERS[1], [CLUSTERS[0], CLUSTERS[2]]
    pid, mark = inst.pid, len(inst.lines)

    revoked = now()
    await sim.admin("POST", x, "fail", {"status": 403, "count": None, "on": "any"})
    await sim.admin("POST", x, "drop", {"reset": True})  # its watch reconnects: refused
    await sim.churn_all(CLUSTERS, events=80, rate=None, seed=8)
    await sim.wait_churn(CLUSTERS)

    # E, for X: /status names the refusal; so do a log line and the restart counter
    def refused(docs: Statuses) -> str | None:
        error = entry(docs, x)["last_error"] or ""
        return None if "403" in error else f"{x} last_error: {error!r}"

    docs = await fleet.until(refused, instances=[inst])
    assert "forbidden" in entry(docs, x)["last_error"].lower()
    assert any("403" in line for _, _, line in inst.find(f"cluster {x}", mark)), inst.tail()
    # the others sync on while X is refused, and say nothing is wrong with them
    await converge(sim, cmdb, others)
    assert await table_vs_truth(sim, cmdb, [x]) is not None, "X was never refused"
    docs = await fleet.statuses()
    for cluster in others:  # (docs still has X's refusal: printed at the end)
        assert entry(docs, cluster)["state"] == "watching"
        assert not entry(docs, cluster)["last_error"], entry(docs, cluster)
    samples = await inst.metrics()
    assert total(samples, "watch_restarts_total", cluster=x, reason="error") >= 1
    for cluster in others:
        assert total(samples, "watch_restarts_total", cluster=cluster, reason="error") == 0
    assert (await readyz(inst))[0] == 200  # one cluster's credentials: not the instance's
    # no crash loop and no tight loop: the same process, retrying with backoff
    refusals = (await sim.admin("GET", x))["failures_injected"]
    assert inst.alive and inst.pid == pid
    # each resource of each kind retries its list and its watch, each with its own backoff
    loops = 2 * sum(len(kind.resources) for kind in KINDS.values())
    assert 1 <= refusals <= loops * ((now() - revoked) / MIN_RETRY_DELAY + 1), refusals

    await sim.admin("DELETE", x, "fail")  # credentials fixed
    took = await converge(sim, cmdb, CLUSTERS)
    print(f"row 8: {x} refused {refusals} times in {now() - revoked:.1f}s;"
          f" /status said {entry(docs, x)['last_error']!r}; caught up {took:.1f}s after the fix")
