"""The service summary shows the pushed bytes of the current period apart (``pushed``), next to
``usage``, which counts them with the scraped ones (GET /v1/services/{s} and the services list).
Chalice's test client, moto in-process; responses checked against the OpenAPI schema."""
import json

import jsonschema
import pytest
from chalice.test import Client

from chalicelib.api.apidocs import openapi_spec
from chalicelib.core.events import EVENT_TYPE
from chalicelib.core.models import ServiceUsage
from chalicelib.core.timeutil import parse_time

NOW = parse_time("2026-12-04T12:30:20Z")
DECEMBER = (parse_time("2026-12-01T00:00:00Z"), parse_time("2027-01-01T00:00:00Z"))
INGEST_KEY, READ_KEY = "ingest-key-0123456789", "read-key-0123456789"


@pytest.fixture
def client(aws, config):
    config.set(API_KEYS=f"{INGEST_KEY}:ingest,{READ_KEY}:read", THROTTLE_ENABLED="false")
    deps = config.start(clock=lambda: NOW)
    # "cdn" was scraped too: the collector's figure for December (month periods, the default quota)
    item = ServiceUsage.first_seen_at("cdn", parse_time("2026-11-20T00:00:00Z"), NOW - 120)
    item.period_start, item.period_end = DECEMBER
    item.ingress, item.egress, item.total, item.through = 1_000, 20_000, 21_000, NOW - 120
    deps.store.put_services([item])
    from app import app

    with Client(app) as c:
        yield c


def event(i, nbytes, service="cdn", direction="egress", time="2026-12-04T12:10:30Z"):
    return {"specversion": "1.0", "id": str(i), "source": "/edge-logs", "type": EVENT_TYPE, "time": time,
            "data": {"service": service, "direction": direction, "bytes": nbytes}}


def call(client, method, path, body=None, key=READ_KEY):
    headers = {"x-api-key": key}
    if body is not None:
        headers["Content-Type"] = "application/cloudevents-batch+json"
    response = getattr(client.http, method)(path, body=None if body is None else json.dumps(body), headers=headers)
    assert response.status_code == 200, response.body
    return json.loads(response.body)


def conforms(body, schema):
    jsonschema.validate(body, {"$ref": f"#/components/schemas/{schema}", "components": openapi_spec()["components"]})


def test_the_summary_shows_the_pushed_bytes_apart_and_in_the_total(client):
    call(client, "post", "/v1/events", [event(1, 300), event(2, 45, direction="ingress"),
                                        event(3, 7, time="2026-11-30T23:59:00Z")],  # November's: another period
         key=INGEST_KEY)
    summary = call(client, "get", "/v1/services/cdn")
    conforms(summary, "ServiceSummary")
    assert summary["pushed"] == {"ingress": 45, "egress": 300, "total": 345}
    assert summary["usage"] == {"ingress": 1_045, "egress": 20_300, "total": 21_345}


def test_the_services_list_shows_each_services_pushed_bytes(client):
    call(client, "post", "/v1/events", [event(1, 300), event(2, 50, service="only-pushed")], key=INGEST_KEY)
    page = call(client, "get", "/v1/services?sort=name&order=asc")
    conforms(page, "ServicesPage")
    rows = {row["service"]: row for row in page["services"]}
    assert (rows["cdn"]["pushed"], rows["cdn"]["usage"]["total"]) == ({"ingress": 0, "egress": 300, "total": 300},
                                                                       21_300)
    assert rows["only-pushed"]["pushed"] == rows["only-pushed"]["usage"] == {"ingress": 0, "egress": 50, "total": 50}


def test_a_service_nothing_was_pushed_for_shows_zero_pushed(client):
    summary = call(client, "get", "/v1/services/cdn")
    assert summary["pushed"] == {"ingress": 0, "egress": 0, "total": 0}
    assert summary["usage"]["total"] == 21_000
