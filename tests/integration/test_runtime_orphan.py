"""`make run` killed alone (a CI step's timeout, a terminal closed on make) leaves its child, the
local runtime, without a parent: it stops by itself instead of holding its ports forever."""
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

RUNTIME = """
import sys
from localrun.runtime import Runtime
runtime = Runtime(env={})
print("ready", flush=True)
code = runtime.wait()
open(sys.argv[1], "w").write(str(code))
"""

# Stands for make: starts the runtime, waits until it runs, and dies without stopping it.
STARTER = """
import subprocess, sys
child = subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2]], stdout=subprocess.PIPE,
                         stderr=open(sys.argv[3], "w"), cwd=sys.argv[4])
assert child.stdout.readline().strip() == b"ready"
"""


def test_the_runtime_stops_when_the_process_that_started_it_is_gone(tmp_path):
    result, errors = tmp_path / "exit-code", tmp_path / "stderr"
    subprocess.run([sys.executable, "-c", STARTER, RUNTIME, str(result), str(errors), str(ROOT)],
                   check=True, timeout=60)
    deadline = time.monotonic() + 30
    while not result.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert result.read_text() == "1"
    assert "The process that started Bandwidth Meter is gone; stopping." in errors.read_text()
