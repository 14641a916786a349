#!/usr/bin/env python3
"""Alert latency: from the end of the minute in which a threshold was crossed to the email
accepted by the emulator, through the whole local system (`python -m localrun`).

    .venv/bin/python bench/alert_latency.py [--alerts 3] [--interval 5]

Starts the runtime with COLLECT_INTERVAL=5, gives the demo services tiny quotas one after
another, and reads each alert's crossed_at (end of the crossing minute) and sent_at (when SES
accepted the message) from GET /v1/services/{s}/alerts. Prints each and the median.
"""
from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
from datetime import datetime

import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from localrun.processes import free_port  # noqa: E402


def epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--alerts", type=int, default=3)
    parser.add_argument("--interval", type=int, default=5)
    args = parser.parse_args()
    port = free_port()
    env = dict(os.environ, API_PORT=str(port), COLLECT_INTERVAL=str(args.interval))
    runtime = subprocess.Popen([sys.executable, "-m", "localrun"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    api = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                services = requests.get(f"{api}/v1/services", timeout=2).json()["services"]
                if len(services) >= args.alerts:
                    break
            except (requests.RequestException, ValueError, KeyError):
                pass
            if time.monotonic() > deadline:
                raise SystemExit("no services collected within 120 s")
            time.sleep(2)
        rows = []
        for summary in services[:args.alerts]:
            service = summary["service"]
            limit = max(1, summary["usage"]["total"] + 1)  # crossed by the next minute with traffic
            requests.put(f"{api}/v1/services/{service}/quota", json={"limit_bytes": limit, "thresholds": [100],
                                                                     "notify": ["bench@example.com"]}, timeout=5)
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline:
                alerts = requests.get(f"{api}/v1/services/{service}/alerts", timeout=5).json()["alerts"]
                sent = [a for a in alerts if a["status"] == "sent"]
                if sent:
                    rows.append((service, sent[0]["crossed_at"], sent[0]["sent_at"],
                                 epoch(sent[0]["sent_at"]) - epoch(sent[0]["crossed_at"])))
                    break
                time.sleep(1)
        print(f"Alert latency with COLLECT_INTERVAL={args.interval} (COLLECT_LAG_SECONDS=15, stream polled every 1 s)")
        print(f"  {'service':<16} {'minute ended':<22} {'email accepted':<22} {'latency s':>9}")
        for service, crossed, sent, latency in rows:
            print(f"  {service:<16} {crossed:<22} {sent:<22} {latency:>9.0f}")
        if rows:
            print(f"  median {statistics.median(r[3] for r in rows):.0f} s over {len(rows)} alerts")
    finally:
        os.killpg(runtime.pid, signal.SIGINT)
        runtime.wait(30)


if __name__ == "__main__":
    main()
