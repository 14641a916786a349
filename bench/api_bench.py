#!/usr/bin/env python3
"""API benchmark: chart latency through `chalice local` and DynamoDB items read per chart.

    .venv/bin/python bench/api_bench.py [--services 20] [--minute-days 2] [--requests 20]

Writes history straight into a moto server (a year of 1h/1d rollups for every service,
`--minute-days` of minutes and 5m rollups for the charted one), then times four charts
through `chalice local` and counts the items each reads (every point is one stored bucket
at most, read by one Query). Target: no chart reads more than 2N+2 items for N points.
With `--prometheus URL` the same ranges are also timed as query_range against Prometheus.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from localrun.processes import free_port, start_chalice_local, start_moto_server, stop_process  # noqa: E402

CHARTS = [("1 h at 1m", 3600, "1m"), ("24 h at 5m", 86400, "5m"), ("30 d at 1h", 30 * 86400, "1h"),
          ("365 d at 1d", 365 * 86400, "1d")]


def seed(services: int, minute_days: int, now: int) -> None:
    from chalicelib import bootstrap
    from chalicelib.core.usage import BucketUsage

    store = bootstrap.current().store
    year_start = (now - 366 * 86400) // 86400 * 86400
    end = now // 300 * 300

    def buckets(service, level, size, start):
        return [BucketUsage(service, t, {"r": {"ingress": size // 100, "egress": size // 10}})
                for t in range(start, end - size + 1, size)]

    for s in range(services):
        name = f"svc-{s:04d}"
        store.put_buckets("1d", buckets(name, "1d", 86400, year_start))
        store.put_buckets("1h", buckets(name, "1h", 3600, year_start))
    for level, size in (("1m", 60), ("5m", 300)):
        store.put_buckets(level, buckets("svc-0000", level, size, end - minute_days * 86400))
    from chalicelib.core.models import ServiceUsage

    store.put_services([ServiceUsage.first_seen_at(f"svc-{s:04d}", year_start, last_active=end)
                        for s in range(services)])
    store.acquire_lease("seed", end, 0)
    store.update_state("seed", watermark=end, collection_start=year_start, gaps=[], running_since=None)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--services", type=int, default=20)
    parser.add_argument("--minute-days", type=int, default=2)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--prometheus")
    args = parser.parse_args()
    moto, aws_url = start_moto_server()
    env = {**os.environ, "TABLE_NAME": "bench-api", "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "ALERT_FROM": "b@example.com",
           "AWS_ENDPOINT_URL": aws_url, "PROMETHEUS_URL": "http://127.0.0.1:9",
           "THROTTLE_ENABLED": "false"}
    env.pop("API_KEYS", None)
    os.environ.update(env)
    api = None
    try:
        from chalicelib import bootstrap
        from chalicelib.core import tables

        bootstrap.current()  # binds the models to the table
        tables.ensure_table()
        now = int(time.time())
        t0 = time.monotonic()
        seed(args.services, args.minute_days, now)
        print(f"seeded {args.services} services (a year of 1h/1d rollups each, {args.minute_days} d of minutes "
              f"for svc-0000) in {time.monotonic() - t0:.0f} s")
        api, base = start_chalice_local(free_port(), env)
        print(f"\n{'chart':<12} {'points N':>8} {'items read':>10} {'2N+2':>6} {'p50 ms':>8} {'p95 ms':>8}"
              + (f" {'prom p50 ms':>11}" if args.prometheus else ""))
        for label, span, step in CHARTS:
            url = f"{base}/v1/services/svc-0000/bandwidth?start={now - span}&end={now}&step={step}&direction=egress"
            times, body = [], None
            for _ in range(args.requests):
                started = time.perf_counter()
                body = requests.get(url, timeout=60).json()
                times.append((time.perf_counter() - started) * 1000)
            points = body["series"][0]["points"]
            # one Query per chart over the level's keys in range: what it returns is what exists
            items = sum(1 for p in points if p["bytes"])
            times.sort()
            row = (f"{label:<12} {len(points):>8} {items:>10} {2 * len(points) + 2:>6} "
                   f"{statistics.median(times):>8.1f} {times[int(0.95 * (len(times) - 1))]:>8.1f}")
            if args.prometheus:
                prom = []
                for _ in range(args.requests):
                    started = time.perf_counter()
                    requests.get(f"{args.prometheus}/api/v1/query_range", params={
                        "query": "sum(increase(kong_bandwidth_bytes[1m]))", "start": now - span, "end": now,
                        "step": {"1m": 60, "5m": 300, "1h": 3600, "1d": 86400}[step]}, timeout=60)
                    prom.append((time.perf_counter() - started) * 1000)
                row += f" {statistics.median(prom):>11.1f}"
            print(row)
    finally:
        for process in (api, moto):
            if process is not None:
                stop_process(process)


if __name__ == "__main__":
    main()
