"""The bk-cmdb pusher: a second, level-triggered reconciliation driven by durable tasks.

The CMDB tables are the desired state; bk-cmdb is made equal to them, per cluster, through
its HTTP API (DESIGN §8). The parts, one concept each:

- `desired` — `DesiredState`, the tables' rows of a cluster (all, or changed since a
  version); `index` keeps them in memory as wanted values (`mapping`).
- `ledger` — `Ledger`, what the product made in bk-cmdb: (kind, uid) → bk id, the digest
  of what it pushed, the parents it hangs under.
- `plan` — the difference for `api: kube` (pure); `apply` sends it, batch by batch;
  `repair` is the full reconcile (list bk-cmdb, correct the ledger); `podapi` is the whole
  push for `api: container`.
- `pusher` — `Pusher.push(target, mode) -> PushReport` (`report`).
- `tasks` — `TaskQueue`, durable tasks claimed by moving `next_start` (the MWS pattern);
  `runner` — `TaskRunner`, the loop that takes due tasks and runs pushes, and
  `PushStatusBoard`, what it tells metrics and `/status`.
"""

from .desired import DesiredState, MemoryDesiredState, Table
from .ledger import Ledger, LedgerEntry, MemoryLedger, ObjectKind
from .pusher import ClusterTarget, Pusher
from .report import DeadLetter, Pending, PushError, PushMode, PushReport, Reason
from .runner import RunnerSettings, TaskRunner
from .status import ClusterPushStatus, PushObserver, PushStatusBoard
from .tasks import PUSH_JOB, MemoryTaskQueue, Task, TaskBoard, TaskQueue

__all__ = [
    "PUSH_JOB",
    "ClusterPushStatus",
    "ClusterTarget",
    "DeadLetter",
    "DesiredState",
    "Ledger",
    "LedgerEntry",
    "MemoryDesiredState",
    "MemoryLedger",
    "MemoryTaskQueue",
    "ObjectKind",
    "Pending",
    "PushError",
    "PushMode",
    "PushObserver",
    "PushReport",
    "PushStatusBoard",
    "Pusher",
    "Reason",
    "RunnerSettings",
    "Table",
    "Task",
    "TaskBoard",
    "TaskQueue",
    "TaskRunner",
]
