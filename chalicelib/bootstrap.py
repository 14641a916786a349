"""The one place that assembles Bandwidth Meter's parts from the settings.

Everything is built lazily on first use, never at import, so importing app.py
costs nothing and a missing setting fails only the function that needs it.
"""
from __future__ import annotations

import functools

import boto3

from chalicelib.core import models, secrets
from chalicelib.core.settings import Settings, from_env


@functools.lru_cache(maxsize=None)
def settings() -> Settings:
    return from_env()


def reset() -> None:
    """Forget everything built (tests change the environment between cases)."""
    for getter in (settings, store, prometheus, collector, mailer, alert_processor, quota_book, access_guard,
                   _boto_session, parameter_store):
        getter.cache_clear()


@functools.lru_cache(maxsize=None)
def _boto_session() -> boto3.session.Session:
    return boto3.session.Session(region_name=settings().region)


def aws_client(service: str):
    s = settings()
    return _boto_session().client(service, endpoint_url=s.aws_endpoint_url)


@functools.lru_cache(maxsize=None)
def store():
    from chalicelib.core.store import UsageStore

    s = settings()
    models.configure(s.table_name, s.region, s.aws_endpoint_url)
    return UsageStore(minute_ttl_days=s.minute_ttl_days)


@functools.lru_cache(maxsize=None)
def prometheus():
    from chalicelib.collect.prometheus import PrometheusClient

    s = secrets.resolve(settings(), parameter_store, "prometheus_password", "prometheus_bearer_token")
    return PrometheusClient.from_settings(s)


@functools.lru_cache(maxsize=None)
def collector():
    from chalicelib.collect.collector import Collector

    return Collector(prometheus(), store(), settings(), quotas=quota_book())


@functools.lru_cache(maxsize=None)
def mailer():
    from chalicelib.notify.mailer import SesMailer

    s = settings()
    return SesMailer(aws_client("ses"), sender=s.require("alert_from"))


@functools.lru_cache(maxsize=None)
def alert_processor():
    from chalicelib.notify.alerts import AlertProcessor

    from chalicelib.notify.webhook import WebhookSender

    s = secrets.resolve(settings(), parameter_store, "webhook_secret")
    webhook = WebhookSender(s.webhook_secret) if s.webhook_secret else None
    return AlertProcessor(store(), mailer(), public_url=s.public_url, quotas=quota_book(), webhook=webhook)


@functools.lru_cache(maxsize=None)
def quota_book():
    from chalicelib.core.quotas import QuotaBook

    store()  # binds the models to the configured table
    return QuotaBook()


def status_report(now: float) -> dict:
    from chalicelib.api.status import collector_status

    return collector_status(store().state(), settings(), now)


@functools.lru_cache(maxsize=None)
def access_guard():
    from chalicelib.api.access import AccessGuard

    return AccessGuard.from_settings(settings(), parameter_store=parameter_store)


@functools.lru_cache(maxsize=None)
def parameter_store():
    """SSM Parameter Store: secrets and the API key registry in AWS (cached, refreshed)."""
    from chalicelib.core.secrets import ParameterStore

    return ParameterStore(aws_client("ssm"), max_age=settings().secrets_max_age_seconds)
