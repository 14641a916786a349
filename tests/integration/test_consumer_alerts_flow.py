"""Consumer quota alerts end to end on a moto server process: consumer usage items written as the
collector writes them, the stream poller (Lambda's event-source mapping) feeding app.alerts, SES
messages read back from the emulator. Once per threshold, through a replayed stream, and apart
from a service of the same name."""
import boto3
import pytest
import requests

from chalicelib import bootstrap
from chalicelib.core.models import CONSUMER, CONSUMERS_PK, ConsumerUsage
from chalicelib.core.periods import period_at
from localrun.streams import StreamPoller
from tests.support.streams import alerts_poller, drain

DEC1 = 1_796_083_200  # 2026-12-01T00:00Z
T0 = DEC1 - 20 * 60


@pytest.fixture
def flow(aws_server, config, moto_server):
    ses = boto3.client("ses", region_name="us-east-1", endpoint_url=moto_server)
    ses.verify_email_identity(EmailAddress="alerts@bandwidth-meter.test")
    deps = config.start(clock=lambda: T0)
    deps.quotas.put("acme", {"limit_bytes": 10_000, "notify": ["billing@example.com"]}, kind=CONSUMER)

    class Flow:
        poller = alerts_poller(moto_server, aws_server.table_name)
        totals = {}
        book = deps.quotas

        @staticmethod
        def minute(n, per_consumer):
            """The collector's consumer items after minute T0+n, then a stream poll."""
            at = T0 + 60 * (n + 1)
            month = period_at("month", at - 60)
            for consumer, nbytes in per_consumer.items():
                Flow.totals[consumer] = Flow.totals.get(consumer, 0) + nbytes
                total = Flow.totals[consumer]
                ConsumerUsage(CONSUMERS_PK, consumer, consumer=consumer, first_seen=T0, last_active=at - 60,
                              period_kind="month", period_anchor=1, period_start=month.start,
                              period_end=month.end, ingress=0, egress=total, total=total, through=at,
                              services={"pay": {"ingress": 0, "egress": total}}).save()
            drain(Flow.poller)

        @staticmethod
        def messages():
            data = requests.get(f"{moto_server}/moto-api/data.json", timeout=5).json()
            return data["ses"]["Message"]

        @staticmethod
        def subjects():
            return [m["subject"] for m in Flow.messages()]

    return Flow


def test_a_consumer_growing_gets_80_90_100_once_each(flow):
    for n in range(12):
        flow.minute(n, {"acme": 1_000})
    assert flow.subjects() == [f"[Bandwidth Meter] consumer acme reached {t}% of its monthly quota"
                               for t in (80, 90, 100)]
    assert [m["destinations"]["ToAddresses"] for m in flow.messages()] == [["billing@example.com"]] * 3


def test_a_replayed_stream_sends_nothing_more(flow):
    flow.minute(0, {"acme": 9_500})
    assert flow.subjects() == ["[Bandwidth Meter] consumer acme reached 90% of its monthly quota"]
    replay = StreamPoller(flow.poller.client, flow.poller.stream_arn, flow.poller.handler, sleep=lambda s: None)
    while replay.poll_once():
        pass
    assert replay.invocations >= 1 and len(flow.subjects()) == 1
    statuses = {a["threshold"]: a["status"] for a in bootstrap.current().ledger.history("acme", kind=CONSUMER)}
    assert statuses == {80.0: "covered", 90.0: "sent"}


def test_anonymous_traffic_never_alerts_and_a_service_of_the_same_name_is_not_touched(flow):
    flow.book.put_rules({"rules": [{"pattern": "*", "limit_bytes": 1, "notify": ["ops@example.com"],
                                    "applies_to": "consumer"}]})
    flow.minute(0, {"(anonymous)": 50_000, "acme": 8_000})
    assert flow.subjects() == ["[Bandwidth Meter] consumer acme reached 80% of its monthly quota"]
    assert bootstrap.current().ledger.history("acme") == []  # the service acme's ledger
