#!/usr/bin/env python3
"""Make sure the Prometheus and promtool binaries exist; install Debian's package when absent.

Exit status 0 when both are on PATH afterwards. Where installing is impossible
(not Debian, not root) it says how to get Prometheus, or to set PROMETHEUS_URL.
"""
import os
import shutil
import subprocess
import sys


def have_binaries() -> bool:
    return bool(shutil.which("prometheus") and shutil.which("promtool"))


def main() -> int:
    if have_binaries():
        return 0
    can_apt = shutil.which("apt-get") and os.path.exists("/etc/debian_version")
    if not can_apt or os.geteuid() != 0:
        print(
            "Prometheus is not installed and cannot be installed automatically here "
            "(needs Debian/Ubuntu and root).\n"
            "Install it yourself (`sudo apt-get install prometheus`, or the release binaries "
            "from prometheus.io on PATH), or point Bandwidth Meter at an existing server "
            "with PROMETHEUS_URL=http://host:9090.",
            file=sys.stderr,
        )
        return 1
    print("Prometheus not found: installing the Debian `prometheus` package (once)...", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update", "-qq"],
                ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "prometheus"]):
        result = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if result.returncode != 0:
            print(f"`{' '.join(cmd)}` failed:\n{result.stderr[-2000:]}", file=sys.stderr)
            return 1
    # The package starts a system service on :9090; we run our own instances on other ports.
    subprocess.run(["systemctl", "disable", "--now", "prometheus"], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=False)
    if not have_binaries():
        print("The prometheus package installed, but prometheus/promtool are still not on PATH.", file=sys.stderr)
        return 1
    print("Prometheus installed.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
