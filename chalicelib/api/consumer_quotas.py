"""``/v1/consumers/{consumer}/quota``: a consumer's own quota, as a service's is.

Same body, schema, versions (ETag / If-Match / 412), audit log and hostile-input rules as a
service quota (the quota book stores both, a consumer's under its own key). The consumer is
addressed by its key (names.qualified: ``ws:name`` outside Kong's default workspace).
"""
from __future__ import annotations

from typing import List

from chalicelib.api.overview import unseen_warning
from chalicelib.core.models import CONSUMER
from chalicelib.core.quotas import validate_consumer_name


def get(quotas, consumer: str):
    return quotas.get_versioned(validate_consumer_name(consumer), kind=CONSUMER)


def put(quotas, consumer: str, body, actor, if_match):
    return quotas.put_versioned(validate_consumer_name(consumer), body, actor=actor, if_match=if_match,
                                kind=CONSUMER)


def delete(quotas, consumer: str, actor, if_match) -> None:
    quotas.delete(validate_consumer_name(consumer), actor=actor, if_match=if_match, kind=CONSUMER)


def alert_history(ledger, consumer: str) -> List[dict]:
    return ledger.history(validate_consumer_name(consumer), kind=CONSUMER)


def unseen_warnings(consumers, consumer: str) -> List[str]:
    """Why a quota for ``consumer`` may be a typo: the collector has never counted it (with the
    closest keys it has). A quota for a consumer not seen yet is legitimate, so this only warns."""
    if consumers.get_consumer(consumer) is not None:
        return []
    return [unseen_warning("consumer", consumer, (item.consumer for item in consumers.list_consumers()))]


def with_warnings(answer: dict, consumers, consumer: str) -> dict:
    warnings = unseen_warnings(consumers, validate_consumer_name(consumer))
    return {**answer, "warnings": warnings} if warnings else answer
