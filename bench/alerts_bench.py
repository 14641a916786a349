"""Fleet-size costs of the overview and of a rules change, on a moto server.

Prints the DynamoDB requests (and items returned) behind one page of GET /v1/services, and the
time, requests and emails of judging a rules change that applies to every service (the alerts
function's work when RULES changes), with how many invocations that takes at the function's
time budget. Run: .venv/bin/python bench/alerts_bench.py --services 10000
"""
from __future__ import annotations

import argparse
import collections
import json
import math
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from localrun.processes import start_moto_server, stop_process  # noqa: E402


class DynamoCalls:
    """Counts PynamoDB's DynamoDB requests by operation, and the items they return."""

    def __init__(self):
        from pynamodb.connection.base import Connection

        self.calls, self.items, self.seconds = collections.Counter(), 0, collections.Counter()
        original = Connection._make_api_call

        def counted(connection, operation_name, operation_kwargs, *args, **kwargs):
            started = time.monotonic()
            answer = original(connection, operation_name, operation_kwargs, *args, **kwargs)
            self.seconds[operation_name] += time.monotonic() - started
            self.calls[operation_name] += 1
            responses = answer.get("Responses")
            self.items += len(answer.get("Items", [])) + (
                sum(len(v) for v in responses.values()) if isinstance(responses, dict) else 0)
            return answer
        Connection._make_api_call = counted

    def take(self):
        calls, items = dict(self.calls), self.items
        self.calls, self.items = collections.Counter(), 0
        return calls, items

    def take_seconds(self):
        seconds, self.seconds = {k: round(v, 1) for k, v in self.seconds.items()}, collections.Counter()
        return seconds


class CountingMailer:
    def __init__(self):
        self.sent = 0

    def send(self, to, subject, text, html):
        self.sent += 1
        return f"bench-{self.sent}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", type=int, default=10_000)
    parser.add_argument("--page", type=int, default=100)
    args = parser.parse_args()
    moto, url = start_moto_server()
    try:
        os.environ.update({"TABLE_NAME": "bench-alerts", "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1",
                           "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_ENDPOINT_URL": url,
                           "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled", "ALERT_FROM": "bench@example.com",
                           "PROMETHEUS_URL": "http://127.0.0.1:9", "STAGE": "dev", "THROTTLE_ENABLED": "false"})
        os.environ.pop("API_KEYS", None)
        from chalice.test import Client

        import app
        from chalicelib import bootstrap
        from chalicelib.collect.checkpoint import Checkpoint, Reading
        from chalicelib.core import tables
        from chalicelib.core.models import SERVICES_PK, ServiceUsage
        from chalicelib.core.periods import period_at

        mailer = CountingMailer()
        deps = bootstrap.override(mailer=mailer)
        tables.ensure_table()
        now = time.time()
        month = period_at("month", now)
        # ten series a service in its checkpoint, as the collector leaves it
        checkpoint = Checkpoint(int(now), {bytes([i]) * 8: Reading(1e12, int(now * 1000)) for i in range(10)}).pack()
        started = time.monotonic()
        # Every service well under the limit but the last ten, which are at 95 %: the rules change
        # judges them all and emails ten.
        limit = 1000 * args.services
        used = [min(i, args.services - 11) * 100 if i < args.services - 10 else limit * 95 // 100
                for i in range(args.services)]
        items = [ServiceUsage(SERVICES_PK, f"svc-{i:05d}", service=f"svc-{i:05d}", first_seen=month.start,
                              last_active=int(now), period_kind="month", period_anchor=1, period_start=month.start,
                              period_end=month.end, ingress=0, egress=used[i], total=used[i], through=int(now),
                              checkpoint=checkpoint, checkpoint_at=int(now)) for i in range(args.services)]
        for offset in range(0, len(items), 1000):
            deps.store.put_services(items[offset:offset + 1000])
        # One rule for the whole fleet; the pattern reads the same as a glob and as a regular expression.
        deps.quotas.put_rules({"rules": [{"pattern": "svc-[0-9][0-9][0-9][0-9][0-9]", "limit_bytes": limit,
                                          "notify": ["ops@example.com"]}]})
        print(f"seeded {args.services} services on the moto server in {time.monotonic() - started:.1f} s")

        meter = DynamoCalls()
        with Client(app.app, stage_name="local") as client:
            client.http.get(f"/v1/services?limit={args.page}")  # warm: the first request builds the parts
            meter.take()
            meter.take_seconds()
            started = time.monotonic()
            answer = client.http.get(f"/v1/services?limit={args.page}")
            elapsed = time.monotonic() - started
        calls, returned = meter.take()
        page_waited = meter.take_seconds()
        page = json.loads(answer.body)
        print(f"\nGET /v1/services?limit={args.page}: {len(page['services'])} rows of {page['total_count']}, "
              f"{sum(calls.values())} DynamoDB requests {dict(calls)}, {returned} items read, {elapsed:.2f} s "
              f"(waiting on DynamoDB: {page_waited})")
        print("  the rows are the service items (read without the collector's checkpoints) and one quota read;\n"
              "  no range query per service: the collector keeps each item in its quota's period")

        processor = deps.alert_processor
        processor.rules_budget_seconds = 10**9  # measure the whole job in one go
        started = time.monotonic()
        processor.reevaluate_rules(now)
        elapsed = time.monotonic() - started
        calls, returned = meter.take()
        waited = meter.take_seconds()
        budget = 20
        print(f"\nrules change over {args.services} services: {elapsed:.1f} s, {sum(calls.values())} DynamoDB requests "
              f"{dict(calls)}, {mailer.sent} emails")
        print(f"  seconds waiting on DynamoDB by operation: {waited} (the rest is our own CPU)")
        print(f"  quotas read once; at the alerts function's {budget} s budget a change takes "
              f"{math.ceil(elapsed / budget)} invocation(s): the stream record, then the sweep once a minute")
    finally:
        stop_process(moto)


if __name__ == "__main__":
    main()
