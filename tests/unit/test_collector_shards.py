"""Sharded collection counts exactly what unsharded collection counts (moto in-process, an
in-memory Prometheus): the same minute items, rollups and period totals with N=1 and N=4,
including services that move from the catch-all shard to a fixed one in the middle of a period."""
import json

import pytest
from moto.core import DEFAULT_ACCOUNT_ID
from moto.dynamodb.models import dynamodb_backends

from chalicelib import bootstrap
from chalicelib.collect import shards
from chalicelib.core import tables
from chalicelib.core.models import SERVICES_PK, ServiceUsage
from tests.fakes.prometheus import FakePrometheus

DAY0 = 1_796_083_200  # 2026-12-01T00:00Z
T0 = DAY0 - 3600  # the month's last hour: the period rolls over during the test


def kong3(service, route, direction, instance="node-a:8001"):
    return {"__name__": "kong_bandwidth_bytes", "service": service, "route": route, "direction": direction,
            "consumer": "", "workspace": "default", "instance": instance, "job": "kong"}


# Names that need escaping in a PromQL regex, and one that is a prefix of another.
FLEET = ["pay", "pay.v2", "search (beta)", 'quote"d|pipe', "cdn", "a+b", "ünïcode", "x"]


def traffic(prom, born_late="late-service"):
    """Deterministic counters: every service on two nodes, a reset, and one service born
    40 minutes in (it first shows up in the catch-all shard, which then hands it over)."""
    for n, service in enumerate(FLEET):
        for direction in ("ingress", "egress"):
            for node in ("node-a:8001", "node-b:8001"):
                step = 10 + n * 7 + (3 if direction == "egress" else 0) + (1 if node == "node-b:8001" else 0)
                samples, total = [], 1_000_000 * (n + 1)
                for i, t in enumerate(range(T0 - 900, T0 + 7200, 15)):
                    total = 5 if (node == "node-b:8001" and t == T0 + 1800) else total + step * (1 + i % 3)
                    samples.append((t, total))
                prom.add(kong3(service, f"r{n % 3}", direction, node), samples)
    prom.add(kong3(born_late, "r", "egress"), [(t, (t - T0 - 2400) * 3 + 77) for t in range(T0 + 2400, T0 + 7200, 15)])


def use_table(config, name):
    config.set(TABLE_NAME=name)
    config.start()


def collect(config, prom, shard_count, schedule, table):
    """Run the shards at each instant of ``schedule`` (shard order given per instant)."""
    config.set(SHARD_COUNT=shard_count)
    use_table(config, table)
    deps = config.start(prometheus=prom)
    tables.ensure_table()
    for now, order in schedule:
        for shard in order:
            deps.collector_for(shard).run(now=now)
    return usage_snapshot()


def usage_snapshot():
    """Every stored bucket (its totals and routes) and every service's period figures, read from
    moto's memory: the items a Scan would return, without moto serializing thousands of them into
    responses, where these tests spent half their time."""
    table = dynamodb_backends[DEFAULT_ACCOUNT_ID][bootstrap.current().settings.region].get_table(
        bootstrap.current().settings.table_name)
    buckets, services = [], []
    for item in table.all_items():
        raw = item.to_json()["Attributes"]
        pk, sk = raw["pk"]["S"], raw["sk"]["S"]
        if pk.startswith("USAGE#"):
            routes = json.dumps(raw.get("routes", {}).get("M") or {}, sort_keys=True)
            buckets.append((pk, sk, _number(raw, "ingress"), _number(raw, "egress"), routes))
        elif pk == SERVICES_PK:
            services.append((raw["service"]["S"], *(_number(raw, name) for name in (
                "period_start", "ingress", "egress", "total", "first_seen", "last_active"))))
    return sorted(buckets), sorted(services)


def _number(raw, name):
    return int(float(raw[name]["N"]))


@pytest.fixture
def prom(aws, config):
    config.set(COLLECT_LAG_SECONDS=30, INITIAL_BACKFILL_MINUTES=60, COLLECT_TRAFFIC_STATS="false")
    fake = FakePrometheus()
    traffic(fake)
    return fake


def every(minutes, start, end):
    return [start + m * 60 for m in range(0, (end - start) // 60 + 1, minutes)]


@pytest.mark.parametrize("group, batch", [(shards.SERVICE_GROUP, 1000), (3, 1000), (shards.SERVICE_GROUP, 3)])
def test_four_shards_count_what_one_collector_counts(prom, config, monkeypatch, group, batch):
    from chalicelib.collect import plan

    monkeypatch.setattr(shards, "SERVICE_GROUP", group)  # 3: every shard's services take several queries
    # 3: the catch-all meets more new services than it counts in one run, and hands them over
    # a batch a run, counting the same window again for the rest.
    monkeypatch.setattr(plan, "CATCH_ALL_BATCH", batch)
    instants = every(10, T0 + 600 + 31, T0 + 6600 + 31)
    unsharded = collect(config, prom, 1, [(t, [0]) for t in instants], "unsharded")
    sharded = collect(config, prom, 4, [(t, [0, 1, 2, 3]) for t in instants], "sharded")
    assert sharded == unsharded
    assert any(service == "late-service" for service, *_ in unsharded[1])


def test_a_fleet_new_all_at_once_is_handed_over_a_bounded_batch_a_run(prom, config, monkeypatch):
    """A first deployment: the catch-all counts 3 services a run (of 8), hands them over and runs
    the same window again for the rest; its watermark moves once none is left."""
    from chalicelib.collect import plan

    monkeypatch.setattr(plan, "CATCH_ALL_BATCH", 3)
    config.set(INITIAL_BACKFILL_MINUTES=0)
    collect(config, prom, 4, [], "sharded")
    deps = bootstrap.current()
    reports = [deps.collector_for(0).run(now=T0 + 600 + 31 + 60 * n) for n in range(4)]
    assert [r.status for r in reports] == ["idle", "ok", "ok", "ok"]  # the first only sets the watermark
    assert [r.deferred for r in reports] == [0, 5, 2, 0]
    assert [r.minutes for r in reports] == [0, 0, 0, 3]  # the last collects the three minutes since
    assert shards.assigned_names(deps.store.assignments(4)) == set(FLEET)


def test_the_status_says_how_many_new_services_wait_for_the_catch_all(prom, config, monkeypatch):
    from chalicelib.api.status import collector_status
    from chalicelib.collect import plan

    monkeypatch.setattr(plan, "CATCH_ALL_BATCH", 3)
    config.set(INITIAL_BACKFILL_MINUTES=0)
    collect(config, prom, 4, [], "sharded")
    deps = bootstrap.current()
    waiting = []
    for n in range(4):
        deps.collector_for(0).run(now=T0 + 600 + 31 + 60 * n)
        status = collector_status(deps.store.state(), deps.settings, T0 + 700 + 60 * n, deps.store.states(4))
        waiting.append((status["services_waiting"], status["shards"][0]["services_waiting"]))
    assert waiting == [(0, 0), (5, 5), (2, 2), (0, 0)]


def test_fixed_shards_running_before_the_catch_all_still_count_exactly(prom, config):
    """A fixed shard that passed the hand-over minute counts the newcomer's minutes since then."""
    instants = every(1, T0 + 2300 + 31, T0 + 3000 + 31)
    unsharded = collect(config, prom, 1, [(t, [0]) for t in instants], "unsharded")
    sharded = collect(config, prom, 4, [(t, [3, 2, 1, 0]) for t in instants], "sharded")
    assert sharded == unsharded


def test_a_shard_that_was_down_catches_up_from_its_watermark(prom, config):
    instants = every(3, T0 + 600 + 31, T0 + 4200 + 31)
    unsharded = collect(config, prom, 1, [(t, [0]) for t in instants], "unsharded")
    # Shard 2 misses half an hour (its lease elsewhere, a failed invoke); shard 0 runs late once.
    schedule = [(t, [s for s in (1, 2, 3, 0) if not (s == 2 and T0 + 1800 < t < T0 + 3600)]) for t in instants]
    sharded = collect(config, prom, 4, schedule, "sharded")
    assert sharded == unsharded


def test_the_moved_service_is_owned_by_one_fixed_shard_and_excluded_from_the_catch_all(prom, config):
    collect(config, prom, 4, [(t, [0, 1, 2, 3]) for t in every(1, T0 + 2400 + 31, T0 + 2520 + 31)], "sharded")
    store = bootstrap.current().store
    assignments = store.assignments(4)
    owners = [shard for shard, item in assignments.items() if "late-service" in (item.services or ())]
    assert owners == [shards.shard_of("late-service", 4)]
    assert all(not item.incoming for item in assignments.values())
    assert int(store.get_service("late-service").shard) == owners[0]
    owned = set().union(*(item.services or set() for item in assignments.values()))
    assert owned == set(FLEET) | {"late-service"}


def test_the_catch_all_reads_only_unassigned_services(prom, config):
    collect(config, prom, 4, [(T0 + 600 + 31, [0])], "sharded")  # hands every service over
    deps = bootstrap.current()
    seen = []
    original = prom.raw_samples
    prom.raw_samples = lambda selector, start, end: seen.append(selector) or original(selector, start, end)
    report = deps.collector_for(0).run(now=T0 + 660 + 31)
    assert report.series_seen == 0
    assert seen == ['{__name__=~"kong_bandwidth|kong_bandwidth_bytes",service=""}']  # only unmatched traffic


def test_turning_sharding_on_and_lowering_the_shard_count_keep_the_totals(prom, config):
    """SHARD_COUNT 1 -> 4 -> 2 on a running table: the catch-all loads the services counted
    before (their checkpoints) by name, and those of removed shards come back to it and are
    handed over again, so the totals are still what one collector counts."""
    phases = [(1, every(5, T0 + 600 + 31, T0 + 1800 + 31)), (4, every(5, T0 + 1860 + 31, T0 + 3600 + 31)),
              (2, every(5, T0 + 3660 + 31, T0 + 6600 + 31))]
    unsharded = collect(config, prom, 1, [(t, [0]) for _, instants in phases for t in instants], "unsharded")
    for count, instants in phases:
        sharded = collect(config, prom, count, [(t, list(range(count))) for t in instants], "changing")
    assert sharded == unsharded
    owners = bootstrap.current().store.assignments(2)[1].services
    assert set(owners) == set(FLEET) | {"late-service"}  # shards 2 and 3 gave theirs back to shard 1


def test_the_catch_all_loads_only_the_services_prometheus_names(prom, config, monkeypatch):
    """A minute of the catch-all costs what it counts, not the size of the table: it never
    reads the services' partition whole."""
    collect(config, prom, 4, [(T0 + 600 + 31, [0, 1, 2, 3])], "sharded")  # every service handed over
    deps = bootstrap.current()
    loaded, queried = [], []
    get_services = deps.store.get_services
    deps.store.get_services = lambda names: loaded.append(set(names)) or get_services(names)
    query = ServiceUsage.query
    monkeypatch.setattr(ServiceUsage, "query", lambda *a, **k: queried.append(a) or query(*a, **k))
    deps.collector_for(0).run(now=T0 + 660 + 31)
    assert not queried and loaded == [{"(unmatched)"}]


def test_no_query_selects_more_than_a_group_of_services(prom, config, monkeypatch):
    monkeypatch.setattr(shards, "SERVICE_GROUP", 2)
    seen = []
    original = prom.raw_samples
    prom.raw_samples = lambda selector, start, end: seen.append(selector) or original(selector, start, end)
    collect(config, prom, 3, [(T0 + 600 + 31, [0, 1, 2]), (T0 + 660 + 31, [0, 1, 2])], "sharded")
    named = [s for s in seen if "service=~" in s]
    assert named and all(len({labels["service"] for labels, _ in prom._matching(s)}) <= 2 for s in named)
    assert not [s for s in seen if "service" not in s]  # none reads the whole fleet


def test_one_shard_is_the_default_and_sends_the_unsharded_selector(prom, config):
    seen = []
    original = prom.raw_samples
    prom.raw_samples = lambda selector, start, end: seen.append(selector) or original(selector, start, end)
    collect(config, prom, 1, [(T0 + 600 + 31, [0])], "unsharded")
    assert seen and set(seen) == {'{__name__=~"kong_bandwidth|kong_bandwidth_bytes"}'}
    assert bootstrap.current().settings.shard_count == 1


def test_status_shows_every_shard_and_the_slowest_watermark(prom, config):
    from chalicelib.api.status import collector_status

    collect(config, prom, 4, [(T0 + 600 + 31, [0, 1, 2, 3]), (T0 + 900 + 31, [0, 1, 3])], "sharded")
    deps = bootstrap.current()
    status = collector_status(deps.store.state(), deps.settings, T0 + 960, deps.store.states(4))
    assert [one["shard"] for one in status["shards"]] == [0, 1, 2, 3]
    assert status["shards"][2]["watermark"] == "2026-11-30T23:10:00Z"
    assert status["watermark"] == "2026-11-30T23:10:00Z"  # shard 2 is behind: the whole fleet is not later
    assert status["series_seen"] == sum(one["series_seen"] for one in status["shards"])


def test_the_schedule_fans_out_one_asynchronous_invoke_per_shard(aws, config):
    import boto3
    from botocore.stub import Stubber

    import app
    from localrun.runtime import scheduled_event

    config.set(SHARD_COUNT=3, COLLECT_SHARD_FUNCTION="bandwidth-meter-prod-collect_shard")
    client = boto3.client("lambda", region_name="us-east-1")
    stub = Stubber(client)
    for shard in range(3):
        stub.add_response("invoke", {"StatusCode": 202},
                          {"FunctionName": "bandwidth-meter-prod-collect_shard", "InvocationType": "Event",
                           "Payload": f'{{"shard": {shard}}}'.encode()})
    from chalicelib.collect.fanout import LambdaShardInvoker

    config.start(shard_invoker=LambdaShardInvoker(client, "bandwidth-meter-prod-collect_shard"))
    with stub:
        assert app.collect(scheduled_event(), None) == {"status": "fanned_out", "shards": [0, 1, 2]}
        stub.assert_no_pending_responses()


@pytest.mark.parametrize("value, message", [("0", "at least 1"), ("65", "at most 64"), ("1000000", "at most 64"),
                                            ("eight", "an integer")])
def test_a_shard_count_out_of_bounds_is_refused_before_anything_runs(value, message):
    """Each shard is an invocation a minute: a typo must not fan out to thousands."""
    from chalicelib.core.settings import ConfigError, from_env

    with pytest.raises(ConfigError, match=f"SHARD_COUNT must be {message}"):
        from_env({"TABLE_NAME": "t", "AWS_REGION": "us-east-1", "SHARD_COUNT": value})


def test_a_worker_event_naming_no_shard_is_refused(aws, config):
    import app
    from chalicelib.collect.shards import ShardEventError

    config.set(SHARD_COUNT=2)
    config.start()
    with pytest.raises(ShardEventError):
        app.collect_shard({"shard": 2}, None)


def test_parallel_batch_writes_store_every_item(aws, config):
    from chalicelib.core.usage import BucketUsage

    config.set(COLLECT_WRITE_WORKERS=8)
    config.start()
    store = bootstrap.current().store
    buckets = [BucketUsage(f"svc-{n}", T0, {"r": {"ingress": n, "egress": 2 * n}}) for n in range(300)]
    assert store.put_buckets("1m", buckets) == 300
    found = store.get_buckets("1m", [(f"svc-{n}", T0) for n in range(300)])
    assert sorted(b.egress for b in found.values()) == sorted(2 * n for n in range(300))


def test_only_the_scheduled_collector_may_invoke_and_only_the_shard_worker():
    from deploy import policies

    resources = policies.arn_resources("us-east-1", "123456789012", "bandwidth-meter", "prod",
                                       "arn:aws:dynamodb:us-east-1:123456789012:table/t",
                                       "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/x",
                                       "a@example.com", "/bandwidth-meter/prod")
    invoke = [s for s in policies.policy("collect", resources)["Statement"] if "lambda:InvokeFunction" in s["Action"]]
    assert invoke == [{"Sid": "InvokeShardWorker", "Effect": "Allow", "Action": ["lambda:InvokeFunction"],
                       "Resource": ["arn:aws:lambda:us-east-1:123456789012:function:bandwidth-meter-prod-collect_shard"]}]
    worker = policies.policy("collect_shard", resources)["Statement"]
    assert not any(a.startswith("lambda:") for s in worker for a in s["Action"])


def test_make_run_runs_the_shards_as_parallel_workers():
    import threading

    from localrun.runtime import Runtime

    runtime = Runtime(env={})
    calls, gate = [], threading.Barrier(3, timeout=5)  # every worker must be running at once

    def handler(event, context):
        gate.wait()
        calls.append((event["shard"], threading.current_thread().name))
        return {"status": "ok", "minutes": 1, "end": "-", "series_seen": 0, "items_written": 0}

    runtime.shard_handler, runtime.shard_count = handler, 3
    runtime._run_shards()
    assert sorted(shard for shard, _ in calls) == [0, 1, 2]
    assert len({name for _, name in calls}) == 3


def test_charts_read_the_watermark_of_the_shard_that_counts_the_service(prom, config):
    from chalicelib.api.charts import service_coverage

    collect(config, prom, 4, [(T0 + 2460 + 31, [0, 1, 2, 3])], "sharded")
    deps = bootstrap.current()
    owner = shards.shard_of("late-service", 4)
    deps.collector_for(owner).run(now=T0 + 2580 + 31)  # only the owner moves on
    coverage = service_coverage(deps.store, "late-service", T0 + 2600)
    assert coverage.watermark == T0 + 2580
    assert coverage.collection_start == deps.store.state(0).collection_start
