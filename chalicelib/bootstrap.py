"""The one place that assembles Bandwidth Meter's parts from the settings.

``current()`` gives the parts of this process, built on first use (never at import, so
importing app.py costs nothing and a missing setting fails only the function that needs
it). Building them binds the models to the configured table, so every path that reads or
writes DynamoDB goes through here first.

Tests and the local runtime pass parts in instead of patching: ``override(clock=...,
prometheus=FakePrometheus(), mailer=RecordingMailer())`` builds the rest around them.
"""
from __future__ import annotations

import time
from functools import cached_property
from typing import Callable, Optional

import boto3

from chalicelib.core import models, secrets
from chalicelib.core.settings import Settings, from_env


class Bootstrap:
    """Every part a function needs. Each part is built once, when first asked for; a part
    passed to the constructor is used as it is (it shadows the cached property)."""

    def __init__(self, settings: Optional[Settings] = None, clock: Callable[[], float] = time.time, **parts):
        self.settings = settings or from_env()
        self.clock = clock
        unknown = set(parts) - _PARTS
        if unknown:
            raise TypeError(f"unknown parts: {', '.join(sorted(unknown))}")
        self.__dict__.update({name: part for name, part in parts.items() if part is not None})
        s = self.settings
        models.bind(s.table_name, s.region, s.aws_endpoint_url)

    @cached_property
    def boto_session(self) -> boto3.session.Session:
        return boto3.session.Session(region_name=self.settings.region)

    def aws_client(self, service: str):
        return self.boto_session.client(service, endpoint_url=self.settings.aws_endpoint_url)

    @cached_property
    def parameter_store(self):
        """SSM Parameter Store: secrets and the API key registry in AWS (cached, refreshed)."""
        from chalicelib.core.secrets import ParameterStore

        return ParameterStore(self.aws_client("ssm"), max_age=self.settings.secrets_max_age_seconds)

    def _with_secrets(self, *fields: str):
        """The settings with these secrets read from Parameter Store where a parameter names them."""
        return secrets.resolve(self.settings, lambda: self.parameter_store, *fields)

    # -- persistence (core) ------------------------------------------------------------------
    @cached_property
    def store(self):
        from chalicelib.core.store import UsageStore

        return UsageStore(minute_ttl_days=self.settings.minute_ttl_days, write_workers=self.settings.write_workers)

    @cached_property
    def imports(self):
        from chalicelib.core.imports import ImportBook

        return ImportBook(self.store.pushed)

    @cached_property
    def quotas(self):
        from chalicelib.core.quota_book import QuotaBook

        return QuotaBook(clock=self.clock, webhook_policy=self.webhook_policy)

    @cached_property
    def webhook_policy(self):
        from chalicelib.core.webhook_targets import WebhookTargetPolicy

        return WebhookTargetPolicy.from_settings(self.settings)

    @cached_property
    def ledger(self):
        from chalicelib.core.alert_ledger import AlertLedger

        return AlertLedger()

    # -- the collector -----------------------------------------------------------------------
    @cached_property
    def prometheus(self):
        from chalicelib.collect.prometheus import PrometheusClient

        return PrometheusClient.from_settings(self._with_secrets("prometheus_password", "prometheus_bearer_token"))

    @cached_property
    def collector(self):
        from chalicelib.collect.collector import Collector

        return Collector(self.prometheus, self.store, self.settings, quotas=self.quotas, clock=self.clock)

    # -- enforcement (the schedule's reconcile; the only part that gets the Kong Admin token) --
    @cached_property
    def enforcement_ledger(self):
        from chalicelib.core.enforcement_ledger import EnforcementLedger

        return EnforcementLedger()

    @cached_property
    def kong_admin(self):
        """The Kong Admin API adapter, or None: enforcement is off without KONG_ADMIN_URL."""
        from chalicelib.enforce.kong_admin import KongAdmin

        s = self.settings
        if not s.kong_admin_url:
            return None
        token = self._with_secrets("kong_admin_token").kong_admin_token
        return KongAdmin(s.kong_admin_url, token, s.kong_workspace, timeout=s.kong_admin_timeout_seconds)

    @cached_property
    def consumers(self):
        """Each consumer's usage as one item: its collector shards' items merged (quotas, alerts, blocks)."""
        from chalicelib.core.consumer_usage import ConsumerUsageReader

        return ConsumerUsageReader(self.store, self.settings.shard_count)

    @cached_property
    def enforcer(self):
        """The reconcile that makes Kong's blocks match the quotas, or None when enforcement is off."""
        from chalicelib.enforce.reconcile import Reconciler

        if self.kong_admin is None:
            return None
        return Reconciler(self.kong_admin, self.store, self.quotas, self.enforcement_ledger, consumers=self.consumers)

    def collector_for(self, shard: int):
        """Shard ``shard``'s collector. Shards may run at once in one process (`make run`), so each
        has its own store and Prometheus client (their counters feed its run report); a
        Prometheus passed in (a test's fake) is shared."""
        from chalicelib.collect.collector import Collector
        from chalicelib.collect.prometheus import PrometheusClient
        from chalicelib.core.store import UsageStore

        if shard == 0:
            return self.collector
        built = self.__dict__.setdefault("_shard_collectors", {})
        if shard not in built:
            prometheus = self.__dict__.get("prometheus") or PrometheusClient.from_settings(
                self._with_secrets("prometheus_password", "prometheus_bearer_token"))
            store = UsageStore(minute_ttl_days=self.settings.minute_ttl_days, write_workers=self.settings.write_workers)
            built[shard] = Collector(prometheus, store, self.settings, quotas=self.quotas, clock=self.clock, shard=shard)
        return built[shard]

    @cached_property
    def shard_invoker(self):
        """Starts the collector's shards: asynchronous invokes of the worker function."""
        from chalicelib.collect.fanout import LambdaShardInvoker

        return LambdaShardInvoker(self.aws_client("lambda"), self.settings.require("collect_shard_function"))

    # -- the alerts function -----------------------------------------------------------------
    @cached_property
    def mailer(self):
        from chalicelib.notify.mailer import SesMailer

        return SesMailer(self.aws_client("ses"), sender=self.settings.require("alert_from"))

    @cached_property
    def webhook(self):
        from chalicelib.notify.webhook import WebhookSender

        secret = self._with_secrets("webhook_secret").webhook_secret
        return WebhookSender(secret, clock=self.clock, policy=self.webhook_policy) if secret else None

    @cached_property
    def alert_processor(self):
        from chalicelib.notify.alerts import AlertProcessor

        return AlertProcessor(self.store, self.ledger, self.quotas, self.mailer,
                              public_url=self.settings.public_url, webhook=self.webhook,
                              enforcement_notifier=self.enforcement_notifier, consumers=self.consumers)

    @cached_property
    def enforcement_notifier(self):
        """Block started / ended notices: sent by the alerts function (the only one with SES rights)."""
        from chalicelib.notify.enforcement_mail import EnforcementNotifier

        return EnforcementNotifier(self.enforcement_ledger, self.mailer, self.settings.public_url, webhook=self.webhook)

    # -- the API -----------------------------------------------------------------------------
    @cached_property
    def access_guard(self):
        from chalicelib.api.access import AccessGuard

        return AccessGuard.from_settings(self.settings, parameter_store=lambda: self.parameter_store)


_PARTS = frozenset(name for name, value in vars(Bootstrap).items() if isinstance(value, cached_property))
_current: Optional[Bootstrap] = None


def current() -> Bootstrap:
    """This process's parts, built from the environment on first use."""
    global _current
    if _current is None:
        _current = Bootstrap()
    return _current


def override(settings: Optional[Settings] = None, clock: Callable[[], float] = time.time, **parts) -> Bootstrap:
    """Use these parts (and build the others) from now on: for tests and the local runtime."""
    global _current
    _current = Bootstrap(settings, clock, **parts)
    return _current


def reset() -> None:
    """Forget everything built (the next ``current()`` reads the environment again), the
    logging and metrics set up for it included."""
    global _current
    _current = None
    from chalicelib.core import observability

    observability.reset()
