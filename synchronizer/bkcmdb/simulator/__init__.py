"""A bk-cmdb that speaks the real HTTP API, backed by the reference model.

`BkCmdbSimulator` serves the kube routes, hosts and business topology, and the
container-server pod API in either dialect (API gateway or direct), with scripted faults and
per-route statistics; `python -m synchronizer.bkcmdb.simulator` runs it standalone.
"""

from .faults import Fault, FaultScript, Stats
from .server import BkCmdbSimulator
from .wire import AuthConfig

__all__ = ["AuthConfig", "BkCmdbSimulator", "Fault", "FaultScript", "Stats"]
