#!/usr/bin/env python3
"""Sharded collector benchmark. Prints figures; not a timed test.

    .venv/bin/python bench/shard_bench.py --services 10000 --shards 8

History for N services x 5 routes x 2 directions is built with promtool (as in
collector_bench.py) and served by the Prometheus binary; DynamoDB is a moto server process.
Each shard runs as its own invocation would, one after the other in this process, so that
its wall time, peak Python memory (tracemalloc), Prometheus requests and time waiting on
DynamoDB and Prometheus are its own. First the catch-all's runs that hand the new fleet to
the fixed shards (a batch a run), then ordinary minutes, and a minute that completes the
5-minute, 15-minute and hour buckets.
"""
from __future__ import annotations

import argparse
import functools
import os
import subprocess
import sys
import time
import tracemalloc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.collector_bench import WriteMeter, configure, fleet_tsdb  # noqa: E402
from localrun.prometheus import PrometheusServer  # noqa: E402
from tests.support.servers import start_moto_server, stop_process  # noqa: E402

STORE_CALLS = ("put_buckets", "put_services", "get_buckets", "get_services", "list_services",
               "state", "update_state", "acquire_lease", "assignments", "hand_over", "take_over", "query_buckets")


class Timer:
    """Adds up the wall time spent inside some methods of an object (waiting on a backend)."""

    def __init__(self, target, names):
        self.seconds = 0.0
        for name in names:
            setattr(target, name, self._wrap(getattr(target, name)))

    def _wrap(self, method):
        @functools.wraps(method)
        def timed(*args, **kwargs):
            t = time.monotonic()
            try:
                return method(*args, **kwargs)
            finally:
                self.seconds += time.monotonic() - t
        return timed


def cold_rss_mb() -> float:
    """Peak resident memory of a fresh process that has imported the app and built a collector
    and its DynamoDB client, as a Lambda cold start does before its first query."""
    # VmHWM, not ru_maxrss: the latter keeps the high-water mark of the forked copy of this
    # (large) process from before exec.
    code = ("import re, app\n"
            "from chalicelib import bootstrap\n"
            "from chalicelib.core.models import ServiceUsage\n"
            "bootstrap.current().collector_for(0)\n"
            "ServiceUsage._get_connection().connection.client\n"
            "print(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1))")
    env = {**os.environ, "TABLE_NAME": "bench", "AWS_REGION": "us-east-1", "STAGE": "dev",
           "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "PROMETHEUS_URL": "http://127.0.0.1:9"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", type=int, default=200)
    parser.add_argument("--shards", type=int, default=8)
    args = parser.parse_args()
    routes, services = 5, args.services
    base = int(time.time() // 3600 * 3600) - 3600  # an hour boundary: the last minute completes 5m, 15m and 1h
    data_dir, took = fleet_tsdb(services, routes, base - 900, base + 120, "bench-shards-")
    print(f"Sharded collector: {services:,} services x {routes} routes x 2 directions = {services * routes * 2:,} "
          f"series, {args.shards} shards (history built in {took:.0f} s)")
    print(f"  A cold collector process (the app imported, a collector and its DynamoDB client built) holds "
          f"{cold_rss_mb():.0f} MB resident; a shard's Lambda needs that plus its peak below.")
    moto, moto_url = start_moto_server()
    try:
        with PrometheusServer(data_dir=data_dir) as prom:
            os.environ["SHARD_COUNT"] = str(args.shards)
            bootstrap = configure(moto_url, prom.url, 1)
            deps = bootstrap.current()
            collectors = [deps.collector_for(n) for n in range(args.shards)]
            meters = [WriteMeter(c.store) for c in collectors]
            dynamo = [Timer(c.store, STORE_CALLS) for c in collectors]
            promwait = [Timer(c.prometheus, ("query",)) for c in collectors]
            print(f"  {'minute':<20} {'shard':>5} {'services':>8} {'wall s':>7} {'peak MB':>7} {'prom req':>8} "
                  f"{'WCU/svc-min':>11} {'DynamoDB %':>10} {'Prometheus %':>12} {'own CPU %':>9}")

            def measure(label, n, now):
                """One shard's run, as its own invocation: its row, and what adds up over shards."""
                units, dyn, pw = meters[n].units, dynamo[n].seconds, promwait[n].seconds
                tracemalloc.start()
                t = time.monotonic()
                report = collectors[n].run(now=now)
                wall = time.monotonic() - t
                peak = tracemalloc.get_traced_memory()[1] / 2**20
                tracemalloc.stop()
                active = report.series_seen // (routes * 2) * max(report.minutes, 1)
                d, p = dynamo[n].seconds - dyn, promwait[n].seconds - pw
                wcu = (meters[n].units - units) / active if active else 0.0
                print(f"  {label:<20} {n:>5} {report.series_seen // (routes * 2):>8} {wall:>7.2f} {peak:>7.1f} "
                      f"{report.prometheus_requests:>8} {wcu:>11.3f} {100 * d / wall:>10.0f} {100 * p / wall:>12.0f} "
                      f"{100 * max(0.0, wall - d - p) / wall:>9.0f}")
                return report, wall, meters[n].units - units, active

            # The first deployment: every service is new, and the catch-all hands them over a
            # batch a run (CATCH_ALL_BATCH), counting the same window again for the next batch.
            passes, deferred = 0, None
            while deferred != 0:
                passes += 1
                report = measure(f"hand-over, run {passes}", 0, base - 240 + 31)[0]
                deferred = report.deferred
            for label, end in [("ordinary", base - 180), ("ordinary", base - 120), ("ordinary", base - 60),
                               ("completes 5m+15m+1h", base)]:
                total_wall, total_units, active_total, total_req = 0.0, 0, 0, 0
                for n in range(args.shards):
                    report, wall, units, active = measure(label, n, end + 31)
                    total_wall = max(total_wall, wall)
                    total_units += units
                    active_total += active
                    total_req += report.prometheus_requests
                print(f"  {label:<20} {'all':>5} {active_total:>8} {total_wall:>7.2f} {'':>7} {total_req:>8} "
                      f"{(total_units / active_total if active_total else 0):>11.3f}   (wall: the slowest shard, "
                      f"as concurrent invocations)")
    finally:
        stop_process(moto)


if __name__ == "__main__":
    main()
