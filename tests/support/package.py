"""The CloudFormation package as `make package` builds it (default stage), once per test run:
with parallel pytest-xdist workers, the first to need it builds it under a lock and the
others read the same build."""
from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def packaged_template(tmp_path_factory) -> dict:
    # A worker's base directory is <run>/popen-gwN: the run's directory is shared by its workers.
    run = tmp_path_factory.getbasetemp()
    shared = run.parent if os.environ.get("PYTEST_XDIST_WORKER") else run
    out = shared / "package" / "pkg"
    with open(shared / "package.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (out / "sam.json").exists():
            out.parent.mkdir(exist_ok=True)
            env = {k: v for k, v in os.environ.items() if k != "STAGE"}  # the default stage, whatever the shell says
            result = subprocess.run(["bash", "scripts/package.sh"], cwd=ROOT, capture_output=True, text=True,
                                    env={**env, "OUT": str(out), "PY": sys.executable}, timeout=600)
            assert result.returncode == 0, result.stdout + result.stderr  # includes cfn-lint's findings
    assert (out / "deployment.zip").stat().st_size > 0
    return json.loads((out / "sam.json").read_text())
