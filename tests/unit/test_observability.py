"""What a deployed function tells about itself: JSON log lines and CloudWatch embedded metrics
on stdout in Lambda (AWS_LAMBDA_FUNCTION_NAME set), readable text and no EMF locally."""
import hashlib
import json

import pytest
from chalice.test import Client

from chalicelib import bootstrap
from chalicelib.api import status
from chalicelib.core import observability
from tests.unit.test_handlers import (SCHEDULED_EVENT, T0, Context, fake_prometheus, stream_event,  # noqa: F401
                                      wired)

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def fresh_observability():
    observability.reset()
    yield
    observability.reset()


@pytest.fixture
def in_lambda(config, monkeypatch):
    """As in Lambda: the settings say so, and the process holds the variables Lambda sets,
    which the logging and metrics set-up read from there."""
    config.set(AWS_LAMBDA_FUNCTION_NAME="bandwidth-meter-dev-collect")
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "bandwidth-meter-dev-collect")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "bandwidth-meter-dev")


@pytest.fixture
def at(config):
    """``at(seconds)``: the parts with the fake Prometheus and the clock at T0 + seconds, built
    from the test's configuration of now (in Lambda or not)."""
    return lambda seconds: config.start(prometheus=fake_prometheus(), clock=lambda: T0 + seconds)


def stdout_records(out):
    """Every JSON line in captured stdout: (log lines, EMF blobs)."""
    logs, emf = [], []
    for line in out.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        (emf if "_aws" in record else logs).append(record)
    return logs, emf


def emf_values(blobs):
    """name -> values over all EMF blobs, after checking each declares its metrics properly."""
    values = {}
    for blob in blobs:
        (directive,) = blob["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == "BandwidthMeter"
        assert directive["Dimensions"] == [["service"]] and blob["service"] == "bandwidth-meter-dev"
        for declared in directive["Metrics"]:
            raw = blob[declared["Name"]]
            values.setdefault(declared["Name"], []).extend(raw if isinstance(raw, list) else [raw])
    return values


def test_a_collector_run_logs_its_report_as_json_and_emits_its_metrics(wired, in_lambda, capfd, at):
    app = wired
    at(1830)
    report = app.collect(SCHEDULED_EVENT, Context())
    logs, emf = stdout_records(capfd.readouterr().out)
    (run,) = [r for r in logs if r.get("event") == "collector_run"]
    collected = {k: v for k, v in report.items() if k != "enforcement"}  # the schedule adds the reconcile's
    assert run["level"] == "INFO" and run["report"] == collected and report["status"] == "ok"
    assert run["function_request_id"] == "test" and run["cold_start"] is True
    assert run["message"].startswith("collector run ok: 30 minutes")
    (blob,) = emf
    values = emf_values(emf)
    assert values["CollectorLagSeconds"] == [30.0]  # watermark T0 + 1800, now T0 + 1830
    assert values["SeriesSeen"] == [1.0] and values["SeriesQuarantined"] == [0.0]
    assert values["ItemsWritten"] == [float(report["items_written"])] and report["items_written"] > 0
    assert values["PrometheusRequests"] == [float(report["prometheus_requests"])]
    assert values["CollectorRunDuration"][0] >= 0
    units = {m["Name"]: m["Unit"] for m in blob["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert units["CollectorLagSeconds"] == "Seconds" and units["CollectorRunDuration"] == "Milliseconds"


def test_an_alert_sent_and_the_thresholds_it_covers_each_log_a_line_and_count(wired, in_lambda, capfd, at):
    app, settings = wired, at(1800).settings
    bootstrap.current().quotas.put("pay", {"limit_bytes": 20_000, "notify": ["owner@example.com"]})
    app.collect(SCHEDULED_EVENT, Context())
    capfd.readouterr()
    app.alerts(stream_event(settings), Context())
    logs, emf = stdout_records(capfd.readouterr().out)
    alerts = [r for r in logs if r.get("event") == "alert"]
    # the thresholds jumped over are recorded covered before the email goes out
    assert [(a["outcome"], a["threshold"]) for a in alerts] == [("covered", 80.0), ("covered", 90.0), ("sent", 100.0)]
    sent = alerts[-1]
    assert sent["metered_service"] == "pay" and sent["channels"] == "email" and sent["recipients"] == 1
    assert all("owner@example.com" not in json.dumps(a) for a in alerts)  # recipients counted, never named
    values = emf_values(emf)
    assert values["AlertsSent"] == [1.0] and sum(values["AlertsCovered"]) == 2
    assert len(emf) == 1  # flushed once, at the end of the invocation


def test_a_failed_alert_logs_a_warning_and_counts_a_failure(wired, in_lambda, capfd, config, at):
    config.set(ALERT_FROM="nobody@unverified.test")
    app, settings = wired, at(1800).settings
    bootstrap.current().quotas.put("pay", {"limit_bytes": 20_000, "notify": ["owner@example.com"]})
    app.collect(SCHEDULED_EVENT, Context())
    capfd.readouterr()
    assert app.alerts(stream_event(settings), Context())["batchItemFailures"]
    logs, emf = stdout_records(capfd.readouterr().out)
    failures = [r for r in logs if r.get("event") == "alert" and r["outcome"] != "covered"]
    assert failures and all(f["outcome"] == "failed" and f["level"] == "WARNING" and f["channel"] == "email"
                            for f in failures)  # each failed record (and the sweep's redelivery) failed again
    assert emf_values(emf)["AlertsFailed"] == [1.0] * len(failures)


def test_a_refused_request_logs_the_key_name_never_the_key_and_counts(aws, config, in_lambda, capfd):
    key = "s3cret-read-key-0123456789"
    other = hashlib.sha256(b"some-other-key-0123456789").hexdigest()
    # in Lambda only digests are accepted
    config.set(API_KEYS=f"sha256:{other}:read", STAGE="prod", CORS_ORIGINS="https://app.example")
    config.start()
    import app

    with Client(app.app) as client:
        assert client.http.get("/v1/services", headers={"x-api-key": key}).status_code == 401
    out = capfd.readouterr().out
    assert key not in out
    logs, emf = stdout_records(out)
    (refused,) = [r for r in logs if r.get("event") == "request_refused"]
    assert refused["key"] == "key#" + hashlib.sha256(key.encode()).hexdigest()[:8]
    assert (refused["status"], refused["code"], refused["route"]) == (401, "unauthorized", "/v1/services")
    assert refused["reason"] and refused["message"].endswith(refused["reason"])  # what the caller was told
    assert emf_values(emf)["RefusedRequests"] == [1.0]


def test_locally_metrics_stay_readable_and_no_emf_is_printed(wired, capfd, at):
    app = wired
    at(1830)
    app.collect(SCHEDULED_EVENT, Context())
    logs, emf = stdout_records(capfd.readouterr().out)
    assert emf == [] and logs == []
    shown = observability.readable(observability.last_flushed())
    assert shown.startswith("lag 30 s, run ") and "1 series, 0 quarantined" in shown
    assert "Prometheus requests" in shown


def test_throttled_requests_are_counted_apart_from_other_refusals():
    observability.request_refused("GET", "/v1/services", 429, "throttled", "key#1a2b3c4d", retry_after=3)
    observability.request_refused("GET", "/v1/services", 403, "forbidden", "key#1a2b3c4d")
    assert observability.flush() == {"ThrottledRequests": [1.0], "RefusedRequests": [1.0]}
    assert observability.readable(observability.last_flushed()) == "1 throttled, 1 refused"


def test_collector_status_shows_the_last_runs_metrics_by_name_and_in_words(wired, at):
    app = wired
    at(1830)
    report = app.collect(SCHEDULED_EVENT, Context())
    deps = bootstrap.current()
    shown = status.collector_status(deps.store.state(), deps.settings, now=T0 + 1845)
    metrics = shown["metrics"]
    assert metrics["CollectorLagSeconds"] == 45 and metrics["SeriesSeen"] == 1 and metrics["SeriesQuarantined"] == 0
    assert metrics["ItemsWritten"] == report["items_written"] and metrics["CollectorRunDuration"] >= 0
    assert shown["summary"].startswith("lag 45 s, run ") and shown["summary"].endswith(
        f"1 series, 0 quarantined, {report['items_written']} items written")


def test_one_of_a_count_is_said_in_the_singular():
    assert observability.readable({observability.ALERTS_SENT: [1], observability.ITEMS_WRITTEN: [1],
                                   observability.PROMETHEUS_REQUESTS: [1]}) == \
        "1 item written, 1 Prometheus request, 1 alert sent"
    assert observability.readable({observability.ALERTS_SENT: [1, 1]}) == "2 alerts sent"


@pytest.mark.parametrize("field", [{"series_quarantined": 2}, {"quarantined": [["pay", "bad sample"], ["x", "y"]]}])
def test_quarantined_series_are_counted_from_the_report(field):
    report = {"status": "ok", "minutes": 1, "end": "2026-11-30T22:30:00Z", "series_seen": 5, **field}
    observability.collector_run(report, now=1000.0, watermark=940.0, duration_seconds=0.5)
    assert observability.flush()["SeriesQuarantined"] == [2.0]
