#!/usr/bin/env python3
"""Consumer metering benchmark: what each consumer's period item costs, and a minute's time and
memory with many consumers. Prints figures.

    .venv/bin/python bench/consumers.py                                   # small (CI-sized)
    .venv/bin/python bench/consumers.py --services 1000 --consumers 10000 --per-service 10 --quotas
    .venv/bin/python bench/consumers.py --services 1000 --consumers 10000 --per-service 50 --quotas --shards 4
    .venv/bin/python bench/consumers.py --services 1000 --consumers 10000 --per-service 50 --quotas --near --shards 4
    .venv/bin/python bench/consumers.py --services 10000 --consumers 100000 --per-service 50 --shards 8 --spans-only

The real collector against a moto server process, fed by the in-memory Prometheus stand-in
(tests/fakes/prometheus.py: building a real TSDB with 100,000 consumer series takes longer than
the run it feeds). Each service carries ``--per-service`` consumers, one egress series each,
drawn from ``--consumers`` distinct consumers, every one active every minute. After a first run
(a two-minute chunk), ``--runs`` ordinary one-minute runs: per run the wall time, the peak
Python memory (tracemalloc), and the write units of the consumer items (collect/consumers.py)
and of the service's own items (minute buckets, period items with the checkpoint), item sizes by
DynamoDB's rules (bench/collector_bench.item_size). Then the listing: DynamoDB requests of one
page of ``GET /v1/consumers`` in each order.
"""
from __future__ import annotations

import argparse
import fnmatch
import math
import os
import sys
import time
import tracemalloc

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import requests  # noqa: E402

from bench.collector_bench import item_size  # noqa: E402
from tests.fakes.prometheus import FakePrometheus  # noqa: E402
from tests.support.servers import start_moto_server, stop_process  # noqa: E402

STEP = 15


def configure(moto_url: str, write_minutes: int, shards: int = 1):
    os.environ.update({
        "CONSUMER_WRITE_MINUTES": str(write_minutes), "SHARD_COUNT": str(shards),
        "TABLE_NAME": "bench-consumers", "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench", "AWS_ENDPOINT_URL": moto_url, "PROMETHEUS_URL": "http://127.0.0.1:9",
        "COLLECT_LAG_SECONDS": "30", "INITIAL_BACKFILL_MINUTES": "2", "COLLECT_TRAFFIC_STATS": "false",
        "ALERT_FROM": "bench@example.com", "COLLECT_WRITE_WORKERS": "4",
    })
    from chalicelib import bootstrap
    from chalicelib.core import tables

    requests.post(f"{moto_url}/moto-api/reset", timeout=5)
    bootstrap.reset()
    bootstrap.current()
    tables.ensure_table()
    return bootstrap


def fleet(services: int, consumers: int, per_service: int, start: int, end: int) -> FakePrometheus:
    prom = FakePrometheus()
    times = list(range(start, end, STEP))
    for s in range(services):
        for j in range(per_service):
            c = (s * per_service + j) % consumers
            prom.add({"__name__": "kong_bandwidth_bytes", "service": f"svc-{s:05d}", "route": "r", "direction": "egress",
                      "consumer": f"customer-{c:06d}", "workspace": "default", "instance": "kong-1:8001", "job": "kong"},
                     [(t, 10**9 + (100 + c % 7) * i) for i, t in enumerate(times)])
    return prom


QUOTA_RULE = "customer-?????0"  # every tenth consumer (--quotas): a rule for consumers gives it a quota
NEAR_EVERY = 100  # --near: every hundredth consumer has its own quota, crossed within the cycle
NEAR_LIMIT_MINUTES = 12  # its limit: this many minutes of its bytes (80, 90, 100 % ~7.6, 8.8, 10 minutes in)


def shards_a_consumer_spans(services: int, consumers: int, per_service: int, shards: int) -> float:
    """On average, how many collector shards count each consumer's services in ``fleet``, by the
    collector's own assignment (each writes its own item of the consumer at every write)."""
    from chalicelib.collect.shards import shard_of

    spans: dict = {}
    for s in range(services):
        shard = shard_of(f"svc-{s:05d}", shards) if shards > 1 else 0
        for j in range(per_service):
            spans.setdefault((s * per_service + j) % consumers, set()).add(shard)
    return sum(len(found) for found in spans.values()) / len(spans)


def bytes_a_minute(services: int, consumers: int, per_service: int) -> dict:
    """Each consumer's bytes a minute in ``fleet``, by consumer number."""
    rates: dict = {}
    for s in range(services):
        for j in range(per_service):
            c = (s * per_service + j) % consumers
            rates[c] = rates.get(c, 0) + (60 // STEP) * (100 + c % 7)
    return rates


class Meter:
    """Write units by kind (consumer items, those with a quota apart; the service's items), and
    the consumer items and minute items read."""

    def __init__(self, store):
        self.units = {"consumer": 0, "service": 0, "quota": 0}
        self.consumer_items = self.consumer_bytes = 0
        self.reads = {"consumer items": 0, "minute items": 0, "rollup items": 0}
        store.get_consumer_items = self._counted("consumer items", store.get_consumer_items)
        store.get_consumers = self._counted("consumer items", store.get_consumers, per_name=True)
        store.get_buckets = self._counted_buckets(store.get_buckets)
        for name, kind in (("put_consumers", "consumer"), ("put_services", "service"), ("put_buckets", "service")):
            setattr(store, name, self._wrap(store, name, kind, getattr(store, name)))

    def _wrap(self, store, name, kind, original):
        def measured(*args):
            items = args[-1]
            raws = ([store._bucket_item(args[0], b).serialize() for b in items] if name == "put_buckets"
                    else [i.serialize() for i in items])
            self.units[kind] += sum(math.ceil(item_size(r) / 1024) for r in raws)
            if kind == "consumer":
                self.units["quota"] += sum(math.ceil(item_size(i.serialize()) / 1024) for i in items
                                           if fnmatch.fnmatchcase(i.consumer, QUOTA_RULE))
                self.consumer_items += len(raws)
                self.consumer_bytes += sum(item_size(r) for r in raws)
            return original(*args)
        return measured

    def _counted(self, kind, original, per_name=False):
        """Keys asked for (a missing item costs a read too); ``per_name``: every shard's item of
        each name (store.get_consumers)."""
        def counted(*args):
            self.reads[kind] += len(args[0]) * (args[1] if per_name else 1)
            return original(*args)
        return counted

    def _counted_buckets(self, original):
        def counted(level, keys):
            self.reads["minute items" if level == "1m" else "rollup items"] += len(keys)
            return original(level, keys)
        return counted


def listing_requests(bootstrap, sort: str, order: str) -> int:
    """DynamoDB requests of one page of 100 consumers."""
    from botocore.client import BaseClient

    from chalicelib.api import consumers

    deps = bootstrap.current()
    calls = []
    original = BaseClient._make_api_call
    BaseClient._make_api_call = lambda self, op, params: calls.append(op) or original(self, op, params)
    try:
        page = consumers.list_consumers(deps.store, deps.quotas.load(), 1, time.time(), sort, order, 100, None)
    finally:
        BaseClient._make_api_call = original
    assert len(page["consumers"]) == min(100, page["total_count"] or 100)
    return len([c for c in calls if c in ("Query", "BatchGetItem", "GetItem")])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", type=int, default=100)
    parser.add_argument("--consumers", type=int, default=1000)
    parser.add_argument("--per-service", type=int, default=10)
    parser.add_argument("--runs", type=int, help="one-minute runs after the first (default: --write-minutes, a "
                        "whole cycle of CONSUMER_WRITE_MINUTES, so the figures are amortized over it)")
    parser.add_argument("--write-minutes", type=int, default=20, help="CONSUMER_WRITE_MINUTES (20: as in AWS)")
    parser.add_argument("--shards", type=int, default=1, help="SHARD_COUNT: each minute every shard runs as "
                        "its own invocation would (one after the other here); wall and peak are the largest shard's")
    parser.add_argument("--quotas", action="store_true", help=f"every tenth consumer has a quota far from its "
                        f"thresholds (a rule for consumers matching {QUOTA_RULE!r}): judged at every even minute")
    parser.add_argument("--near", action="store_true", help=f"every {NEAR_EVERY}th consumer has its own quota of "
                        f"{NEAR_LIMIT_MINUTES} minutes of its bytes: its thresholds are crossed within the cycle")
    parser.add_argument("--wall-only", action="store_true", help="time the runs without measuring memory or write "
                        "units (tracemalloc and the item sizing slow each run 2-3x) and stop after them")
    parser.add_argument("--spans-only", action="store_true", help="print how many shards a consumer spans in "
                        "this fleet (the consumer items' multiplier) and stop: instant at any size")
    args = parser.parse_args()
    args.runs = args.runs or args.write_minutes
    spans = shards_a_consumer_spans(args.services, args.consumers, args.per_service, args.shards)
    if args.spans_only:
        print(f"{args.services} services x {args.per_service} consumers each over {args.shards} shards: "
              f"a consumer spans {spans:.3f} shards")
        return
    cycle = args.write_minutes * 60
    base = int((time.time() - 3600) // cycle * cycle)  # a multiple of the cycle, an hour ago or more
    series = args.services * args.per_service
    active = min(args.consumers, series)
    t0 = time.monotonic()
    prom = fleet(args.services, args.consumers, args.per_service, base - 600, base + (args.runs + 2) * 60)
    print(f"{args.services} services x {args.per_service} consumers each, {active:,} distinct consumers: "
          f"{series:,} series (built in {time.monotonic() - t0:.1f} s)")
    moto, moto_url = start_moto_server()
    try:
        bootstrap = configure(moto_url, args.write_minutes, args.shards)
        deps = bootstrap.override(prometheus=prom)
        if args.quotas:
            deps.quotas.put_rules({"rules": [{"pattern": QUOTA_RULE, "limit_bytes": 10**15, "applies_to": "consumer"}]})
        if args.near:
            for c, rate in bytes_a_minute(args.services, args.consumers, args.per_service).items():
                if c % NEAR_EVERY == 0:
                    deps.quotas.put(f"customer-{c:06d}", {"limit_bytes": NEAR_LIMIT_MINUTES * rate}, kind="consumer")
        collectors = [deps.collector_for(n) for n in range(args.shards)]
        # The first run: [base - 2 min, base), every consumer written at once. With shards, the
        # catch-all counts the new fleet a batch a run and hands it over; then each fixed shard
        # takes its services over.
        while collectors[0].run(now=base + 31).deferred:
            pass
        for collector in collectors[1:]:
            assert collector.run(now=base + 31).status in ("ok", "idle")
        meters = [] if args.wall_only else [Meter(c.store) for c in {id(c.store): c for c in collectors}.values()]
        shards = f" (each of {args.shards} shards: the slowest, the largest)" if args.shards > 1 else ""
        print(f"  {'run':>3} {'chunk ends':>10} {'wall s':>7} {'peak MB':>8} {'consumer WCU':>12} {'service WCU':>11}{shards}")
        for i in range(args.runs):
            now = base + (i + 1) * 60 + 31
            before = [dict(m.units) for m in meters]
            elapsed = peak = 0.0
            for collector in collectors:  # one invocation each, as concurrent Lambdas would run them
                if not args.wall_only:
                    tracemalloc.start()
                t = time.monotonic()
                report = collector.run(now=now)
                elapsed = max(elapsed, time.monotonic() - t)
                if not args.wall_only:
                    peak = max(peak, tracemalloc.get_traced_memory()[1])
                    tracemalloc.stop()
                assert report.status == "ok", report
            end_minute = (base + (i + 1) * 60) // 60
            parity = (f"{args.write_minutes}-minute" if end_minute % args.write_minutes == 0
                      else "even" if end_minute % 2 == 0 else "odd")
            added = {kind: sum(m.units[kind] - b[kind] for m, b in zip(meters, before)) for kind in ("consumer", "service")}
            measured = ("-", "-", "-") if args.wall_only else (f"{peak / 2**20:.1f}", f"{added['consumer']:,}",
                                                                 f"{added['service']:,}")
            print(f"  {i + 1:>3} {parity:>10} {elapsed:>7.2f} {measured[0]:>8} {measured[1]:>12} {measured[2]:>11}")
        if args.wall_only:
            return
        meter = meters[0]
        for other in meters[1:]:
            for table in (meter.units, meter.reads):
                for kind in table:
                    table[kind] += (other.units if table is meter.units else other.reads)[kind]
            meter.consumer_items += other.consumer_items
            meter.consumer_bytes += other.consumer_bytes
        minutes = args.runs * active
        with_quota = sum(1 for c in range(active) if fnmatch.fnmatchcase(f"customer-{c:06d}", QUOTA_RULE)) if args.quotas else 0
        print(f"  amortized: {meter.units['consumer'] / minutes:.3f} WCU per active consumer-minute for the consumer "
              f"items (budget 0.5), {meter.units['service'] / (args.runs * args.services):.3f} WCU per active "
              f"service-minute for the service's own items")
        if with_quota:
            print(f"    of which consumers with a quota ({with_quota:,}): "
                  f"{meter.units['quota'] / (args.runs * with_quota):.3f} WCU per active consumer-minute; without "
                  f"({active - with_quota:,}): {(meter.units['consumer'] - meter.units['quota']) / (args.runs * (active - with_quota)):.3f}")
        print(f"  read per active consumer-minute: {meter.reads['consumer items'] / minutes:.3f} consumer items; "
              f"per active service-minute: {meter.reads['minute items'] / (args.runs * args.services):.3f} minute items "
              f"and {meter.reads['rollup items'] / (args.runs * args.services):.3f} rollup items "
              f"(read back for the rollups and the consumers)")
        print(f"  consumer items: {meter.consumer_bytes / max(1, meter.consumer_items):.0f} B on average; "
              f"a consumer spans {spans:.3f} shards (an item in each)")
        from chalicelib.collect import consumers

        t = time.monotonic()
        consumers.refresh_rankings(deps.store, deps.quotas.load(), time.time())
        print(f"  ranking {active:,} consumers (every 10 minutes): {time.monotonic() - t:.2f} s")
        for sort, order in (("usage", "desc"), ("percent", "asc"), ("name", "asc")):
            print(f"  GET /v1/consumers?sort={sort}&order={order}&limit=100: "
                  f"{listing_requests(bootstrap, sort, order)} DynamoDB requests")
    finally:
        stop_process(moto)


if __name__ == "__main__":
    main()
