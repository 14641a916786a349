"""Every route answers from the configured table when it is the first request a cold process serves.

A cold API Lambda builds its parts on its first request; a route that reached DynamoDB without going
through the bootstrap once read a default table instead of the configured one. One new Python process
(the moto server is AWS) imports app.py and, before each route's request, puts itself back in the
state a fresh import leaves: nothing built (bootstrap.reset) and every model pointing where its
class says, not at the configured table. So each route's request is a first request.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from chalicelib import bootstrap
from chalicelib.core.models import CONSUMER, CONSUMERS_PK, IMPORTS_PK, SERVICES_PK, Alert, ConsumerUsage, ImportJob, ServiceUsage
from chalicelib.core.periods import period_at
from chalicelib.core.settings import from_env
from chalicelib.core.usage import BucketUsage
from tests.support.config import BOTO_ENV

ROOT = Path(__file__).resolve().parents[2]
TABLE = "bwm-cold-start"  # no default of any model can point here
FIRST_REQUESTS = """
import json, sys
import app
from chalice.test import Client
from chalicelib import bootstrap
from chalicelib.core import models

# What a fresh import leaves: models unbound, as their classes declare them.
FRESH = [(model, getattr(model.Meta, "table_name", None), getattr(model.Meta, "region", None),
          getattr(model.Meta, "host", None)) for model in models.ALL_MODELS]


def as_if_just_imported():
    bootstrap.reset()
    for model, table, region, host in FRESH:
        model.Meta.table_name, model.Meta.region, model.Meta.host = table, region, host
        model._connection = None


answers = []
with Client(app.app, stage_name="local") as client:
    for method, path, body in json.load(sys.stdin):
        as_if_just_imported()
        headers = {"Content-Type": "application/json"} if body else {}
        answer = client.http.request(method, path, body=body.encode() if body else b"", headers=headers)
        answers.append({"status": answer.status_code, "body": answer.body.decode("utf-8", "replace")})
print(json.dumps(answers))
"""
QUOTA = json.dumps({"limit_bytes": 1000, "notify": ["owner@example.com"], "action": "reject", "reject_at": 50})
RULES = json.dumps({"rules": [{"pattern": "pay*", "limit_bytes": 5000}]})
CONSUMER_QUOTA = json.dumps({"limit_bytes": 2000, "action": "reject"})
IMPORT_ID = "cold0import"  # seeded open, so its routes have an import to act on


def usage_event(event_id: str) -> dict:
    # An hour before the module was loaded: in the past and within the retention when the test runs.
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 3600))
    return {"specversion": "1.0", "id": event_id, "source": "/cold-start", "type": "dev.bandwidth-meter.usage",
            "time": at, "data": {"service": "pushed-only", "direction": "egress", "bytes": 5}}

# (method, route, path, body, what the answer must hold to prove it read the seeded table)
CASES = [
    ("GET", "/v1/health", "/v1/health", "", lambda b: b["status"] == "ok"),
    ("GET", "/v1/collector/status", "/v1/collector/status", "", lambda b: b["watermark"] is not None),
    ("GET", "/v1/services", "/v1/services", "", lambda b: [s["service"] for s in b["services"]] == ["pay"]),
    ("GET", "/v1/services/{service}", "/v1/services/pay", "", lambda b: b["usage"]["egress"] == 700),
    ("GET", "/v1/services/{service}/bandwidth", "/v1/services/pay/bandwidth?start={start}&end={now}&step=1m",
     "", lambda b: sum(s["total_bytes"] for s in b["series"]) == 700),
    ("GET", "/v1/services/{service}/stats", "/v1/services/pay/stats?start={start}&end={now}", "",
     lambda b: b["service"] == "pay"),
    ("GET", "/v1/consumers", "/v1/consumers", "", lambda b: [c["consumer"] for c in b["consumers"]] == ["alice"]),
    ("GET", "/v1/consumers/{consumer}", "/v1/consumers/alice", "", lambda b: b["usage"]["egress"] == 700),
    ("GET", "/v1/consumers/{consumer}/bandwidth", "/v1/consumers/alice/bandwidth?start={start}&end={now}&step=1m",
     "", lambda b: sum(s["total_bytes"] for s in b["series"]) == 700),
    ("GET", "/metrics/bandwidth_used", "/metrics/bandwidth_used?service=pay&type=egress&lookback_duration=10m", "",
     lambda b: any(row["bandwidth_used"] == 700 for row in b)),
    ("GET", "/v1/services/{service}/quota", "/v1/services/pay/quota", "", lambda b: b["limit_bytes"] == 1000),
    ("PUT", "/v1/services/{service}/quota", "/v1/services/new/quota", QUOTA, lambda b: b["limit_bytes"] == 1000),
    ("DELETE", "/v1/services/{service}/quota", "/v1/services/pay/quota", "", None),
    ("GET", "/v1/consumers/{consumer}/quota", "/v1/consumers/acme/quota", "", lambda b: b["limit_bytes"] == 2000),
    ("PUT", "/v1/consumers/{consumer}/quota", "/v1/consumers/newc/quota", QUOTA, lambda b: b["limit_bytes"] == 1000),
    ("DELETE", "/v1/consumers/{consumer}/quota", "/v1/consumers/acme/quota", "", None),
    ("GET", "/v1/consumers/{consumer}/alerts", "/v1/consumers/acme/alerts", "",
     lambda b: [a["threshold"] for a in b["alerts"]] == [90.0]),
    ("GET", "/v1/quotas", "/v1/quotas", "", lambda b: [q["service"] for q in b["quotas"]] == ["pay"]
     and [q["consumer"] for q in b["consumer_quotas"]] == ["acme"]),
    ("GET", "/v1/quota-rules", "/v1/quota-rules", "", lambda b: b["rules"][0]["pattern"] == "pay*"),
    ("PUT", "/v1/quota-rules", "/v1/quota-rules", RULES, lambda b: b["rules"][0]["limit_bytes"] == 5000),
    ("GET", "/v1/quota-audit", "/v1/quota-audit", "", lambda b: len(b["entries"]) == 3),
    ("GET", "/v1/schemas/quota", "/v1/schemas/quota", "", lambda b: "limit_bytes" in b["properties"]),
    ("GET", "/v1/schemas/quota-rules", "/v1/schemas/quota-rules", "", lambda b: "rules" in b["properties"]),
    ("GET", "/v1/services/{service}/alerts", "/v1/services/pay/alerts", "",
     lambda b: [a["threshold"] for a in b["alerts"]] == [80.0]),
    ("GET", "/v1/enforcement", "/v1/enforcement", "",
     lambda b: [(x["kind"], x.get("consumer") or x.get("service")) for x in b["blocked"]]
     == [("consumer", "acme"), ("service", "pay")] and b["deck"]["plugins"][0]["service"] == "pay"
     and b["deck"]["plugins"][1]["consumer"] == "acme"),
    ("GET", "/v1/imports", "/v1/imports?status=running", "", lambda b: [i["id"] for i in b["imports"]] == [IMPORT_ID]),
    ("POST", "/v1/events", "/v1/events", json.dumps(usage_event("e1")), lambda b: b["accepted"] == 1),
    ("POST", "/v1/imports", "/v1/imports", "", lambda b: b["status"] == "open"),
    ("PUT", "/v1/imports/{import_id}/batches/{number}", f"/v1/imports/{IMPORT_ID}/batches/0",
     json.dumps([usage_event("i1")]), lambda b: b["staged"] == 1),
    ("POST", "/v1/imports/{import_id}/commit", f"/v1/imports/{IMPORT_ID}/commit", "",
     lambda b: b["status"] == "committed" and b["result"] == {"accepted": 1, "duplicate": 0}),
    ("GET", "/openapi.json", "/openapi.json", "", lambda b: b["openapi"].startswith("3.")),
    ("GET", "/docs", "/docs", "", None),
    ("GET", "/docs/{asset}", "/docs/swagger-ui.css", "", None),
    ("GET", "/", "/", "", None),
    ("GET", "/dashboard", "/dashboard", "", None),
]


@pytest.fixture(scope="module")
def seeded(moto_server):
    """The configured table, seeded through the adapters: a service with 700 B, a quota, a rule, an
    alert; and the minute it was seeded at. The seed is near the real clock, as the legacy endpoint
    looks back from it: taken when the test runs, not when the module is imported (under a whole
    suite that can be many minutes earlier)."""
    now = int(time.time()) // 60 * 60
    env = {"TABLE_NAME": TABLE, "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_ENDPOINT_URL": moto_server,
           "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled", "ALERT_FROM": "alerts@example.com",
           "PROMETHEUS_URL": "http://127.0.0.1:9", "STAGE": "dev"}
    # The cold process reads ``env``; this one seeds through Settings built from it, and its
    # environment holds only what boto reads.
    saved = {name: os.environ.get(name) for name in BOTO_ENV}
    os.environ.update(BOTO_ENV)
    try:
        deps = bootstrap.override(from_env(env))
        from chalicelib.core import tables

        tables.ensure_table()
        minute = now - 120
        deps.store.put_buckets("1m", [BucketUsage("pay", minute, {"r": {"ingress": 0, "egress": 700}}, {},
                                                  {"alice": {"ingress": 0, "egress": 700}})])
        month = period_at("month", minute)
        deps.store.put_consumers([ConsumerUsage(
            CONSUMERS_PK, "alice", consumer="alice", first_seen=minute, last_active=minute, period_kind="month",
            period_anchor=1, period_start=month.start, period_end=month.end, ingress=0, egress=700, total=700,
            through=now - 60, services={"pay": {"ingress": 0, "egress": 700, "through": now - 60}})])
        deps.store.put_ranking("usage", ["alice"], 100, now)
        deps.store.put_ranking("percent", ["alice"], 100, now)
        deps.store.put_services([ServiceUsage(
            SERVICES_PK, "pay", service="pay", first_seen=minute, last_active=minute, period_kind="month",
            period_anchor=1, period_start=month.start, period_end=month.end, ingress=0, egress=700, total=700,
            through=now - 60)])
        deps.store.acquire_lease("seed", now, 1)
        deps.store.update_state("seed", watermark=now - 60, collection_start=now - 3600, gaps=[], running_since=None)
        deps.quotas.put("pay", json.loads(QUOTA))
        deps.quotas.put_rules(json.loads(RULES))
        ImportJob(IMPORTS_PK, IMPORT_ID, import_id=IMPORT_ID, status="open", created_at=now, updated_at=now,
                  expires_at=datetime.fromtimestamp(now + 86400, tz=timezone.utc)).save()
        deps.ledger.claim(Alert.record("pay", month.start, 80.0, period_end=month.end, status="sent",
                                       usage_bytes=800, limit_bytes=1000, recipients=["owner@example.com"],
                                       crossed_at=minute, claimed_at=minute), None)
        # A consumer over its reject quota, with an alert of its own (the collector writes the item).
        ConsumerUsage(CONSUMERS_PK, "acme", consumer="acme", first_seen=minute, last_active=minute,
                      period_kind="month", period_anchor=1, period_start=month.start, period_end=month.end,
                      ingress=0, egress=2500, total=2500, through=now - 60).save()
        deps.quotas.put("acme", json.loads(CONSUMER_QUOTA), kind=CONSUMER)
        deps.ledger.claim(Alert.record("acme", month.start, 90.0, kind=CONSUMER, period_end=month.end,
                                       status="sent", usage_bytes=1900, limit_bytes=2000, recipients=[],
                                       crossed_at=minute, claimed_at=minute), None)
    finally:
        bootstrap.reset()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    yield {**os.environ, **env}, now


def first_requests(env, cases, now):
    """Each (method, path, body) as the first request of a cold process; one process for all."""
    done = subprocess.run([sys.executable, "-c", FIRST_REQUESTS], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300, input=json.dumps([[c[0], c[2].format(start=now - 300, now=now), c[3]] for c in cases]))
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_cases_cover_every_route():
    import app

    routes = {(method, path) for path, entries in app.app.routes.items() for method in entries}
    assert routes == {(method, route) for method, route, *_ in CASES}


def test_every_route_reads_the_configured_table_as_a_cold_process_first_request(seeded):
    # Read-only cases first; the writes after, so each sees the seed as it was.
    ordered = [c for c in CASES if c[0] == "GET"] + [c for c in CASES if c[0] != "GET"]
    env, now = seeded
    answers = first_requests(env, ordered, now)
    assert len(answers) == len(ordered)
    for (method, _, path, _, proves), answer in zip(ordered, answers):
        assert answer["status"] < 400, (method, path, answer)
        if proves is not None:
            assert proves(json.loads(answer["body"])), (method, path, answer["body"][:500])
