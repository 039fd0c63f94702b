"""The docs users look things up in stay true to the code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_component_reference_in_docs_is_current():
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_pipeline_docs.py"), "--check"])
    assert r.returncode == 0, "docs/pipeline.md is stale: run scripts/gen_pipeline_docs.py"


def test_example_configs_validate():
    for cfg in sorted((ROOT / "config").glob("*.toml")):
        r = subprocess.run([sys.executable, "-m", "agentsight", "validate", "--config", str(cfg)],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
