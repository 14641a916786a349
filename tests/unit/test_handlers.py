"""The real Lambda entry points in app.py, fed raw events as AWS sends them (moto in-process)."""
import boto3
import pytest
from moto.core import DEFAULT_ACCOUNT_ID
from moto.ses.models import ses_backends

from chalicelib import bootstrap
from tests.fakes.prometheus import FakePrometheus

T0 = 1_796_083_200 - 7200


SCHEDULED_EVENT = {"version": "0", "id": "e1", "detail-type": "Scheduled Event", "source": "aws.events",
                   "account": "123456789012", "time": "2026-11-30T22:30:00Z", "region": "us-east-1",
                   "resources": ["arn:aws:events:us-east-1:123456789012:rule/bandwidth-meter-dev-collect"],
                   "detail": {}}


class Context:
    function_name = "bandwidth-meter-dev-alerts"
    aws_request_id = "test"


def stream_event(settings):
    """Every record on the table's stream so far, as the Lambda event-source mapping delivers them."""
    streams = boto3.client("dynamodbstreams", region_name=settings.region)
    arn = boto3.client("dynamodb", region_name=settings.region).describe_table(
        TableName=settings.table_name)["Table"]["LatestStreamArn"]
    records = []
    for shard in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
        iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard["ShardId"],
                                              ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        for record in streams.get_records(ShardIterator=iterator, Limit=1000)["Records"]:
            record["dynamodb"]["ApproximateCreationDateTime"] = \
                record["dynamodb"]["ApproximateCreationDateTime"].timestamp() \
                if hasattr(record["dynamodb"]["ApproximateCreationDateTime"], "timestamp") \
                else record["dynamodb"]["ApproximateCreationDateTime"]
            record["eventSourceARN"] = arn
            records.append(record)
    return {"Records": records}


def fake_prometheus():
    prom = FakePrometheus()
    prom.add({"__name__": "kong_bandwidth_bytes", "service": "pay", "route": "r", "direction": "egress",
              "consumer": "", "workspace": "default", "instance": "n1"},
             [(T0 - 60 + 60 * i, 1000 * i) for i in range(40)])
    return prom


def clock():
    return T0 + 1800


@pytest.fixture
def wired(aws, config):
    config.set(INITIAL_BACKFILL_MINUTES=30, COLLECT_LAG_SECONDS=0)
    boto3.client("ses", region_name="us-east-1").verify_email_identity(EmailAddress="alerts@bandwidth-meter.test")
    config.start(prometheus=fake_prometheus(), clock=clock)
    import app
    return app


def sent_messages():
    return ses_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].sent_messages


def test_collect_then_alerts_sends_one_email_through_ses(wired):
    app, settings = wired, bootstrap.current().settings
    bootstrap.current().quotas.put("pay", {"limit_bytes": 20_000, "notify": ["owner@example.com"]})
    report = app.collect(SCHEDULED_EVENT, Context())
    assert report["status"] == "ok"
    result = app.alerts(stream_event(settings), Context())
    assert result == {"batchItemFailures": []}
    (message,) = sent_messages()
    assert message.destinations["ToAddresses"] == ["owner@example.com"]
    assert message.subject == "[Bandwidth Meter] pay reached 100% of its monthly quota"
    # The same batch delivered again sends nothing new.
    assert app.alerts(stream_event(settings), Context()) == {"batchItemFailures": []}
    assert len(sent_messages()) == 1


def test_unverified_sender_fails_the_record_and_marks_the_alert_failed(wired, config):
    app, settings = wired, bootstrap.current().settings
    config.set(ALERT_FROM="nobody@unverified.test")
    config.start(prometheus=fake_prometheus(), clock=clock)
    bootstrap.current().quotas.put("pay", {"limit_bytes": 20_000, "notify": ["owner@example.com"]})
    app.collect(SCHEDULED_EVENT, Context())
    result = app.alerts(stream_event(settings), Context())
    assert result["batchItemFailures"]
    assert bootstrap.current().ledger.history("pay")[0]["status"] == "failed"
    assert sent_messages() == []


def records_of(settings, sk):
    """The stream's records of the STATE item ``sk`` (``collector``: the collector's state)."""
    return {"Records": [r for r in stream_event(settings)["Records"]
                        if r["dynamodb"]["Keys"]["pk"]["S"] == "STATE" and r["dynamodb"]["Keys"]["sk"]["S"] == sk]}


def test_the_sweep_runs_on_the_schedules_tick_not_on_the_collectors_state(wired, config):
    from tests.fakes.mailer import RecordingMailer

    app, mailer = wired, RecordingMailer()
    deps = config.start(prometheus=fake_prometheus(), clock=clock, mailer=mailer)
    settings = deps.settings
    deps.quotas.put("pay", {"limit_bytes": 20_000, "notify": ["owner@example.com"]})
    mailer.failures_left = 1  # SES refuses the alert once: only the sweep can deliver it now
    deps.collector.run(now=clock())  # the collector alone: usage and its state, no tick
    usage = {"Records": [r for r in stream_event(settings)["Records"]
                         if r["dynamodb"]["Keys"]["pk"]["S"] == "SERVICES"]}
    assert app.alerts(usage, Context())["batchItemFailures"] and mailer.sent == []
    state = records_of(settings, "collector")
    assert state["Records"] and "running_since" not in state["Records"][-1]["dynamodb"]["NewImage"]
    assert app.alerts(state, Context()) == {"batchItemFailures": []}
    assert mailer.sent == []  # a finished run's state record is no clock any more
    assert records_of(settings, "tick")["Records"] == []

    app.collect(SCHEDULED_EVENT, Context())  # the scheduled run writes the tick, whatever it collected
    tick = records_of(settings, "tick")
    assert len(tick["Records"]) == 1 and tick["Records"][0]["dynamodb"]["NewImage"]["at"]["N"] == str(clock())
    assert app.alerts(tick, Context()) == {"batchItemFailures": []}
    assert [m["subject"] for m in mailer.sent] == ["[Bandwidth Meter] pay reached 100% of its monthly quota"]


def test_the_scheduled_run_ticks_and_reports_enforcement_off_even_when_collecting_fails(wired, config):
    from chalicelib.collect.collector import CollectorRunFailed

    app = wired
    prom = fake_prometheus()
    prom.fail_with = "Prometheus unreachable"
    deps = config.start(prometheus=prom, clock=clock)
    with pytest.raises(CollectorRunFailed, match="unreachable"):
        app.collect(SCHEDULED_EVENT, Context())
    assert len(records_of(deps.settings, "tick")["Records"]) == 1
    prom.fail_with = None
    report = app.collect(SCHEDULED_EVENT, Context())
    assert report["status"] == "ok" and report["enforcement"] is None
