"""Benchmarks of the synchronizer and of the naive peer they are compared with.

Every measurement runs three kinds of process on this machine, over loopback: the
simulated Kubernetes API server (`bench.simproc`), the MariaDB server, and the
synchronizer side (`bench.ours`, our engine; or `bench.naive_peer`, the naive peer), so the
API server's CPU never shares an event loop with the code under test. The drivers
(`bench.full_sync`, `bench.watch_throughput`, `bench.profile`) start and steer those
processes; `bench.run_all` (`make bench`) runs them all and writes docs/benchmarks.md.
"""
