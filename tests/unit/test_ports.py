"""Every fake in tests/fakes and every real adapter implements its port (chalicelib/core/ports.py),
method for method; the behaviour behind the methods is tests/integration/test_contracts.py's."""
import pytest

from chalicelib.collect.prometheus import PrometheusClient
from chalicelib.core import ports
from chalicelib.core.alert_ledger import AlertLedger
from chalicelib.core.quota_book import QuotaBook
from chalicelib.core.store import UsageStore
from chalicelib.enforce.kong_admin import KongAdmin
from chalicelib.notify.mailer import SesMailer
from tests.fakes.kong import InMemoryKongAdmin
from tests.fakes.ledger import InMemoryAlertLedger, InMemoryQuotaBook
from tests.fakes.mailer import RecordingMailer
from tests.fakes.prometheus import FakePrometheus
from tests.fakes.usage_store import InMemoryUsageStore


@pytest.mark.parametrize("port, fake, real", [
    (ports.PrometheusReader, FakePrometheus, PrometheusClient),
    (ports.Mailer, RecordingMailer, SesMailer),
    (ports.AlertLedgerPort, InMemoryAlertLedger, AlertLedger),
    (ports.QuotaSource, InMemoryQuotaBook, QuotaBook),
    (ports.UsageReader, InMemoryUsageStore, UsageStore),
    (ports.UsageWriter, InMemoryUsageStore, UsageStore),
    (ports.KongAdminPort, InMemoryKongAdmin, KongAdmin),
], ids=lambda v: getattr(v, "__name__", "none"))
def test_the_fake_and_the_real_adapter_implement_the_port(port, fake, real):
    for adapter in (fake, real):
        if adapter is not None:
            assert ports.missing_methods(adapter, port) == [], adapter.__name__


def test_an_adapter_missing_a_method_is_named():
    class HalfMailer:
        pass

    assert ports.missing_methods(HalfMailer(), ports.Mailer) == ["send"]
    assert not isinstance(HalfMailer(), ports.Mailer)
