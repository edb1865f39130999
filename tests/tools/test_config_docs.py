"""docs/configuration.md is generated from the settings models and must be current.

The page is the reference users read; if a key is added to synchronizer/settings.py
without regenerating it (`python scripts/gen-config-docs.py`), this test fails.
"""

from __future__ import annotations

import subprocess
import sys

from tools_support import ROOT

from synchronizer.settings import Settings

SCRIPT = ROOT / "scripts" / "gen-config-docs.py"
PAGE = ROOT / "docs" / "configuration.md"


def test_page_is_current() -> None:
    result = subprocess.run([sys.executable, str(SCRIPT), "--check"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_every_key_and_env_var_is_documented() -> None:
    text = PAGE.read_text(encoding="utf-8")
    for name, field in Settings.model_fields.items():
        model = next(a for a in (field.annotation, *getattr(field.annotation, "__args__", ()))
                     if hasattr(a, "model_fields"))
        for key, sub in model.model_fields.items():
            if name == "clusters":
                assert f"`clusters[].{key}`" in text
                continue
            nested = getattr(sub.annotation, "model_fields", None)
            for inner in nested or (None,):  # a nested section: each of its keys
                path = f"{name}.{key}" + (f".{inner}" if inner else "")
                env = "__".join(path.split(".")).upper()
                assert f"`{path}`" in text
                assert f"`BKCMDB_{env}`" in text
    assert "`BKCMDB_CLUSTERS`" in text
