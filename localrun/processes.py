"""Local server processes: start one, wait until it answers, stop it and its children.

The one way the local runtime, the tests and the benchmarks run a moto server, `chalice local`
or any other child that answers HTTP on 127.0.0.1. Each child gets its own process group, so
stopping it also stops whatever it started.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Mapping, Optional, Sequence, Tuple

import requests

ROOT = Path(__file__).resolve().parent.parent


class ProcessFailed(RuntimeError):
    """A child process exited, or did not answer in time; the message has its log's tail."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _tail(log: Optional[Path], chars: int = 2000) -> str:
    try:
        return log.read_text(errors="replace")[-chars:] if log else ""
    except OSError:
        return ""


def wait_until_answering(url: str, process: subprocess.Popen, what: str, log: Optional[Path] = None,
                         timeout: float = 60) -> None:
    """Return once ``url`` answers any HTTP status; raise ProcessFailed if the process dies or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise ProcessFailed(f"{what} exited with {process.returncode}\n{_tail(log)}")
        try:
            requests.get(url, timeout=1)
            return
        except requests.RequestException:
            if time.monotonic() > deadline:
                stop_process(process)
                raise ProcessFailed(f"{what} did not answer at {url} within {timeout:g} s\n{_tail(log)}") from None
            time.sleep(0.2)


def start_server(cmd: Sequence[str], ready_url: str, what: str, env: Optional[Mapping[str, str]] = None,
                 log: Optional[Path] = None, cwd: Path = ROOT, timeout: float = 60) -> subprocess.Popen:
    """Start ``cmd`` in its own process group (output to ``log``, or nowhere) and wait until it answers."""
    out = open(log, "ab") if log else subprocess.DEVNULL
    try:
        process = subprocess.Popen(list(cmd), cwd=cwd, env=dict(env) if env is not None else None, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    finally:
        if log:
            out.close()
    wait_until_answering(ready_url, process, what, log, timeout)
    return process


def stop_process(process: subprocess.Popen, grace: float = 10) -> None:
    """SIGTERM the process group, SIGKILL it if it lingers."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(grace)
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)


def start_moto_server(log: Optional[Path] = None) -> Tuple[subprocess.Popen, str]:
    """A moto server (AWS) as a separate process on a free 127.0.0.1 port: (process, url)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = start_server([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                           f"{url}/moto-api/", "the moto server", log=log, timeout=30)
    return process, url


def start_chalice_local(port: int, env: Mapping[str, str], log: Optional[Path] = None, host: str = "127.0.0.1",
                        timeout: float = 60, project: Optional[Path] = None) -> Tuple[subprocess.Popen, str]:
    """The API on `chalice local --stage local` (the environment says which AWS and table): (process, url).
    ``project``: another Chalice project directory than the working one."""
    chalice = Path(sys.executable).with_name("chalice")
    url = f"http://127.0.0.1:{port}"
    where = ["--project-dir", str(project)] if project is not None else []
    process = start_server([str(chalice), *where, "local", "--stage", "local", "--host", host, "--port", str(port),
                            "--no-autoreload"], f"{url}/v1/health", "chalice local",
                           env={**env, "PYTHONUNBUFFERED": "1"}, log=log, timeout=timeout, cwd=project or ROOT)
    return process, url
