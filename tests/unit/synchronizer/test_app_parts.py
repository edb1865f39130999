"""A background part of the instance that dies is logged in one line and restarted (issue
"Reliability", defect 6): never a silent death behind a 200 /healthz."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from pydantic import SecretStr

from synchronizer.app import Instance
from synchronizer.settings import CmdbSettings, InstanceSettings, Settings, SyncSettings


def _settings(tmp_path: Path) -> Settings:
    return Settings.model_construct(
        instance=InstanceSettings.model_construct(id="t", address="127.0.0.1", port=0,
                                                  metric_port=0),
        zookeeper=None, clusters=[], sync=SyncSettings(backoff_max=1.0),
        cmdb=CmdbSettings.model_construct(dsn=SecretStr(f"sqlite:///{tmp_path}/c.db")))


async def test_a_dying_part_is_logged_in_one_line_shown_and_restarted(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    instance = Instance(_settings(tmp_path))
    calls: list[int] = []
    second = asyncio.Event()

    async def part() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise ValueError("bad host 'zk:x'\nsecond line of detail")
        second.set()

    with caplog.at_level(logging.ERROR):
        task = asyncio.create_task(instance._supervised("coordination", part))
        async with asyncio.timeout(10):
            await second.wait()
        await task
    assert instance.part_errors["coordination"] == "ValueError: bad host 'zk:x'"
    [record] = [r for r in caplog.records if "coordination failed" in r.getMessage()]
    assert record.getMessage() == ("coordination failed, restarting it: ValueError: bad host"
                                   " 'zk:x'")
    assert record.exc_info is None  # one line, no traceback
    assert len(calls) == 2
