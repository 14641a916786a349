#!/usr/bin/env python3
"""Collector benchmark: accuracy against increase(), and cost at scale. Prints figures.

    .venv/bin/python bench/collector_bench.py                 # small sizes (CI)
    .venv/bin/python bench/collector_bench.py --services 1000  # the issue's scale
    .venv/bin/python bench/collector_bench.py --services 100 --consumers 10  # with consumers

Both parts run the real collector against the Prometheus binary (history built with
promtool, so the truth is known exactly) and a moto server process.

Accuracy: two nodes, resets, a series born mid-window and idle minutes; the collector's
error in bytes beside the error of summing per-minute
``sum by (service,route,direction)(increase(kong_bandwidth_bytes[1m]))``.

Scale: N services x R routes x 2 directions (x C consumers, each its own series; without
--consumers the consumer label is empty: all anonymous), steady state (one minute per run):
wall time per run, Prometheus requests per run, DynamoDB write requests and write
units per active service-minute (item sizes computed with DynamoDB's sizing rules),
and the collector's peak Python memory (tracemalloc).
"""
from __future__ import annotations

import argparse
import itertools
import math
import os
import sys
import tempfile
import time
import tracemalloc

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import requests  # noqa: E402

from localrun.prometheus import PrometheusServer, build_tsdb  # noqa: E402
from tests.support.openmetrics import History, counter_samples  # noqa: E402
from tests.support.servers import start_moto_server, stop_process  # noqa: E402

STEP = 15


def configure(moto_url: str, prometheus_url: str, backfill_minutes: int):
    os.environ.update({
        "TABLE_NAME": "bench", "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench", "AWS_ENDPOINT_URL": moto_url, "PROMETHEUS_URL": prometheus_url,
        "COLLECT_LAG_SECONDS": "30", "INITIAL_BACKFILL_MINUTES": str(backfill_minutes),
        "COLLECT_TRAFFIC_STATS": "false", "ALERT_FROM": "bench@example.com",
    })
    from chalicelib import bootstrap
    from chalicelib.core import tables

    requests.post(f"{moto_url}/moto-api/reset", timeout=5)
    bootstrap.reset()
    bootstrap.current()  # binds the models to the table
    tables.ensure_table()
    return bootstrap


def fleet_tsdb(services: int, routes: int, start: int, end: int, prefix: str, consumers: int = 0,
               counter_start: int = 0) -> tuple:
    """A Prometheus data directory holding ``services`` x ``routes`` x 2 directions (x
    ``consumers``, or one anonymous series) of steady counters from ``start`` to ``end`` (one
    node), each from ``counter_start`` (a gateway's lifetime bytes), built with promtool:
    (directory, seconds taken)."""
    history = History()
    names = [f"customer-{c:05d}" for c in range(consumers)] or [""]
    for s in range(services):
        for r in range(routes):
            for direction in ("ingress", "egress"):
                for consumer in names:
                    history.add("kong_bandwidth_bytes", {
                        "service": f"svc-{s:05d}", "route": f"route-{r}", "direction": direction,
                        "consumer": consumer, "workspace": "default", "instance": "kong-1:8001"},
                        counter_samples(start, end, STEP, itertools.chain(
                            [counter_start + 100 + s % 7], iter(lambda: 100 + s % 7, None))))
    data_dir = tempfile.mkdtemp(prefix=prefix)
    t0 = time.monotonic()
    build_tsdb(history.render(), data_dir)
    return data_dir, time.monotonic() - t0


def item_size(raw: dict) -> int:
    """DynamoDB's item size: attribute names plus values (numbers ~ digits/2 + 1, maps, lists and
    sets +3 and +1 per element). Binary values as bytes (a serialized model: the collector's
    checkpoint) or base64 (an item as the wire answers it)."""
    def value_size(v: dict) -> int:
        (kind, inner), = v.items()
        if kind == "S":
            return len(inner.encode())
        if kind == "B":
            return len(inner) if isinstance(inner, (bytes, bytearray)) else len(inner) * 3 // 4
        if kind == "N":
            return len(inner.strip("-").replace(".", "").lstrip("0")) // 2 + 1 + 1
        if kind == "M":
            return 3 + sum(len(k.encode()) + value_size(x) + 1 for k, x in inner.items())
        if kind in ("L", "SS", "NS"):
            return 3 + sum((value_size(x) if isinstance(x, dict) else len(str(x))) + 1 for x in inner)
        return 1
    return sum(len(k.encode()) + value_size(v) for k, v in raw.items())


class WriteMeter:
    """Counts write requests and write units of the store's batch writes, and the bytes the
    collector's checkpoints take in the service items it writes."""

    def __init__(self, store):
        self.requests = self.units = self.items = 0
        self.checkpoint_series = self.checkpoint_bytes = self.previous_bytes = self.legacy_bytes = 0
        self.minute_items = self.minute_bytes = 0  # the 1m bucket items and their size
        self.units_by_kind = {"minute": 0, "service": 0, "rollup": 0}
        for name in ("put_buckets", "put_services"):
            original = getattr(store, name)
            setattr(store, name, self._wrap(store, name, original))

    def _wrap(self, store, name, original):
        def measured(*args):
            items = args[-1]
            if name == "put_buckets":
                level = args[0]
                raws = [store._bucket_item(level, b).serialize() for b in items]
                if level == "1m":
                    self.minute_items += len(raws)
                    self.minute_bytes += sum(item_size(r) for r in raws)
            else:
                raws = [i.serialize() for i in items]
                for item in items:
                    self._checkpoints(item)
            self.items += len(raws)
            self.requests += math.ceil(len(raws) / 25)
            units = sum(math.ceil(item_size(r) / 1024) for r in raws)
            self.units += units
            kind = "service" if name == "put_services" else "minute" if args[0] == "1m" else "rollup"
            self.units_by_kind[kind] += units
            return original(*args)
        return measured


    def _checkpoints(self, item) -> None:
        """The bytes of an item's two checkpoints, and what 24-byte records of the same series took."""
        from chalicelib.collect.checkpoint import Checkpoint

        if not item.checkpoint:
            return
        current = Checkpoint.unpack(item.checkpoint, item.checkpoint_at)
        previous = Checkpoint.unpack(item.previous_checkpoint, item.previous_checkpoint_at, item.checkpoint)
        self.checkpoint_series += len(current.readings)
        self.checkpoint_bytes += len(item.checkpoint)
        self.previous_bytes += len(item.previous_checkpoint or b"")
        self.legacy_bytes += 24 * (len(current.readings) + len(previous.readings))


def accuracy(moto_url: str) -> None:
    base = int(time.time() // 3600 * 3600) - 4 * 3600
    history, truth = History(), 0
    window = (base, base + 3600)

    def add(labels, samples, first_counts):
        nonlocal truth
        history.add("kong_bandwidth_bytes", labels, samples)
        previous = None
        for t, v in samples:
            inc = v if previous is None or v < previous else v - previous
            if window[0] <= t < window[1] and (previous is not None or first_counts):
                truth += inc
            previous = v

    lbl = {"service": "pay", "route": "checkout", "direction": "egress", "consumer": "", "workspace": "default"}
    add({**lbl, "instance": "a"}, counter_samples(base - 600, base + 3600, STEP, iter(lambda: 1234, None),
                                                  resets_at=[base + 1200, base + 2400]), False)
    add({**lbl, "instance": "b"}, counter_samples(base + 900, base + 3600, STEP, iter(lambda: 777, None)), True)
    incs = [50 if (t // 600) % 2 else 0 for t in range(base - 600, base + 3600, STEP)]  # idle 10-minute spells
    add({**lbl, "route": "search", "instance": "a"}, counter_samples(base - 600, base + 3600, STEP, iter(incs)), False)
    data_dir = tempfile.mkdtemp(prefix="bench-acc-")
    build_tsdb(history.render(), data_dir)
    with PrometheusServer(data_dir=data_dir) as prom:
        bootstrap = configure(moto_url, prom.url, 60)
        bootstrap.current().collector.run(now=window[1] + 31)
        minutes = bootstrap.current().store.query_buckets("pay", "1m", window[0] - 86400, window[1] + 86400)
        collected = sum(b.egress for b in minutes)
        answer = requests.get(f"{prom.url}/api/v1/query_range", params={
            "query": "sum by (service,route,direction)(increase(kong_bandwidth_bytes[1m]))",
            "start": window[0] + 60, "end": window[1], "step": 60}).json()
        by_increase = sum(float(v) for s in answer["data"]["result"] for _, v in s["values"])
    print("Accuracy (1 hour, 2 nodes, 2 resets, a born series, idle spells)")
    print(f"  truth                         {truth:>14,} bytes")
    print(f"  collector                     {collected:>14,} bytes   error {collected - truth:+,}")
    print(f"  sum of increase()[1m]         {by_increase:>14,.0f} bytes   error {by_increase - truth:+,.0f} "
          f"({100 * (by_increase - truth) / truth:+.2f} %)")


def scale(moto_url: str, services: int, runs: int, routes: int = 5, consumers: int = 0, counter_start: int = 0) -> None:
    base = int(time.time() // 60 * 60) - 3600
    data_dir, took = fleet_tsdb(services, routes, base - 600, base + (runs + 1) * 60, "bench-scale-", consumers,
                                counter_start)
    series = services * routes * 2 * max(1, consumers)
    print(f"\nScale: {services} services x {routes} routes x 2 directions x {consumers or 'no'} consumers = "
          f"{series:,} series (history built in {took:.1f} s)")
    with PrometheusServer(data_dir=data_dir) as prom:
        bootstrap = configure(moto_url, prom.url, 1)
        collector = bootstrap.current().collector
        meter = WriteMeter(collector.store)
        rows = []
        for i in range(runs):
            now = base + (i + 1) * 60 + 31
            requests_before = collector.prometheus.requests_made
            w_req, w_units, w_items = meter.requests, meter.units, meter.items
            tracemalloc.start()
            t = time.monotonic()
            report = collector.run(now=now)
            elapsed = time.monotonic() - t
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            active = services * report.minutes
            if i == 0:  # the first run writes no previous checkpoint: leave it out of the bytes a series
                meter.checkpoint_series = meter.checkpoint_bytes = meter.previous_bytes = meter.legacy_bytes = 0
            rows.append((i + 1, report.minutes, elapsed, collector.prometheus.requests_made - requests_before,
                         (meter.requests - w_req) / active, (meter.units - w_units) / active,
                         (meter.items - w_items) / active, peak / 2**20))
    print(f"  {'run':>3} {'minutes':>7} {'wall s':>7} {'prom req':>8} {'write req/svc-min':>17} "
          f"{'WCU/svc-min':>11} {'items/svc-min':>13} {'peak MB':>8}")
    for row in rows:
        print(f"  {row[0]:>3} {row[1]:>7} {row[2]:>7.2f} {row[3]:>8} {row[4]:>17.3f} {row[5]:>11.3f} "
              f"{row[6]:>13.3f} {row[7]:>8.1f}")
    minutes = sum(row[1] for row in rows) * services
    print(f"  amortized over the {len(rows)} runs: {meter.units / minutes:.3f} WCU per active service-minute, "
          "checkpoint included (target at most 2.5)")
    print(f"  minute items: {meter.minute_bytes / max(1, meter.minute_items) / 1024:.2f} KB on average "
          f"({max(1, consumers)} consumer entr{'y' if consumers <= 1 else 'ies'} per service); WCU per active "
          "service-minute by item: " + ", ".join(f"{kind} {units / minutes:.3f}"
                                                 for kind, units in meter.units_by_kind.items()))
    series_written = max(1, meter.checkpoint_series)
    print(f"  checkpoint bytes per series written in runs 2-{len(rows)}: {meter.checkpoint_bytes / series_written:.2f} current + "
          f"{meter.previous_bytes / series_written:.2f} previous = "
          f"{(meter.checkpoint_bytes + meter.previous_bytes) / series_written:.2f} "
          f"(24-byte records: {meter.legacy_bytes / series_written:.2f}); counters from {counter_start:,} bytes")
    print("  items per active service-minute: its minute item and its period-usage item (which carries the\n"
          "  collector's checkpoint); a run that completes a 5m/15m/1h/1d bucket adds one rollup item per\n"
          "  service active in it")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", type=int, default=50)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--routes", type=int, default=5)
    parser.add_argument("--consumers", type=int, default=0, help="consumers per service (0: all anonymous)")
    parser.add_argument("--counter-start", type=int, default=0,
                        help="bytes every counter starts from (a gateway's lifetime bytes: its values' size)")
    args = parser.parse_args()
    moto, moto_url = start_moto_server()
    try:
        accuracy(moto_url)
        scale(moto_url, args.services, args.runs, args.routes, args.consumers, args.counter_start)
    finally:
        stop_process(moto)


if __name__ == "__main__":
    main()
