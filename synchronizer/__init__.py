"""bkcmdb-synchronizer: the service that keeps a CMDB true to the Pods of many clusters.

It wires the `reconciler` engine to real parts: the Kubernetes API (`kube`), the CMDB
(`cmdb`: MySQL/MariaDB or SQLite), coordination (standalone or ZooKeeper), the HTTP API
and Prometheus metrics, and the command line.
"""

__version__ = "0.1.0"
