"""The same path against LocalStack when one is reachable (`docker compose up localstack`);
skipped otherwise. LOCALSTACK_ENDPOINT (or AWS_ENDPOINT_URL) names it."""
import os
import time

import pytest
import requests

ENDPOINT = os.environ.get("LOCALSTACK_ENDPOINT") or os.environ.get("AWS_ENDPOINT_URL") or "http://localhost:4566"


def reachable() -> bool:
    try:
        return requests.get(f"{ENDPOINT}/_localstack/health", timeout=1).ok
    except requests.RequestException:
        return False


pytestmark = [pytest.mark.localstack,
              pytest.mark.skipif(not reachable(), reason=f"no LocalStack at {ENDPOINT}")]


def test_table_stream_alert_email_on_localstack(config):
    import localstack_client.session

    from chalicelib import bootstrap
    from chalicelib.core import tables
    from chalicelib.notify.mailer import SesMailer
    from chalicelib.core.models import SERVICES_PK, ServiceUsage

    settings = config.set(AWS_ENDPOINT_URL=ENDPOINT, TABLE_NAME=f"bm-smoke-{int(time.time())}").start().settings
    assert tables.ensure_table().startswith("arn:aws:dynamodb:")
    session = localstack_client.session.Session(region_name=settings.region)
    ses = session.client("ses")
    ses.verify_email_identity(EmailAddress=settings.alert_from)
    bootstrap.current().quotas.put("svc", {"limit_bytes": 100, "notify": ["owner@example.com"]})
    bootstrap.current().store.put_services([ServiceUsage(
        SERVICES_PK, "svc", service="svc", first_seen=0, last_active=0, period_kind="month", period_anchor=1,
        period_start=0, period_end=4_000_000_000, ingress=0, egress=95, total=95, through=int(time.time()))])
    processor = bootstrap.override(settings, mailer=SesMailer(ses, settings.alert_from)).alert_processor
    assert processor.evaluate("svc", time.time()) == 90
    messages = requests.get(f"{ENDPOINT}/_aws/ses", timeout=5).json()["messages"]
    assert any("svc reached 90%" in m.get("Subject", "") for m in messages)
