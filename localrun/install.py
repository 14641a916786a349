"""`make run`'s installer: pip, but saying what it does while it does it.

    python -m localrun.install requirements-run.txt

pip's own output is either silent (--quiet, so a first run looks hung for a minute or two) or
a wall of text. This prints one line per package as pip resolves and downloads it, then what
was installed; on failure it prints the tail of pip's log and exits with pip's status.
"""
from __future__ import annotations

import re
import subprocess
import sys
import time
from typing import Iterable, List, TextIO

MIN_PYTHON = (3, 10)  # boto3 1.44 and this runtime's pins need 3.10
_COLLECTING = re.compile(r"^Collecting (\S+)")
_INSTALLING = re.compile(r"^Installing collected packages: (.+)$")
_DONE = re.compile(r"^Successfully installed (.+)$")


def python_is_recent_enough(version=sys.version_info) -> bool:
    return tuple(version[:2]) >= MIN_PYTHON


def narrate(lines: Iterable[str], out: TextIO, started: float, clock=time.monotonic) -> List[str]:
    """Echo pip's progress as short lines; return every line (for the log shown on failure)."""
    seen: List[str] = []
    collected = 0
    for raw in lines:
        line = raw.rstrip("\n")
        seen.append(line)
        if m := _COLLECTING.match(line):
            collected += 1
            print(f"    [{clock() - started:5.1f} s] fetching {m.group(1)}", file=out, flush=True)
        elif m := _INSTALLING.match(line):
            count = len(m.group(1).split(", "))
            print(f"    [{clock() - started:5.1f} s] installing {count} packages (quiet for up to a minute)...", file=out, flush=True)
        elif m := _DONE.match(line):
            print(f"    [{clock() - started:5.1f} s] installed {len(m.group(1).split())} packages", file=out,
                  flush=True)
    return seen


def main(argv: List[str] = None, out: TextIO = sys.stdout) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not python_is_recent_enough():
        print(f"Bandwidth Meter needs Python {'.'.join(map(str, MIN_PYTHON))} or newer; this is "
              f"{sys.version.split()[0]}. Run e.g. `make run PYTHON=python3.11`.", file=sys.stderr)
        return 1
    if len(argv) != 1:
        print("usage: python -m localrun.install REQUIREMENTS_FILE", file=sys.stderr)
        return 2
    started = time.monotonic()
    process = subprocess.Popen([sys.executable, "-m", "pip", "install", "--progress-bar", "off",
                                "--disable-pip-version-check", "-r", argv[0]],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log = narrate(process.stdout, out, started)
    status = process.wait()
    if status != 0:
        tail = [line if len(line) <= 400 else line[:400] + " ..." for line in log[-25:]]
        print("pip failed; its last lines:\n" + "\n".join(tail), file=sys.stderr)
        return status
    if not any(_COLLECTING.match(line) for line in log):
        print("    everything was already installed", file=out, flush=True)
    print(f"    done in {time.monotonic() - started:.0f} s", file=out, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
