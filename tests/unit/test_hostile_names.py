"""Hostile service names are plain text everywhere: keys, API answers, CSV and email."""
import json

import pytest
from chalice.test import Client

from chalicelib import bootstrap
from chalicelib.api import charts
from chalicelib.notify import emails
from tests.fakes.prometheus import FakePrometheus

T0 = 1_796_083_200 - 3600
# (No ':' in them: a name holding one is keyed with its workspace, core/names.py, tested apart.)
HOSTILE = ["../../etc/passwd", "=HYPERLINK(\"evil.example\")", "x'; DROP TABLE usage; --", "<img src=x onerror=1>",
           "USAGE#other", "ünï côdé"]


@pytest.fixture
def collected(aws, config, monkeypatch):
    config.set(COLLECT_LAG_SECONDS=0, INITIAL_BACKFILL_MINUTES=10)
    prom = FakePrometheus()
    for name in HOSTILE + ["other"]:
        prom.add({"__name__": "kong_bandwidth_bytes", "service": name, "route": name, "direction": "egress",
                  "consumer": "", "workspace": "default", "instance": "n1"}, [(T0 - 30, 0), (T0 + 30, 100)])
    config.start(prometheus=prom).collector.run(now=T0 + 600)
    config.start(prometheus=prom, clock=lambda: T0 + 600)
    from app import app

    with Client(app) as client:
        yield client


def test_each_name_is_its_own_service_and_no_key_collides(collected):
    names = {row["service"] for row in json.loads(collected.http.get("/v1/services").body)["services"]}
    assert names == set(HOSTILE) | {"other"}
    store = bootstrap.current().store
    assert store.range_total("other", T0, T0 + 60).egress == 100  # "USAGE#other" did not write into it
    assert store.range_total("USAGE#other", T0, T0 + 60).egress == 100


def test_csv_cells_that_could_be_formulas_are_quoted_as_text(collected):
    name = HOSTILE[1]
    store = bootstrap.current().store
    chart = charts.build_series(store, charts.service_coverage(store, name, T0 + 600), name, T0, T0 + 60, "1m",
                                direction="egress", split=True)
    row = charts.series_csv(chart).splitlines()[1]
    assert row == '2026-11-30T23:00:00Z,"\'=HYPERLINK(""evil.example"")",egress,"\'=HYPERLINK(""evil.example"")",100,false'


def test_email_escapes_markup_and_strips_control_characters():
    alert = emails.ThresholdAlert("<img src=x onerror=1>\r\nBcc: x@evil", 80, 8, 10, "total", "monthly", 0, 86400, 0)
    subject, text, html = emails.render(alert, "http://dash")
    assert "\n" not in subject and "\r" not in subject
    assert "<img" not in html and "&lt;img src=x onerror=1&gt;" in html
