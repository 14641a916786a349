"""The real Prometheus binary, for the local runtime and the tests.

- ``ensure_installed()`` finds prometheus/promtool, installing Debian's package when
  it can (root on Debian), and otherwise says how to get one or to set PROMETHEUS_URL.
- ``PrometheusServer`` runs an instance on 127.0.0.1 with its own port, config and
  data directory, in its own process group, and stops it without leaving orphans.
- ``build_tsdb`` turns OpenMetrics text into TSDB blocks with promtool, so tests can
  serve exact, deterministic history.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterable, Optional, Sequence

import requests

from localrun.processes import free_port, port_in_use, stop_process


class PrometheusUnavailable(RuntimeError):
    pass


HOW_TO_GET_ONE = (
    "Install Prometheus yourself (`sudo apt-get install prometheus`, or the release binaries "
    "from prometheus.io on PATH), or point Bandwidth Meter at an existing server with "
    "PROMETHEUS_URL=http://host:9090."
)


def _have_binaries() -> bool:
    return bool(shutil.which("prometheus") and shutil.which("promtool"))


def ensure_installed(announce=print) -> None:
    """Make sure prometheus and promtool are on PATH; install Debian's package if needed."""
    if _have_binaries():
        return
    if not (shutil.which("apt-get") and os.path.exists("/etc/debian_version")) or os.geteuid() != 0:
        raise PrometheusUnavailable("Prometheus is not installed and cannot be installed automatically "
                                    "here (needs Debian/Ubuntu and root). " + HOW_TO_GET_ONE)
    announce("Prometheus not found: installing the Debian `prometheus` package (once)...")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update", "-qq"],
                ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "prometheus"]):
        result = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if result.returncode != 0:
            raise PrometheusUnavailable(f"`{' '.join(cmd)}` failed: {result.stderr[-1500:]}\n{HOW_TO_GET_ONE}")
    # The package starts a system service on :9090; we never rely on it.
    subprocess.run(["systemctl", "disable", "--now", "prometheus"], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=False)
    if not _have_binaries():
        raise PrometheusUnavailable("the prometheus package installed, but the binaries are not on PATH")
    announce("Prometheus installed.")


def build_tsdb(openmetrics_text: str, data_dir: str) -> None:
    """Write exact history into ``data_dir`` with promtool (raises with promtool's message)."""
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".om", delete=False) as f:
        f.write(openmetrics_text)
        source = f.name
    try:
        result = subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", "--quiet",
                                 source, data_dir], capture_output=True, text=True)
    finally:
        os.unlink(source)
    if result.returncode != 0:
        raise PrometheusUnavailable(f"promtool could not build blocks: {result.stderr.strip()[-2000:]}")


class PrometheusServer:
    def __init__(self, targets: Sequence[str] = (), scrape_interval: str = "5s", port: Optional[int] = None,
                 data_dir: Optional[str] = None, retention: str = "3650d", extra_args: Iterable[str] = (),
                 log_path: Optional[str] = None):
        self.targets = list(targets)
        self.scrape_interval = scrape_interval
        self.port = port or free_port()
        self._own_port = port is None  # chosen here: another may be chosen if it is taken meanwhile
        self._own_dir = data_dir is None
        self.workdir = tempfile.mkdtemp(prefix="bwm-prometheus-")
        self.data_dir = data_dir or os.path.join(self.workdir, "data")
        self.retention = retention
        self.extra_args = list(extra_args)
        self.log_path = log_path or os.path.join(self.workdir, "prometheus.log")
        self.process: Optional[subprocess.Popen] = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _config(self) -> str:
        targets = ", ".join(f'"{t}"' for t in self.targets)
        return (f"global:\n  scrape_interval: {self.scrape_interval}\n  evaluation_interval: 1m\n"
                f"scrape_configs:\n  - job_name: kong\n    static_configs:\n      - targets: [{targets}]\n")

    def start(self) -> "PrometheusServer":
        ensure_installed()
        if port_in_use(self.port):
            raise PrometheusUnavailable(f"port {self.port} on 127.0.0.1 is already in use")
        config = self.config_path = os.path.join(self.workdir, "prometheus.yml")
        Path(config).write_text(self._config())
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            ["prometheus", f"--config.file={config}", f"--web.listen-address=127.0.0.1:{self.port}",
             f"--storage.tsdb.path={self.data_dir}", f"--storage.tsdb.retention.time={self.retention}",
             "--web.enable-admin-api", *self.extra_args],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        return self

    def wait_ready(self, timeout: float = 30) -> "PrometheusServer":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            exited = self.process.poll() is not None
            try:
                served = requests.get(f"{self.url}/-/ready", timeout=1).status_code == 200
                ours = served and not exited and self._answers_as_itself()
            except requests.RequestException:
                served = ours = False
            if ours:
                return self
            if served and self._own_port:
                # Another Prometheus took the free port between its choice and our bind (this
                # one then fails to bind): start again on another port.
                stop_process(self.process)
                self.port = free_port()
                self.start()
                continue
            if exited:
                raise PrometheusUnavailable(f"Prometheus exited with {self.process.returncode}: {self.log_tail()}")
            time.sleep(0.2)
        raise PrometheusUnavailable(f"Prometheus not ready after {timeout}s: {self.log_tail()}")

    def _answers_as_itself(self) -> bool:
        """Whether the Prometheus on our port is this one (it reads our configuration file)."""
        flags = requests.get(f"{self.url}/api/v1/status/flags", timeout=2).json().get("data", {})
        return flags.get("config.file") == self.config_path

    def wait_for_samples(self, promql: str, minimum: int = 1, timeout: float = 30) -> list:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = requests.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=5).json()
            series = result.get("data", {}).get("result", [])
            if len(series) >= minimum:
                return series
            time.sleep(0.5)
        raise TimeoutError(f"{promql} returned fewer than {minimum} series within {timeout}s")

    def log_tail(self, chars: int = 1500) -> str:
        try:
            return Path(self.log_path).read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process:
            stop_process(self.process)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self):
        return self.start().wait_ready()

    def __exit__(self, *exc):
        self.stop()


if __name__ == "__main__":  # `python -m localrun.prometheus`: install if needed
    try:
        ensure_installed()
    except PrometheusUnavailable as e:
        print(e, file=sys.stderr)
        sys.exit(1)
