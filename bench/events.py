#!/usr/bin/env python3
"""Push API benchmark: what 1,000 events cost in DynamoDB writes, and our own CPU for a batch.

    .venv/bin/python bench/events.py
    .venv/bin/python bench/events.py --http --seconds 30 --batch 100   # events per second over HTTP
    .venv/bin/python bench/events.py --import 100000 --keep-alive      # an import: time, memory, WCU
    .venv/bin/python bench/events.py --keep-alive --runs 3             # connections kept, as DynamoDB does
    .venv/bin/python bench/events.py --claims --keep-alive             # 1,000 claims alone: request building vs HTTP

Runs the real push path (chalicelib/api/events.py -> core/pushed.py) against a moto server
*process*, so this process's CPU time (time.process_time) is ours alone: JSON parsing, schema
validation, claims, grouping, botocore's request building; moto's work is in the other process.

Write units are **computed from item sizes** with DynamoDB's sizing rules (moto reports no
consumed capacity for transactions): every write request is recorded as it is dispatched; a put
counts its item, an update or a delete the stored item's size (read back after the run, so an
update is counted at its final size: a slight over-estimate), 1 KB per unit rounded up per item,
and twice that inside TransactWriteItems. A conditional put that fails (a duplicate) is charged
like a successful one, as DynamoDB does.

Scenarios, each 1,000 events in one batch:
- narrow: one service, one minute, one route (the cheapest bucket work);
- spread: 10 services x 10 minutes x 20 routes x 3 consumers;
- replay: the spread batch sent again (every event a duplicate).

``--http``: events per second one API process sustains: `chalice local` (one process, as one
warm Lambda serves one request at a time) on a moto server, fed batches of ``--batch`` fresh
events (5 services, the last two minutes, as a live producer sends them) back to back for
``--seconds``; the wall time includes moto's own work.
"""
from __future__ import annotations

import json
import math
import os
import sys
import threading
import time
from collections import defaultdict

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.collector_bench import item_size  # noqa: E402  (DynamoDB's sizing rules)
from localrun.processes import free_port, start_moto_server, start_server, stop_process  # noqa: E402

NOW = 1_796_385_600 + 12 * 3600 + 1800  # 2026-12-04T12:30Z (the benchmark owns its clock)
EVENT_TYPE = "dev.bandwidth-meter.usage"


def start_moto(keep_alive: bool, transaction_backup: bool = True):
    """The moto server process: werkzeug's, which closes each connection after its answer, or
    (``keep_alive``) one that keeps connections open as DynamoDB does (bench/moto_keepalive.py),
    optionally without its copy of the table in each transaction."""
    if not keep_alive:
        return start_moto_server()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "moto_keepalive.py")
    flags = [] if transaction_backup else ["--no-transaction-backup"]
    return start_server([sys.executable, script, "-H", "127.0.0.1", "-p", str(port), *flags], f"{url}/moto-api/",
                        "the moto server (keep-alive)", timeout=30), url


def stored_sizes(keys) -> dict:
    """The size of the item stored under each key now (1: none): what an update of it is charged.
    Read 100 keys a request."""
    from chalicelib.core.models import UsageBucket

    table = str(UsageBucket.Meta.table_name)
    connection = UsageBucket._get_connection().connection
    sizes = {}
    keys = list(keys)
    for start in range(0, len(keys), 100):
        part = keys[start:start + 100]
        wanted = {table: {"Keys": [{"pk": {"S": pk}, "sk": {"S": sk}} for pk, sk in part]}}
        while wanted:
            answer = connection.dispatch("BatchGetItem", {"RequestItems": wanted})
            for found in answer.get("Responses", {}).get(table, []):
                sizes[_key(found)] = item_size(found)
            wanted = answer.get("UnprocessedKeys") or {}
    return {key: sizes.get(key, 1) for key in keys}


def units(size: int) -> int:
    return max(1, math.ceil(size / 1024))


class WriteRecorder:
    """Every write request the push path dispatches, summed as it goes (a million-event import
    makes millions): a put's units by its item at once; updates and deletes counted per key, and
    charged at the end at the size stored then."""

    def __init__(self):
        self.put_units = defaultdict(int)
        self.changes = defaultdict(int)  # (kind, key, transactional) -> how many updates or deletes
        self.lock = threading.Lock()

    def __enter__(self):
        from pynamodb.connection.base import Connection

        self.real = real = Connection.dispatch
        recorder = self

        def dispatch(connection, operation, kwargs):
            recorder.record(operation, kwargs)
            return real(connection, operation, kwargs)

        Connection.dispatch = dispatch
        # The marker claims go through aiodynamo (chalicelib/core/claims.py)
        from aiodynamo.client import Client

        self.real_async = real_async = Client.send_request

        async def send_request(client, *, action, payload):
            recorder.record(action, payload)
            return await real_async(client, action=action, payload=payload)

        Client.send_request = send_request
        return self

    def __exit__(self, *exc):
        from aiodynamo.client import Client
        from pynamodb.connection.base import Connection

        Connection.dispatch = self.real
        Client.send_request = self.real_async

    def record(self, operation, kwargs):
        with self.lock:
            if operation == "PutItem":
                self._put(kwargs["Item"], False)
            elif operation in ("UpdateItem", "DeleteItem"):
                self.changes[(_kind(kwargs["Key"]), _key(kwargs["Key"]), False)] += 1
            elif operation == "TransactWriteItems":
                for entry in kwargs["TransactItems"]:
                    (verb, body), = entry.items()
                    if verb == "Put":
                        self._put(body["Item"], True)
                    elif verb in ("Update", "Delete"):
                        self.changes[(_kind(body["Key"]), _key(body["Key"]), True)] += 1

    def _put(self, item, transactional):
        self.put_units[_kind(item)] += units(item_size(item)) * (2 if transactional else 1)

    def units(self) -> dict:
        """Write units by kind: a put by its item, an update or delete by the item stored now."""
        by_kind = defaultdict(int, self.put_units)
        sizes = stored_sizes({key for _, key, _ in self.changes})
        for (kind, key, transactional), times in self.changes.items():
            by_kind[kind] += units(sizes[key]) * (2 if transactional else 1) * times
        return dict(by_kind)


def _key(raw):
    return raw["pk"]["S"], raw["sk"]["S"]


def _kind(raw):
    pk, sk = _key(raw)
    if pk.startswith("EVENT#"):
        return "event markers (idempotency)"
    if pk == "PUSH_PENDING":
        return "batch record (put + delete)"
    if pk.startswith("PUSHED#"):
        return "applied-group markers"
    if sk.startswith("pushed#"):
        return "pushed buckets (5 levels)"
    if pk == "SERVICES":
        return "service touch (alerts)"
    return pk


def events(n, services, minutes, routes, consumers, tag):
    result = []
    for i in range(n):
        minute = NOW - 3600 + 60 * (i % minutes)
        result.append({"specversion": "1.0", "id": f"{tag}-{i}", "source": "/bench/edge-logs", "type": EVENT_TYPE,
                       "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(minute + 7)),
                       "data": {"service": f"svc-{i % services:02d}", "route": f"/route-{i % routes}",
                                "consumer": f"customer-{i % consumers}", "direction": ("egress", "ingress")[i % 2],
                                "bytes": 1000 + i}})
    return result


def over_http(seconds: float, batch_size: int) -> int:
    import tempfile
    from pathlib import Path

    import requests

    from localrun.processes import free_port, start_chalice_local

    moto, url = start_moto_server()
    api = None
    try:
        env = {"TABLE_NAME": "bench-events-http", "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1",
               "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_ENDPOINT_URL": url,
               "ALERT_FROM": "bench@example.com", "PROMETHEUS_URL": "http://127.0.0.1:9", "STAGE": "dev",
               "API_KEYS": "bench-ingest-key-0123:ingest", "THROTTLE_ENABLED": "false",
               "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled"}
        os.environ.update(env)
        from chalicelib import bootstrap
        from chalicelib.core import tables

        bootstrap.override()
        tables.ensure_table()
        log = Path(tempfile.mkdtemp(prefix="bench-events-")) / "chalice-local.log"
        api, api_url = start_chalice_local(free_port(), {**os.environ, **env}, log)
        sent = accepted = requests_made = 0
        started = time.perf_counter()
        while time.perf_counter() - started < seconds:
            batch = []
            for i in range(batch_size):
                at = time.time() - 60 * ((sent + i) % 2)  # as a producer pushes: the last two minutes
                batch.append({"specversion": "1.0", "id": f"h-{sent + i}", "source": "/bench/http", "type": EVENT_TYPE,
                              "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at)),
                              "data": {"service": f"svc-{(sent + i) % 5}", "direction": "egress", "bytes": 100}})
            answer = requests.post(f"{api_url}/v1/events", data=json.dumps(batch), timeout=120, headers={
                "x-api-key": "bench-ingest-key-0123", "Content-Type": "application/cloudevents-batch+json"})
            answer.raise_for_status()
            accepted += answer.json()["accepted"]
            sent += batch_size
            requests_made += 1
        elapsed = time.perf_counter() - started
        print(f"over HTTP (chalice local, one process, on a moto server): {accepted} events accepted in "
              f"{requests_made} requests of {batch_size} in {elapsed:.1f} s: {accepted / elapsed:.0f} events/s")
        return 0
    finally:
        if api is not None:
            stop_process(api)
        stop_process(moto)


def app_on(url: str, table: str):
    """The app's parts on the moto server at ``url``, in table ``table`` (created), its clock at NOW."""
    os.environ.update({"TABLE_NAME": table, "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1",
                       "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_ENDPOINT_URL": url,
                       "ALERT_FROM": "bench@example.com", "PROMETHEUS_URL": "http://127.0.0.1:9",
                       "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled"})
    from chalicelib import bootstrap
    from chalicelib.core import tables

    deps = bootstrap.override(clock=lambda: NOW)
    tables.ensure_table()
    return deps


def import_batch(number: int, n: int, minutes: int, interleaved: bool = False) -> list:
    """Batch ``number`` (1,000 events) of an ``n``-event backfill over the ``minutes`` minutes
    before an hour ago: 5 services, 20 routes, 3 consumers, event i carrying 1000 + i bytes. In
    time order, as one access log gives it (each batch a stretch of time), or ``interleaved``
    (event i at the i-th minute back, modulo ``minutes``: each batch spans the whole stretch, as
    when several logs are sent in turn), which makes every batch write every bucket again."""
    batch = []
    for i in range(number * 1000, min(n, (number + 1) * 1000)):
        back = i % minutes if interleaved else minutes - 1 - i * minutes // n
        batch.append({"specversion": "1.0", "id": f"imp-{i}", "source": "/bench/edge-logs", "type": EVENT_TYPE,
                      "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(NOW - 3600 - 60 * back)),
                      "data": {"service": f"svc-{i % 5:02d}", "route": f"/route-{i % 20}",
                               "consumer": f"customer-{i % 3}", "direction": ("egress", "ingress")[i % 2],
                               "bytes": 1000 + i}})
    return batch


def an_import(n: int, keep_alive: bool = False, interleaved: bool = False) -> int:
    """Register, send ``n`` events in batches of 1,000, commit: wall and our CPU per step, the
    process's peak memory (resident set: what a Lambda's memory size bounds; the batches are made
    one at a time, so it is the push path's, not the benchmark's), write units (computed as
    above), and a check that the committed bytes are exactly the events'. tracemalloc is not
    used: it slows Python several times over, which the CPU figure would count.

    With ``keep_alive`` the moto server keeps no backup of the table in a transaction
    (bench/moto_keepalive.py --no-transaction-backup): with one, moto cannot go past a few
    thousand events. The check of the totals shows no transaction was left partly applied."""
    import resource

    from pynamodb import settings as pynamodb_settings

    from chalicelib.core import claims
    from chalicelib.core.errors import StoreError

    # moto copies the table in each transaction: past a few thousand items one takes longer than
    # PynamoDB's 30 s read timeout, which would retry it (the figures would count it twice). With
    # millions of items, its server also stops for seconds at a time (its garbage collection).
    pynamodb_settings.default_settings_dict["read_timeout_seconds"] = 900
    claims.REQUEST_TIMEOUT_SECONDS = 900

    moto, url = start_moto(keep_alive, transaction_backup=not keep_alive)
    try:
        deps = app_on(url, "bench-import")
        from chalicelib.api.events import put_import_batch
        from chalicelib.core.timeutil import DAY, floor

        minutes = min(n // 5, 30 * 24 * 60)
        batches = -(-n // 1000)
        with WriteRecorder() as recorder:
            cpu, wall = time.process_time(), time.perf_counter()
            import_id = deps.imports.register(NOW)["id"]
            for number in range(batches):
                put_import_batch(deps.imports, import_id, str(number), json.dumps(import_batch(number, n, minutes, interleaved)).encode(),
                                 NOW, 35)
                if number % 100 == 99:
                    print(f"  sent {number + 1} batches, {time.perf_counter() - wall:.0f} s", file=sys.stderr, flush=True)
            send_cpu, send_wall = time.process_time() - cpu, time.perf_counter() - wall
            cpu, wall = time.process_time(), time.perf_counter()
            calls = failed = 0
            while True:
                calls += 1
                try:  # a call that fails is made again: it resumes after the last batch applied
                    job = deps.imports.commit(import_id, NOW)
                except StoreError as e:
                    failed += 1
                    print(f"  commit call {calls} failed: {e}", file=sys.stderr, flush=True)
                    continue
                print(f"  commit call {calls}: {job['status']}, {time.perf_counter() - wall:.0f} s", file=sys.stderr,
                      flush=True)
                if job["status"] == "committed":
                    break
            commit_cpu, commit_wall = time.process_time() - cpu, time.perf_counter() - wall
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
        by_kind = recorder.units()
        first, end = floor(NOW - 3600 - 60 * minutes, DAY), floor(NOW, DAY) + DAY
        counted = sum(b.ingress + b.egress for service in range(5)
                      for b in deps.store.pushed.buckets(f"svc-{service:02d}", "1d", first, end))
        expected = sum(1000 + i for i in range(n))
        print(f"import of {n} events ({batches} batches; 5 services over {minutes} minutes, "
              f"{'interleaved' if interleaved else 'in time order'}): {job['result']}")
        print(f"  sending: our CPU {send_cpu:.1f} s, wall {send_wall:.1f} s")
        print(f"  commit ({calls} calls, {failed} failed and made again): our CPU {commit_cpu:.1f} s, wall {commit_wall:.1f} s, "
              f"peak memory (resident, whole process) {peak / 2**20:.0f} MiB")
        total = sum(by_kind.values())
        print(f"  write units: {total} ({total * 1000 / n:.0f} per 1,000 events: "
              f"{', '.join(f'{k}: {v}' for k, v in sorted(by_kind.items()) if not k.startswith('IMPORT#'))}, "
              f"the import's batches: {sum(v for k, v in by_kind.items() if k.startswith('IMPORT#'))})")
        print(f"  bytes committed {counted:,} of the events' {expected:,}: {'exact' if counted == expected else 'WRONG'}")
        return 0 if counted == expected else 1
    finally:
        stop_process(moto)


def main() -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--http", action="store_true", help="events per second over HTTP instead")
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--keep-alive", action="store_true",
                        help="a moto server that keeps connections alive, as DynamoDB does (bench/moto_keepalive.py)")
    parser.add_argument("--claims", action="store_true", help="1,000 marker claims alone: now and before, "
                        "with and without the network")
    parser.add_argument("--runs", type=int, default=1, help="the scenarios this many times (fresh events each)")
    parser.add_argument("--import", dest="import_events", type=int, help="an import of this many events instead")
    parser.add_argument("--interleaved", action="store_true", help="the import's batches each span the whole "
                        "stretch of time (several logs sent in turn) instead of following each other")
    args = parser.parse_args()
    if args.claims:
        return claims_only(args.keep_alive, args.runs)
    if args.import_events:
        return an_import(args.import_events, args.keep_alive, args.interleaved)
    if args.http:
        return over_http(args.seconds, args.batch)
    moto, url = start_moto(args.keep_alive)
    try:
        deps = app_on(url, "bench-events")
        from chalicelib.api.events import post_events

        pushed = deps.store.pushed

        # Warm up: clients made, modules imported (a warm Lambda's state)
        post_events(pushed, json.dumps(events(5, 1, 1, 1, 1, "warm")).encode(), "application/cloudevents-batch+json",
                    NOW, 35)
        print("1,000 events in one batch (application/cloudevents-batch+json), moto server process "
              f"({'connections kept alive' if args.keep_alive else 'a new connection per request'}), "
              f"load average {os.getloadavg()[0]:.1f}\n")
        for run in range(args.runs):
            scenarios = [("narrow: 1 service, 1 minute, 1 route", events(1000, 1, 1, 1, 1, f"narrow{run}")),
                         ("spread: 10 services x 10 minutes x 20 routes x 3 consumers",
                          events(1000, 10, 10, 20, 3, f"spread{run}"))]
            scenarios.append(("replay: the spread batch again (all duplicates)", scenarios[1][1]))
            for name, batch in scenarios:
                body = json.dumps(batch).encode()
                with WriteRecorder() as recorder, Steps() as steps:
                    cpu, wall = time.process_time(), time.perf_counter()
                    answer = post_events(pushed, body, "application/cloudevents-batch+json", NOW, 35)
                    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
                by_kind = recorder.units()
                total = sum(by_kind.values())
                print(f"{name}: accepted {answer['accepted']}, duplicate {answer['duplicate']}, "
                      f"body {len(body) / 1024:.0f} KiB")
                print(f"  our CPU {cpu:.2f} s ({steps}), wall {wall:.2f} s (wall includes moto)")
                print(f"  write units per 1,000 events: {total}  "
                      f"({', '.join(f'{k}: {v}' for k, v in sorted(by_kind.items()))})")
        return 0
    finally:
        stop_process(moto)


def claims_only(keep_alive: bool, runs: int) -> int:
    """Our CPU for 1,000 marker claims alone, 16 in flight: through aiodynamo on aiohttp
    (PushedUsage._claim, chalicelib/core/claims.py) against botocore's PutItem from 16 threads (as
    claims were made before), each with and without the network: "stubbed" answers every request
    before it is sent (aiodynamo: the HTTP layer; botocore: its before-send event), so what remains
    is building, signing and parsing; the difference is the HTTP exchange."""
    from datetime import datetime, timezone

    moto, url = start_moto(keep_alive)
    try:
        os.environ.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                           "AWS_DEFAULT_REGION": "us-east-1"})
        from aiodynamo.http.types import Response
        from botocore.awsrequest import AWSResponse
        from botocore.exceptions import ClientError
        from pynamodb.connection import Connection

        from chalicelib.core import claims, models, tables
        from chalicelib.core.events import UsageEvent
        from chalicelib.core.models import EventMarker, event_marker_key
        from chalicelib.core.pushed import PushedUsage

        models.bind("bench-claims", "us-east-1", url)
        tables.ensure_table()
        pushed = PushedUsage()
        expires = str(int(datetime.fromtimestamp(NOW + 36 * 86400, tz=timezone.utc).timestamp()))
        botocore_connection = Connection(region="us-east-1", host=url, max_pool_connections=16)
        table = str(EventMarker.Meta.table_name)

        def by_botocore(batch, batch_events):  # what _claim did before: a PutItem each, 16 threads
            from concurrent.futures import ThreadPoolExecutor

            def claim(event):
                pk, sk = event_marker_key(event.digest)
                try:
                    botocore_connection.dispatch("PutItem", {
                        "TableName": table, "Item": {"pk": {"S": pk}, "sk": {"S": sk}, "batch": {"S": batch},
                                                     "expires_at": {"N": expires}},
                        "ConditionExpression": "attribute_not_exists(pk) OR #batch = :batch",
                        "ExpressionAttributeNames": {"#batch": "batch"},
                        "ExpressionAttributeValues": {":batch": {"S": batch}}})
                except ClientError:
                    pass
            with ThreadPoolExecutor(16) as pool:
                list(pool.map(claim, batch_events))

        class Canned:
            def stream(self, **_):
                yield b"{}"

        def canned(request, **_):
            return AWSResponse(request.url, 200, {"content-type": "application/x-amz-json-1.0"}, Canned())

        async def canned_async(request):
            return Response(200, b"{}")

        pushed._claim("warm", [UsageEvent("/bench", "warm", "svc", "egress", 1, NOW)], NOW)
        client = botocore_connection.client
        print(f"1,000 marker claims, 16 in flight, load average {os.getloadavg()[0]:.1f} "
              f"({'connections kept alive' if keep_alive else 'a new connection per request'})")
        for run in range(runs):
            for stubbed in (False, True):
                for name, claim in (("aiodynamo on aiohttp (now)", lambda b, e: pushed._claim(b, e, NOW)),
                                    ("botocore, 16 threads (before)", by_botocore)):
                    batch_events = [UsageEvent("/bench", f"{run}-{stubbed}-{name}-{i}", "svc", "egress", 1, NOW)
                                    for i in range(1000)]
                    if stubbed:
                        client.meta.events.register_first("before-send.dynamodb.*", canned)
                        claims.transport = canned_async
                    cpu, wall = time.process_time(), time.perf_counter()
                    claim(f"b-{run}", batch_events)
                    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
                    client.meta.events.unregister("before-send.dynamodb.*", canned)
                    claims.transport = None
                    print(f"  {name:30s} {'stubbed (no network)' if stubbed else 'over HTTP':21s} "
                          f"our CPU {cpu:.2f} s, wall {wall:.2f} s")
        return 0
    finally:
        stop_process(moto)


class Steps:
    """Our CPU per step of a push (process time, all threads, while the step runs) and the TCP
    connections opened: judging (parse + schema), claiming the markers, applying the groups."""

    STEPS = ("judge", "claim", "apply")

    def __enter__(self):
        import socket

        from chalicelib.api import events as api_events
        from chalicelib.core.pushed import PushedUsage

        self.cpu = defaultdict(float)
        self.restore = []
        for step, owner, name in (("judge", api_events, "judge_all"), ("claim", PushedUsage, "_claim"),
                                  ("apply", PushedUsage, "_apply_group")):
            real = getattr(owner, name)
            self.restore.append((owner, name, real))
            setattr(owner, name, self._timed(step, real))
        self.connects = 0
        self.real_connect = real_connect = socket.socket.connect
        steps = self

        def connect(sock, *a):
            steps.connects += 1
            return real_connect(sock, *a)

        socket.socket.connect = connect
        return self

    def _timed(self, step, real):
        def timed(*a, **k):
            start = time.process_time()
            try:
                return real(*a, **k)
            finally:
                self.cpu[step] += time.process_time() - start
        return timed

    def __exit__(self, *exc):
        import socket

        for owner, name, real in self.restore:
            setattr(owner, name, real)
        socket.socket.connect = self.real_connect

    def __str__(self):
        return ", ".join(f"{step} {self.cpu[step]:.2f}" for step in self.STEPS) + f"; {self.connects} connections opened"


if __name__ == "__main__":
    sys.exit(main())
