"""The CloudFormation package as `make package` builds it (default stage), once per session."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def packaged_template(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("package") / "pkg"
    env = {k: v for k, v in os.environ.items() if k != "STAGE"}  # the default stage, whatever the shell says
    result = subprocess.run(["bash", "scripts/package.sh"], cwd=ROOT, capture_output=True, text=True,
                            env={**env, "OUT": str(out), "PY": sys.executable}, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr  # includes cfn-lint's findings
    assert (out / "deployment.zip").stat().st_size > 0
    return json.loads((out / "sam.json").read_text())
