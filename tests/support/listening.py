"""Whether the server answering on a port is the process we started, not another one.

A free port is chosen, then the server binds it: between the two, another test worker may take
it, and our server then fails to bind while the other answers our readiness check. So after a
server answers we ask the kernel which process listens there (Linux: /proc/net/tcp*), and
start again on another port when it is not ours."""
from __future__ import annotations

import os
import subprocess
from typing import Callable, Optional, Set, Tuple
from urllib.parse import urlsplit

from localrun.processes import stop_process

LISTEN = "0A"  # the TCP state in /proc/net/tcp


def _listening_inodes(port: int) -> Optional[Set[str]]:
    """Socket inodes listening on ``port``, or None where the kernel does not say (not Linux)."""
    found: Set[str] = set()
    tables = [t for t in ("/proc/net/tcp", "/proc/net/tcp6") if os.path.exists(t)]
    if not tables:
        return None
    for table in tables:
        with open(table) as lines:
            next(lines)  # the header
            for line in lines:
                fields = line.split()
                if fields[3] == LISTEN and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    found.add(fields[9])
    return found


def listens_on(pid: int, port: int) -> bool:
    """Whether process ``pid`` holds the socket listening on 127.0.0.1:``port``."""
    inodes = _listening_inodes(port)
    if inodes is None:
        return True  # cannot tell here; the readiness check has to do
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False  # gone
    held = set()
    for fd in fds:
        try:
            held.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            continue
    return any(f"socket:[{inode}]" in held for inode in inodes)


def start_ours(start: Callable[[], Tuple[subprocess.Popen, str]], attempts: int = 3) -> Tuple[subprocess.Popen, str]:
    """``start()`` -> (process, url) until the server answering at url is that process."""
    for _ in range(attempts):
        process, url = start()
        if listens_on(process.pid, urlsplit(url).port):
            return process, url
        stop_process(process)  # another server answered on the port it chose
    raise RuntimeError(f"no server of ours on a free port after {attempts} attempts")
