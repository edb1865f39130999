"""The layout rules of docs/architecture.md, checked (STYLE A1-A3)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import reconciler

ROOT = Path(__file__).resolve().parents[2]
MAX_LINES = 600


def test_the_engine_imports_no_service_database_coordination_or_kubernetes_code() -> None:
    code = (
        "import sys, reconciler, reconciler.testing\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'synchronizer', 'kazoo',"
        " 'asyncmy', 'aiomysql', 'pymysql', 'aiosqlite', 'sqlite3', 'kubernetes', 'httpx',"
        " 'aiohttp', 'prometheus_client', 'uhashring'})\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == ""


def test_every_module_stays_under_the_size_cap() -> None:
    too_long = []
    for package in ("reconciler", "synchronizer"):
        for path in (ROOT / package).rglob("*.py"):
            lines = len(path.read_text(encoding="utf-8").splitlines())
            if lines > MAX_LINES:
                too_long.append(f"{path.relative_to(ROOT)}: {lines}")
    assert not too_long


def test_the_engine_public_api_is_exported_sorted() -> None:
    names = reconciler.__all__
    assert names == sorted(names, key=lambda n: (not n.isupper(), n))
    for name in names:
        assert hasattr(reconciler, name)
