"""The services overview: each service's usage in its current quota period."""
from __future__ import annotations

import base64
import difflib
import itertools
import json
from typing import Iterable, List, Optional

from chalicelib.core.errors import BadRequest
from chalicelib.core.quotas import EffectiveQuota, meaningful
from chalicelib.core.timeutil import iso
from chalicelib.core.usage import PeriodUsage, period_usage_and_pushed


def percent(usage: PeriodUsage, quota: EffectiveQuota) -> Optional[float]:
    if quota.limit_bytes is None:
        return None
    return round(100.0 * usage.of(quota.direction) / quota.limit_bytes, 2)


def shown_quota(quota: EffectiveQuota) -> Optional[dict]:
    """The quota as the overview shows it: anchor_day (a monthly billing-cycle day) only for a
    monthly period, where it means something."""
    body = quota.as_dict()
    return meaningful(body) if body is not None else None


def service_summary(store, item, quota: EffectiveQuota, now: float) -> dict:
    """The service in its current period: ``usage`` counts every byte (scraped and pushed, what
    quotas judge); ``pushed`` is the part of it that was pushed (POST /v1/events, imports)."""
    usage, pushed = period_usage_and_pushed(store, item, quota, now)
    period = usage.period
    return {
        "service": item.service,
        "usage": usage.as_dict(),
        "pushed": pushed.as_dict(),
        "period": {"kind": period.kind, "start": iso(period.start), "end": iso(period.end)},
        "quota": shown_quota(quota),
        "percent": percent(usage, quota),
        "first_seen": iso(item.first_seen),
        "last_active": iso(item.last_active),
    }


def _cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset}).encode()).decode()


MAX_CURSOR_CHARS = 64  # ours are about 20; a forged one is refused before decoding
MAX_OFFSET = 10**9


def _offset(cursor: Optional[str]) -> int:
    """The offset a cursor of ours holds; anything else (garbage, ``1e999``, a float, a huge or
    negative number) is refused as a 400, never a 500."""
    if not cursor:
        return 0
    try:
        if len(cursor) > MAX_CURSOR_CHARS:
            raise ValueError("too long")
        offset = json.loads(base64.urlsafe_b64decode(cursor.encode("ascii")))["o"]
    except (ValueError, KeyError, TypeError, UnicodeError, RecursionError):
        offset = None
    if type(offset) is not int or not 0 <= offset <= MAX_OFFSET:  # bool and float are not offsets
        raise BadRequest("cursor is not one this API returned", parameter="cursor")
    return offset


def list_services(store, snapshot, now: float, sort: str, order: str, limit: int, cursor: Optional[str]) -> dict:
    rows = [service_summary(store, item, snapshot.quota_for(item.service), now) for item in store.list_services()]
    if sort == "name":
        rows.sort(key=lambda r: r["service"], reverse=(order == "desc"))
    elif sort == "percent":
        rows.sort(key=lambda r: (r["percent"] is not None, r["percent"] or 0, r["service"]), reverse=(order == "desc"))
    else:
        rows.sort(key=lambda r: (r["usage"]["total"], r["service"]), reverse=(order == "desc"))
    offset = _offset(cursor)
    page = rows[offset:offset + limit]
    more = offset + limit < len(rows)
    return {"services": page, "total_count": len(rows), "next_cursor": _cursor(offset + limit) if more else None}


MAX_KNOWN_NAMES = 1000  # the names a suggestion is drawn from: one page of the services query


def close_names(name: str, known: List[str], n: int = 3) -> List[str]:
    """The known names closest to ``name`` (difflib), best first."""
    return difflib.get_close_matches(name, known, n=n, cutoff=0.6)


def unseen_warnings(store, service: str) -> List[str]:
    """Why a quota for ``service`` may be a typo: it has never been seen, with the closest names
    that have. A quota for a service not seen yet is legitimate (it may start tomorrow), so this
    warns and refuses nothing. One read for a seen service; for an unseen one, one bounded read
    of the known names (the first MAX_KNOWN_NAMES, enough for a suggestion)."""
    if store.get_service(service) is not None:
        return []
    return [unseen_warning("service", service, (item.service for item in store.list_services()))]


def unseen_warning(kind: str, name: str, known: Iterable[str]) -> str:
    """A quota's subject never seen, with the closest of the first MAX_KNOWN_NAMES ``known`` names."""
    close = close_names(name, list(itertools.islice(known, MAX_KNOWN_NAMES)))
    hint = "; did you mean " + " or ".join(repr(n) for n in close) + "?" if close else \
        "; the quota applies once it carries traffic"
    return f"{kind} {name!r} has not been seen{hint}"


def with_warnings(answer: dict, store, service: str) -> dict:
    """A PUT answer with ``warnings`` when the subject has never been seen (else unchanged)."""
    warnings = unseen_warnings(store, service)
    return {**answer, "warnings": warnings} if warnings else answer
