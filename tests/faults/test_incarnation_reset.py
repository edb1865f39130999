"""TEST-MATRIX row 6: a cluster is rebuilt or its etcd restored from a backup while the
instance runs: its resourceVersions restart far below the stored ones, its history is
gone, and the kube-system namespace gets a new uid (a new incarnation).

What must hold: E, an alert (an error line naming the cluster, `version_resets_total`
for it and only it), then a fenced reset of that cluster's rows and C(T): the table
equals the truth, including changes the new incarnation makes afterwards. Nothing is
refused as "stale" for good (the defect this row guards against: every new version is
below a stored one, so the merge rule would ignore the cluster forever).

The rebuild is the simulator's own (`/_sim/.../reset_incarnation`): objects kept,
re-stamped with revisions counting up from 1, streams dropped; a watch resumed from the
old version is answered "Too large resource version" (504), as a real API server does.
"""

from __future__ import annotations

from collections.abc import Callable

from faults_support import CLUSTERS, total
from scaleout_oracles import converge, now
from scaleout_support import Fleet, SimProcess


async def test_row06_versions_going_backwards_alert_then_reset_and_converge(
    cmdb: str, fleets: Callable[..., Fleet], sim: SimProcess,
) -> None:
    fleet = fleets(cmdb)
    inst = await fleet.add(0)
    await fleet.settled()
    x, others = CLUSTERS[1], [CLUSTERS[0], CLUSTERS[2]]
    # History the restored etcd will not have: the stored versions climb well above the
    # number of objects (which is where the new incarnation's revisions end up).
    await sim.churn_all([x], events=300, rate=None, seed=6)
    await sim.wait_churn([x])
    await converge(sim, cmdb, CLUSTERS)
    before = (await sim.admin("GET", x))["resourceVersion"]
    pid, mark = inst.pid, len(inst.lines)

    reset = now()
    await sim.admin("POST", x, "reset_incarnation", {"start_rv": 1})
    after = (await sim.admin("GET", x))["resourceVersion"]
    assert after < before, (after, before)
    # The new incarnation lives on: changes after the reset must reach the table too.
    await sim.churn_all([x], events=40, rate=None, seed=7)
    await sim.wait_churn([x])
    took = await converge(sim, cmdb, CLUSTERS)

    alerts = inst.find("versions went backwards", mark)
    assert alerts and all(f"cluster {x}" in line for _, _, line in alerts), inst.tail()
    samples = await inst.metrics()
    assert total(samples, "version_resets_total", cluster=x) >= 1
    for cluster in others:
        assert total(samples, "version_resets_total", cluster=cluster) == 0
    assert inst.alive and inst.pid == pid
    print(f"row 6: {x} went from version {before} to {after}; alerted, reset and converged"
          f" {took:.1f}s after the convergence check began ({now() - reset:.1f}s after the"
          f" reset)")
