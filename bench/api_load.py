#!/usr/bin/env python3
"""API load: sustained requests per second through `chalice local` before p95 exceeds 250 ms.

    .venv/bin/python bench/api_load.py [--seconds 8] [--max-clients 16]

Starts a moto server and `chalice local`, seeds one service, then for 1, 2, 4, ... concurrent
clients sends a fixed mix (overview, a 24 h chart, stats, legacy endpoint) for --seconds each
(bounded), printing requests per second and p50/p95 latency per step.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.keyed_api import keyed_api, seed_usage  # noqa: E402


def run_step(base: str, clients: int, seconds: float, end: int):
    paths = ["/v1/services", f"/v1/services/svc/bandwidth?start={end - 86400}&end={end}",
             f"/v1/services/svc/stats?start={end - 3600}&end={end}",
             "/metrics/bandwidth_used?lookback_duration=5m&type=egress&service=svc"]
    latencies, errors, stop = [], [0], time.monotonic() + seconds
    lock = threading.Lock()

    def client(i):
        session = requests.Session()
        n = i
        while time.monotonic() < stop:
            started = time.perf_counter()
            status = session.get(base + paths[n % len(paths)], timeout=30).status_code
            elapsed = (time.perf_counter() - started) * 1000
            with lock:
                latencies.append(elapsed)
                errors[0] += status >= 500
            n += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    latencies.sort()
    return (len(latencies) / (time.monotonic() - started), statistics.median(latencies),
            latencies[int(0.95 * (len(latencies) - 1))], errors[0])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--max-clients", type=int, default=16)
    args = parser.parse_args()
    import tempfile

    with keyed_api(Path(tempfile.mkdtemp()), {"THROTTLE_ENABLED": "false"}) as api:
        end = seed_usage("svc", minutes=60)
        print(f"{'clients':>7} {'req/s':>7} {'p50 ms':>7} {'p95 ms':>7} {'5xx':>4}")
        best = None
        clients = 1
        while clients <= args.max_clients:
            rps, p50, p95, errors = run_step(api.url, clients, args.seconds, end)
            print(f"{clients:>7} {rps:>7.1f} {p50:>7.1f} {p95:>7.1f} {errors:>4}")
            if p95 <= 250:
                best = max(best or 0, rps)
            clients *= 2
        print(f"sustained before p95 > 250 ms: {best:.1f} req/s" if best else "p95 above 250 ms from one client")


if __name__ == "__main__":
    main()
