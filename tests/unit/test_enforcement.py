"""Enforcement's pure parts: the quota's action, the blocks due, the decK file, the owner notices'
text and the settings. The reconcile against a real Admin API is in tests/integration/test_enforcement.py."""
import pytest

from chalicelib.core.enforcement import Block, due_blocks
from chalicelib.core.errors import BadRequest
from chalicelib.core.models import SERVICES_PK, ServiceUsage
from chalicelib.core.periods import period_at
from chalicelib.core.quotas import QuotaSnapshot, normalize_quota, normalize_rules
from chalicelib.core.settings import ConfigError, from_env
from chalicelib.enforce.kong_plugin import block_message, deck_snippet
from chalicelib.notify.enforcement_mail import render

DEC1 = 1_796_083_200  # 2026-12-01T00:00Z
NOV = period_at("month", DEC1 - 60)
BASE = {"TABLE_NAME": "t", "AWS_REGION": "us-east-1"}


def usage_item(service, total):
    return ServiceUsage(SERVICES_PK, service, service=service, first_seen=NOV.start, last_active=NOV.start,
                        period_kind="month", period_anchor=1, period_start=NOV.start, period_end=NOV.end,
                        ingress=0, egress=total, total=total, through=DEC1 - 60)


def test_a_quota_warns_by_default():
    assert normalize_quota({"limit_bytes": 10})["action"] == "warn"
    assert "reject_at" not in normalize_quota({"limit_bytes": 10})


def test_a_reject_quota_blocks_from_100_percent_by_default():
    assert normalize_quota({"limit_bytes": 10, "action": "reject"})["reject_at"] == 100


def test_reject_at_without_action_reject_is_refused():
    with pytest.raises(BadRequest) as refused:
        normalize_quota({"limit_bytes": 10, "reject_at": 90})
    assert "action" in refused.value.parameter


@pytest.mark.parametrize("body", [{"limit_bytes": 10, "action": "block"},
                                  {"limit_bytes": 10, "action": "reject", "reject_at": 0},
                                  {"limit_bytes": 10, "action": "reject", "reject_at": "90"}])
def test_a_bad_action_or_reject_level_is_refused(body):
    with pytest.raises(BadRequest):
        normalize_quota(body)


def test_a_rule_can_reject_too():
    [rule] = normalize_rules({"rules": [{"pattern": "pay*", "limit_bytes": 10, "action": "reject", "reject_at": 80}]})
    snapshot = QuotaSnapshot({}, [rule])
    quota = snapshot.quota_for("payments")
    assert quota.rejects_at(8) and not quota.rejects_at(7)


def test_blocks_are_due_from_reject_at_for_reject_quotas_only():
    snapshot = QuotaSnapshot({"pay": normalize_quota({"limit_bytes": 1000, "action": "reject", "reject_at": 90}),
                              "media": normalize_quota({"limit_bytes": 1000})}, [])
    items = [usage_item("pay", 900), usage_item("media", 5000), usage_item("search", 10**9)]
    due = due_blocks(None, items, snapshot, DEC1 - 60)
    assert list(due) == ["pay"]
    assert due["pay"].usage_bytes == 900 and due["pay"].period_end == DEC1


class CountingStore:
    """Which reads the block candidates cost: a whole listing, or some services by name."""

    def __init__(self, items):
        self.items, self.listed, self.named = items, 0, []

    def list_services(self):
        self.listed += 1
        return list(self.items)

    def get_services(self, names):
        self.named.append(list(names))
        return [item for item in self.items if item.service in names]


def test_the_reconcile_reads_only_services_a_quota_may_block():
    from chalicelib.core.enforcement import block_candidates

    fleet = [usage_item(name, 10) for name in ("pay", "media", "search")]
    warn_only = QuotaSnapshot({"media": normalize_quota({"limit_bytes": 1000})}, [])
    store = CountingStore(fleet)
    assert block_candidates(store, warn_only) == [] and (store.listed, store.named) == (0, [])
    own = QuotaSnapshot({"pay": normalize_quota({"limit_bytes": 1000, "action": "reject"}),
                         "media": normalize_quota({"limit_bytes": 1000})}, [])
    assert [i.service for i in block_candidates(store, own)] == ["pay"] and store.listed == 0
    [rule] = normalize_rules({"rules": [{"pattern": "s*", "limit_bytes": 10, "action": "reject"}]})
    assert len(block_candidates(store, QuotaSnapshot({}, [rule]))) == 3 and store.listed == 1


def test_no_block_is_due_in_a_new_period():
    snapshot = QuotaSnapshot({"pay": normalize_quota({"limit_bytes": 1000, "action": "reject"})}, [])
    assert due_blocks(None, [usage_item("pay", 5000)], snapshot, DEC1) == {}


def test_the_message_names_the_quota_and_when_it_resets_and_stays_the_same_all_period():
    one = Block("pay", 1000, 1000, 100, "total", "monthly", NOV.start, NOV.end, "service")
    later = Block("pay", 5000, 1000, 100, "total", "monthly", NOV.start, NOV.end, "service")
    assert block_message(one) == block_message(later)
    assert "pay reached 100% of its monthly quota of 1000 bytes" in block_message(one)
    assert "until 2026-12-01T00:00:00Z" in block_message(one)


def test_the_deck_file_holds_exactly_our_plugins_by_service_name():
    block = Block("pay", 1000, 1000, 100, "total", "monthly", NOV.start, NOV.end, "service")
    deck = deck_snippet([block])
    assert deck["_format_version"] == "3.0" and deck["_info"] == {"select_tags": ["bandwidth-meter"]}
    assert deck["plugins"] == [{"name": "request-termination", "service": "pay", "tags": ["bandwidth-meter"],
                                "config": {"status_code": 429, "message": block_message(block)}}]


def test_notices_escape_the_service_name_in_html():
    entry = {"service": "<b>pay</b>", "usage_bytes": 10, "limit_bytes": 5, "reject_at": 100,
             "period_end": "2026-12-01T00:00:00Z"}
    subject, text, html = render("block", entry, "http://x")
    assert "<b>pay</b>" in subject and "429" in text
    assert "&lt;b&gt;pay&lt;/b&gt;" in html and "<b>pay</b>" not in html


def test_enforcement_is_off_without_a_kong_admin_url():
    settings = from_env(BASE)
    assert settings.kong_admin_url is None


def test_the_kong_settings_are_read_once():
    settings = from_env({**BASE, "KONG_ADMIN_URL": "http://kong:8001/", "KONG_ADMIN_TOKEN": "s3cret",
                         "KONG_WORKSPACE": "team-a"})
    assert (settings.kong_admin_url, settings.kong_admin_token, settings.kong_workspace) == \
        ("http://kong:8001", "s3cret", "team-a")
    assert "s3cret" not in repr(settings)


@pytest.mark.parametrize("env, named", [({"KONG_ADMIN_URL": "kong:8001"}, "KONG_ADMIN_URL"),
                                        ({"KONG_WORKSPACE": "a/b"}, "KONG_WORKSPACE"),
                                        ({"KONG_ADMIN_TOKEN": "x", "AWS_LAMBDA_FUNCTION_NAME": "f"},
                                         "KONG_ADMIN_TOKEN_PARAMETER")])
def test_bad_kong_settings_fail_fast_naming_the_variable(env, named):
    with pytest.raises(ConfigError) as failed:
        from_env({**BASE, **env})
    assert named in str(failed.value)


def test_a_threshold_email_of_a_reject_quota_says_the_service_is_blocked(aws):
    from chalicelib import bootstrap
    from tests.fakes.mailer import RecordingMailer

    mailer = RecordingMailer()
    deps = bootstrap.override(aws, mailer=mailer)
    deps.quotas.put("pay", {"limit_bytes": 1000, "action": "reject", "reject_at": 100, "thresholds": [80, 100],
                            "notify": ["ops@example.com"]})
    deps.alert_processor.evaluate("pay", DEC1 - 60, usage_item("pay", 800))
    deps.alert_processor.evaluate("pay", DEC1 - 60, usage_item("pay", 1000))
    first, second = mailer.sent
    assert "refused (HTTP 429) from 100% of the quota until 2026-12-01T00:00:00Z" in first["text"]
    assert "will be blocked" not in first["text"] and "blocked now" not in second["text"]
    assert "this service will be blocked at the gateway within a minute" in second["text"]


def test_a_threshold_email_of_a_warn_quota_says_nothing_of_blocking(aws):
    from chalicelib import bootstrap
    from tests.fakes.mailer import RecordingMailer

    mailer = RecordingMailer()
    deps = bootstrap.override(aws, mailer=mailer)
    deps.quotas.put("pay", {"limit_bytes": 1000, "notify": ["ops@example.com"]})
    deps.alert_processor.evaluate("pay", DEC1 - 60, usage_item("pay", 1000))
    assert "429" not in mailer.sent[0]["text"]
