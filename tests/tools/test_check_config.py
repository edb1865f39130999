"""`check-config` as a user runs it: a subprocess, its exit code, one line on stderr.

Every bad input must end in exit 2 and one line naming the key and the problem, with no
traceback; `--connect` must reach the real CMDB and a real (simulated) API server, and
say which one it could not reach without ever printing the DSN's password.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from tools_support import assert_one_line_error, cli, populated, write_config

from synchronizer.simulator import Simulator

GOOD = """\
cmdb:
  dsn: sqlite:///{db}
clusters:
  - id: cluster-a
    biz_id: 2
    server: http://127.0.0.1:18080
"""

BAD = {
    "unknown key": ("instance:\n  prot: 8888\n", "instance.prot: unknown key"),
    "wrong type": ("clusters:\n  - id: a\n    biz_id: two\n    server: http://h\n",
                   "clusters.0.biz_id"),
    "missing id": ("clusters:\n  - server: http://h\n",
                   "clusters.0.id: required key is missing"),
    "no way in": ("clusters:\n  - id: a\n    biz_id: 1\n",
                  "give exactly one of server, kubeconfig"),
    "bad yaml": ("clusters: [\n  - id: a\n", "is not valid YAML"),
    "not a mapping": ("- just\n- a list\n", "must be a mapping"),
    "bad port": ("instance:\n  port: 70000\n", "instance.port"),
    "bad dsn scheme": ("cmdb:\n  dsn: postgres://x/y\n", "cmdb.dsn"),
    "unencoded # in a password": ("cmdb:\n  dsn: mysql://root:s3cr#et@db:3306/x\n",
                                  "cmdb.dsn: the user or password of the mysql DSN holds"
                                  " an unencoded '#': write it as %23"),
    "unencoded / in a password": ("cmdb:\n  dsn: mysql://root:s3cr/et?@db:3306/x\n",
                                  "cmdb.dsn"),
    "zookeeper port": ('zookeeper:\n  hosts: "zk1:2181,zk2:notaport"\n',
                       "zookeeper.hosts: 'zk2:notaport' has an invalid port"),
}


async def test_bad_files(tmp_path: Path) -> None:
    """Every case runs at once (each is a Python start-up); each must fail on its own."""
    paths = {}
    for n, (case, (text, _)) in enumerate(sorted(BAD.items())):
        paths[case] = tmp_path / f"config-{n}.yaml"
        paths[case].write_text(text)
    results = await asyncio.gather(*(cli("check-config", "--config", str(paths[case]))
                                     for case in sorted(BAD)))
    for case, result in zip(sorted(BAD), results, strict=True):
        try:
            assert_one_line_error(result, "config: ", BAD[case][1])
            assert "s3cr" not in result.out + result.err  # a password is never echoed
        except AssertionError as exc:
            raise AssertionError(f"case {case!r}: {exc}") from None


async def test_unreadable_file(tmp_path: Path) -> None:
    missing = await cli("check-config", "--config", str(tmp_path / "absent.yaml"))
    assert_one_line_error(missing, "cannot read config file", "absent.yaml")
    directory = await cli("check-config", "--config", str(tmp_path))
    assert_one_line_error(directory, "cannot read config file")


async def test_valid_file(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(GOOD.format(db=tmp_path / "cmdb.db"))
    result = await cli("check-config", "--config", str(path))
    assert result.code == 0, result
    assert "valid" in result.out and "1 cluster" in result.out
    assert result.err == ""


async def test_connect_reaches_everything(sim: Simulator, tmp_path: Path,
                                          mysql_dsn: str) -> None:
    await populated(sim, "a", 3)
    await populated(sim, "b", 3)
    config = write_config(tmp_path / "c.yaml", sim, mysql_dsn, ["a", "b"])
    result = await cli("check-config", "--config", str(config), "--connect")
    assert result.code == 0, result
    assert "reachable" in result.out and "2 clusters" in result.out
    # A new SQLite file is checked for being creatable, not created by a check.
    sqlite = write_config(tmp_path / "s.yaml", sim, f"sqlite:///{tmp_path}/new/cmdb.db", ["a"])
    result = await cli("check-config", "--config", str(sqlite), "--connect")
    assert result.code == 0, result
    assert not (tmp_path / "new").exists()


async def test_connect_unreachable_cmdb(sim: Simulator, tmp_path: Path) -> None:
    await populated(sim, "a", 1)
    secret = "pa55-w0rd"
    config = write_config(tmp_path / "c.yaml", sim, f"mysql://sync:{secret}@127.0.0.1:1/cmdb",
                          ["a"])
    result = await cli("check-config", "--config", str(config), "--connect")
    assert_one_line_error(result, "cmdb.dsn", "127.0.0.1:1")
    assert secret not in result.err + result.out


async def test_connect_unreachable_server(sim: Simulator, tmp_path: Path,
                                          sqlite_dsn: str) -> None:
    await populated(sim, "a", 1)
    config = tmp_path / "c.yaml"
    config.write_text(
        f"cmdb:\n  dsn: {sqlite_dsn}\nclusters:\n"
        f"  - id: a\n    server: {sim.url_for('a')}\n"
        "  - id: gone\n    server: http://127.0.0.1:1\n")
    result = await cli("check-config", "--config", str(config), "--connect")
    assert_one_line_error(result, "clusters.1 (gone)", "http://127.0.0.1:1")


async def test_connect_not_an_api_server(sim: Simulator, tmp_path: Path,
                                         sqlite_dsn: str) -> None:
    # A server that answers HTTP but is no Kubernetes API: the simulator's unknown cluster.
    config = write_config(tmp_path / "c.yaml", None, sqlite_dsn, ["x"],
                          server=f"{sim.base_url}/clusters/nobody")
    result = await cli("check-config", "--config", str(config), "--connect")
    assert_one_line_error(result, "clusters.0 (x)", "404")
