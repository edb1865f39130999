"""`check-config`: validate a config file and, with `--connect`, reach what it names
(the CMDB, every static cluster, and each configured registry).

Why a command of its own: `run` treats an unreachable CMDB or cluster as transient (it
retries forever, by design), so a typo in a host name shows up only as warnings in a log.
An operator about to roll out a new file wants the opposite: fail now, in one line that
names the key, before the file reaches production. Exit codes: 0 valid (and reachable),
2 invalid or unreachable. Every problem is one line on stderr; the DSN's password is
never printed, even inside a driver's error message.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from urllib.parse import unquote

from reconciler import ReconcilerError
from synchronizer.settings import ConfigError, Settings, load_settings, redact_dsn

PROG = "bkcmdb-synchronizer"
CMDB_TIMEOUT = 20.0
"""Seconds allowed to open the CMDB and ping it (the drivers' own bounds are longer)."""
PROBE_TIMEOUT = 10.0
"""Seconds allowed to each cluster's probe (one request for one Pod)."""
PROBE_CONCURRENCY = 16
"""Clusters probed at once: hundreds of clusters should not open hundreds of sockets."""


def _fail(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr)


def first_line(exc: BaseException) -> str:
    """One line describing `exc`: its message's first line, else its type."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def scrub(message: str, dsn: str) -> str:
    """Remove the DSN's password (and the raw DSN) from a message, whoever wrote it."""
    if dsn in message:
        message = message.replace(dsn, redact_dsn(dsn))
    _, sep, rest = dsn.partition("://")
    userinfo = rest.rpartition("@")[0] if sep else ""
    password = unquote(userinfo.partition(":")[2]) if ":" in userinfo else ""
    for secret in {password, userinfo.partition(":")[2]} - {""}:
        message = message.replace(secret, "***")
    return message


def sqlite_missing(dsn: str) -> tuple[bool, str | None]:
    """(file missing, why it could not be created) for an SQLite DSN; (False, None) else."""
    from synchronizer.cmdb.dsn import parse_sqlite

    if not dsn.startswith("sqlite:"):
        return False, None
    path = Path(parse_sqlite(dsn))
    if path.exists():
        return False, None
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        return True, f"{parent} is not a directory"
    if not os.access(parent, os.W_OK | os.X_OK):
        return True, f"directory {parent} is not writable"
    return True, None


async def check_cmdb(dsn: str) -> str | None:
    """Open the CMDB and ping it; return a one-line problem (password-free) or None.

    A missing SQLite file is not opened (that would create it and its tables: a check
    should leave no trace); it only has to be creatable, as `run` will create it.
    """
    from synchronizer.cmdb import open_store

    shown = redact_dsn(dsn)
    try:
        missing, problem = sqlite_missing(dsn)
        if missing:
            return None if problem is None else f"cannot create {shown}: {problem}"
        async with asyncio.timeout(CMDB_TIMEOUT):
            store = await open_store(dsn, migrate=False)
            try:
                await store.ping()
            finally:
                await store.close()
    except TimeoutError:
        return f"cannot reach {shown}: no answer within {CMDB_TIMEOUT:g} s"
    except (ReconcilerError, ValueError, OSError) as exc:
        return scrub(f"cannot reach {shown}: {first_line(exc)}", dsn)
    except Exception as exc:  # a driver's own exception type: still one line, no secret
        return scrub(f"cannot reach {shown}: {type(exc).__name__}: {first_line(exc)}", dsn)
    return None


async def probe_clusters(settings: Settings) -> list[str]:
    """Probe every configured cluster; return one line per unreachable cluster, in order."""
    from synchronizer.kube import probe
    from synchronizer.registries import SecretResolver, endpoint_of
    from synchronizer.registries.static import spec_of, static_tokens

    gate = asyncio.Semaphore(PROBE_CONCURRENCY)
    secrets = SecretResolver(static=static_tokens(settings.clusters))

    async def one(index: int) -> str | None:
        spec = settings.clusters[index]
        async with gate:
            try:
                async with asyncio.timeout(PROBE_TIMEOUT + 5):
                    endpoint = await endpoint_of(spec_of(spec), secrets)
                    await probe(endpoint, request_timeout=PROBE_TIMEOUT)
            except TimeoutError:
                detail = f"no answer within {PROBE_TIMEOUT + 5:g} s"
            except Exception as exc:  # every failure is the user's to read, in one line
                detail = first_line(exc).removeprefix(f"cluster {spec.id}: ")
            else:
                return None
        return f"clusters.{index} ({spec.id}): {detail}"

    results = await asyncio.gather(*(one(i) for i in range(len(settings.clusters))))
    return [line for line in results if line is not None]


async def check_bkcmdb(settings: Settings) -> str | None:
    """Reach the BlueKing CMDB, if configured, with its credentials (one line, or None)."""
    if settings.bkcmdb is None:
        return None
    from synchronizer.bkcmdb_config import probe

    biz_id = settings.clusters[0].biz_id if settings.clusters else 0
    try:
        async with asyncio.timeout(PROBE_TIMEOUT * 3):
            return await probe(settings.bkcmdb, biz_id, request_timeout=PROBE_TIMEOUT)
    except TimeoutError:
        return f"no answer from {settings.bkcmdb.url} within {PROBE_TIMEOUT * 3:g} s"


def summary(settings: Settings) -> str:
    """What the file configures, in a few words."""
    mode = ("standalone" if settings.zookeeper is None
            else f"zookeeper {settings.zookeeper.hosts}{settings.zookeeper.root}")
    n = len(settings.clusters)
    bk = "" if settings.bkcmdb is None else (
        f", bk-cmdb {settings.bkcmdb.url} (api {settings.bkcmdb.api},"
        f" auth {settings.bkcmdb.auth})")
    return (f"{n} cluster{'s' if n != 1 else ''}, "
            f"cmdb {redact_dsn(settings.cmdb.dsn.get_secret_value())}, {mode}{bk}")


async def check_config(path: str | Path, *, connect: bool) -> int:
    """Validate `path`; with `connect` also reach the CMDB and every cluster. Exit code."""
    try:
        settings = load_settings(path)
    except ConfigError as exc:
        _fail(f"config: {exc}")
        return 2
    if not connect:
        print(f"{PROG}: {path}: valid: {summary(settings)}")
        return 0
    from synchronizer.registries.check import reach_registries

    cmdb_problem, cluster_problems, registry_problems, bk_problem = await asyncio.gather(
        check_cmdb(settings.cmdb.dsn.get_secret_value()), probe_clusters(settings),
        reach_registries(settings), check_bkcmdb(settings))
    problems = ([f"cmdb.dsn: {cmdb_problem}"] if cmdb_problem else []) + cluster_problems \
        + registry_problems
    problems += [f"bkcmdb: {bk_problem}"] if bk_problem else []
    for problem in problems:
        _fail(problem)
    if problems:
        return 2
    print(f"{PROG}: {path}: valid and reachable: {summary(settings)}")
    return 0
