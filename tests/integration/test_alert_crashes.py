"""No alert lost, none repeated, when the alerts function dies or SES fails, on a moto server.

The whole path runs as in AWS: the collector writes usage, the table's stream is read by the
stream poller (the event-source mapping) into app.alerts, SES is the moto server's. A fake clock
drives both functions; traffic stops after the crossing, so only the sweep (triggered by the
schedule's tick record, once a run) can deliver what was lost."""
from __future__ import annotations

import boto3
import pytest
import requests

from chalicelib import schedule
from chalicelib.core.errors import MailError
from chalicelib.notify.alerts import CLAIM_TIMEOUT_SECONDS
from chalicelib.notify.mailer import SesMailer
from tests.fakes.prometheus import FakePrometheus
from tests.support.streams import alerts_poller, drain

DEC1 = 1_796_083_200
T0 = DEC1 - 30 * 60
SENDER = "alerts@bandwidth-meter.test"


class Died(BaseException):
    """The function's process is killed: nothing after this runs, no handler catches it."""


class UnreliableMailer:
    """The real SES mailer, told to die before or after a send, or to be refused a few times."""

    def __init__(self, ses):
        self.ses = SesMailer(ses, SENDER)
        self.die_before = self.die_after = self.refuse = 0

    def send(self, to, subject, text, html):
        if self.die_before:
            self.die_before -= 1
            raise Died()
        if self.refuse:
            self.refuse -= 1
            raise MailError("SES throttled the request")
        message_id = self.ses.send(to, subject, text, html)
        if self.die_after:
            self.die_after -= 1
            raise Died()  # SES accepted it; nothing was recorded
        return message_id


class Clock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def world(aws_server, config, moto_server):
    config.set(COLLECT_LAG_SECONDS=0, INITIAL_BACKFILL_MINUTES=1)
    ses = boto3.client("ses", region_name="us-east-1", endpoint_url=moto_server)
    ses.verify_email_identity(EmailAddress=SENDER)
    labels = {"__name__": "kong_bandwidth_bytes", "service": "pay", "route": "r", "direction": "egress",
              "consumer": "", "workspace": "default", "instance": "n1"}
    prom, clock, mailer = FakePrometheus(), Clock(T0), UnreliableMailer(ses)
    prom.add(labels, [(T0 - 30, 0)])
    deps = config.start(prometheus=prom, clock=clock, mailer=mailer)
    deps.quotas.put("pay", {"limit_bytes": 10_000, "notify": ["owner@example.com"]})
    poller = alerts_poller(moto_server, aws_server.table_name)

    class World:
        total = 0

        @staticmethod
        def minute(n: int, nbytes: int = 0) -> None:
            """Traffic in minute T0+n, the scheduled run after it, and the stream drained."""
            World.total += nbytes
            prom.add(labels, [(T0 + 60 * n + 30, World.total)])
            clock.now = T0 + 60 * (n + 1)
            schedule.scheduled_run(deps, shard=0)
            drain(poller)

        @staticmethod
        def subjects():
            data = requests.get(f"{moto_server}/moto-api/data.json", timeout=5).json()
            return [m["subject"] for m in data["ses"]["Message"]]

        @staticmethod
        def statuses():
            return {a["threshold"]: a["status"] for a in deps.ledger.history("pay")}

    World.mailer, World.deps = mailer, deps
    return World


NINETY = "[Bandwidth Meter] pay reached 90% of its monthly quota"


def test_a_function_killed_between_claim_and_send_delivers_within_two_collector_runs(world):
    world.mailer.die_before = 1
    with pytest.raises(Died):
        world.minute(0, 9_000)
    assert world.subjects() == [] and world.statuses() == {80.0: "covered", 90.0: "pending"}
    runs = 0
    while not world.subjects():  # no more traffic: only the sweep can deliver it
        runs += 1
        world.minute(runs)
    assert runs * 60 <= CLAIM_TIMEOUT_SECONDS + 60 and runs <= 2
    assert world.subjects() == [NINETY] and world.statuses() == {80.0: "covered", 90.0: "sent"}
    for n in range(runs + 1, runs + 5):
        world.minute(n)
    assert world.subjects() == [NINETY]


def test_ses_refusing_until_the_stream_gives_up_is_delivered_by_the_sweep(world):
    world.mailer.refuse = 10**6  # SES is down: every attempt of the batch fails and the poller skips it
    world.minute(0, 9_000)
    assert world.subjects() == [] and world.statuses()[90.0] == "failed"
    world.mailer.refuse = 0  # SES is back; the service has no more traffic
    world.minute(1)
    assert world.subjects() == [NINETY] and world.statuses()[90.0] == "sent"
    world.minute(2)
    assert world.subjects() == [NINETY]


def test_dying_after_ses_accepted_is_the_one_duplicate_and_the_sweep_counts_it(world, caplog):
    world.mailer.die_after = 1
    with pytest.raises(Died):
        world.minute(0, 9_000)
    for n in range(1, 4):
        world.minute(n)
    assert world.subjects() == [NINETY, NINETY]
    assert "redelivered after its claim timed out" in caplog.text
    report = world.deps.alert_processor.sweep(world.deps.clock() + 600)
    assert report.redelivered == 0 and world.statuses()[90.0] == "sent"
