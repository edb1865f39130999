"""`check-config` with a `bkcmdb:` section: bad sections are one line naming the key, and
`--connect` reaches a real (simulated) bk-cmdb over HTTP and says whether the credentials
work — without ever printing the app secret, whether it came from the environment or a file.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml
from tools_support import assert_one_line_error, cli, populated

from synchronizer.bkcmdb.simulator import AuthConfig, BkCmdbSimulator
from synchronizer.simulator import Simulator

SECRET = "app-Secret-9c1e-never-print"

BAD = {
    "batch too large": ("bkcmdb:\n  url: http://c\n  auth: direct\n  batch_size: 201\n",
                        "bkcmdb.batch_size"),
    "no url": ("bkcmdb:\n  auth: direct\n", "bkcmdb.url: required key is missing"),
    "not http": ("bkcmdb:\n  url: ftp://c\n  auth: direct\n", "bkcmdb.url"),
    "gateway without app code": ("bkcmdb:\n  url: http://c\n", "auth gateway needs app_code"),
    "unknown api": ("bkcmdb:\n  url: http://c\n  auth: direct\n  api: pods\n", "bkcmdb.api"),
    "typo": ("bkcmdb:\n  url: http://c\n  auth: direct\n  intervall: 5\n",
             "bkcmdb.intervall: unknown key"),
    "secret twice": ("bkcmdb:\n  url: http://c\n  app_code: a\n  app_secret: x\n"
                     "  app_secret_file: /f\n", "app_secret or app_secret_file, not both"),
}


@pytest.fixture
async def bk() -> AsyncIterator[BkCmdbSimulator]:
    sim = BkCmdbSimulator(auth=AuthConfig(mode="gateway", app_code="bcs", app_secret=SECRET))
    sim.model.hosts.add_business(2, "game")
    async with sim:
        yield sim


def _config(path: Path, tmp: Path, bkcmdb: dict[str, object],
            server: str = "http://127.0.0.1:1") -> Path:
    doc = {"cmdb": {"dsn": f"sqlite:///{tmp / 'cmdb.db'}"}, "bkcmdb": bkcmdb,
           "clusters": [{"id": "a", "biz_id": 2, "server": server}]}
    path.write_text(yaml.safe_dump(doc))
    return path


def _bk_lines(err: str) -> list[str]:
    """The stderr lines about the bkcmdb section."""
    return [line for line in err.splitlines() if ": bkcmdb" in line]


async def test_bad_bkcmdb_sections(tmp_path: Path) -> None:
    paths = {}
    for n, (case, (text, _)) in enumerate(sorted(BAD.items())):
        paths[case] = tmp_path / f"config-{n}.yaml"
        paths[case].write_text(text)
    results = await asyncio.gather(*(cli("check-config", "--config", str(paths[case]))
                                     for case in sorted(BAD)))
    for case, result in zip(sorted(BAD), results, strict=True):
        try:
            assert_one_line_error(result, "config: ", BAD[case][1])
        except AssertionError as exc:
            raise AssertionError(f"case {case!r}: {exc}") from None


async def test_valid_section_is_summarised_without_its_secret(tmp_path: Path) -> None:
    config = _config(tmp_path / "c.yaml", tmp_path, {"url": "http://cmdb.example",
                                                      "app_code": "bcs"})
    result = await cli("check-config", "--config", str(config),
                       env_extra={"BKCMDB_BKCMDB__APP_SECRET": SECRET})
    assert result.code == 0, result
    assert "bk-cmdb http://cmdb.example (api kube, auth gateway)" in result.out
    assert SECRET not in result.out + result.err


async def test_connect_with_good_credentials_from_the_environment(
        bk: BkCmdbSimulator, sim: Simulator, tmp_path: Path) -> None:
    await populated(sim, "a", 2)
    config = _config(tmp_path / "c.yaml", tmp_path, {"url": bk.base_url, "app_code": "bcs"},
                     server=sim.url_for("a"))
    result = await cli("check-config", "--config", str(config), "--connect",
                       env_extra={"BKCMDB_BKCMDB__APP_SECRET": SECRET})
    assert result.code == 0, result
    assert "valid and reachable" in result.out and f"bk-cmdb {bk.base_url}" in result.out
    assert sum(bk.stats.requests.values()) >= 1 and bk.stats.rejected_auth == 0
    assert SECRET not in result.out + result.err


async def test_connect_with_good_credentials_from_a_file(
        bk: BkCmdbSimulator, tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET + "\n")
    config = _config(tmp_path / "c.yaml", tmp_path, {
        "url": bk.base_url, "app_code": "bcs", "app_secret_file": str(secret_file)})
    result = await cli("check-config", "--config", str(config), "--connect")
    assert _bk_lines(result.err) == [], result.err
    assert bk.stats.rejected_auth == 0 and sum(bk.stats.requests.values()) >= 1


async def test_connect_with_a_wrong_secret_says_so_in_one_line(
        bk: BkCmdbSimulator, tmp_path: Path) -> None:
    config = _config(tmp_path / "c.yaml", tmp_path, {"url": bk.base_url, "app_code": "bcs"})
    wrong = "wrong-" + SECRET
    result = await cli("check-config", "--config", str(config), "--connect",
                       env_extra={"BKCMDB_BKCMDB__APP_SECRET": wrong})
    assert result.code == 2, result
    lines = _bk_lines(result.err)
    assert len(lines) == 1 and "credentials refused" in lines[0], result.err
    assert bk.stats.rejected_auth >= 1
    assert wrong not in result.out + result.err and SECRET not in result.out + result.err


async def test_connect_to_nothing_and_a_missing_secret_file(tmp_path: Path) -> None:
    config = _config(tmp_path / "c.yaml", tmp_path, {"url": "http://127.0.0.1:1",
                                                      "auth": "direct"})
    result = await cli("check-config", "--config", str(config), "--connect")
    assert result.code == 2
    (line,) = _bk_lines(result.err)
    assert "cannot use http://127.0.0.1:1" in line, line
    config = _config(tmp_path / "d.yaml", tmp_path, {
        "url": "http://127.0.0.1:1", "app_code": "bcs",
        "app_secret_file": str(tmp_path / "absent")})
    result = await cli("check-config", "--config", str(config), "--connect")
    (line,) = _bk_lines(result.err)
    assert "bkcmdb.app_secret_file: cannot read" in line and "absent" in line, line
    assert "Traceback" not in result.err
