"""The push API: usage events (``POST /v1/events``) and bulk imports (``/v1/imports``).

``POST /v1/events`` answers 200 whenever the request itself is acceptable (JSON, the right
content type, at most MAX_BATCH_EVENTS events), even if some or all of its events are refused:
the body says, event by event and in order, ``accepted``, ``duplicate`` (already counted, or
repeated within the request) or ``refused`` with the reason, like a 207 Multi-Status. A
refused event never blocks the others. A request that is not acceptable as a whole gets a 400
(or 413 for too many events or bytes) and nothing of it is counted.
"""
from __future__ import annotations

import re
from typing import List, Optional, Tuple

from chalicelib.api.http import PayloadTooLarge, json_body
from chalicelib.core.errors import BadRequest
from chalicelib.core.events import (MAX_BATCH_EVENTS, Judged, Refusal, UsageEvent, judge_all, repeats, result_entry,
                                    split_mode)

# 1,000 events of a few hundred bytes each, with room for long names; API Gateway takes 10 MB.
MAX_EVENTS_BODY_BYTES = 2 * 1024 * 1024
EVENT_CONTENT_TYPES = ["application/cloudevents+json", "application/cloudevents-batch+json", "application/json"]
BATCH_CONTENT_TYPES = ["application/cloudevents-batch+json", "application/json"]


def _events_of(raw_body: Optional[bytes], content_type: str, now: float, retention_days: int,
               batch_only: bool = False) -> Tuple[List[Judged], List[bool]]:
    body = json_body(raw_body, max_bytes=MAX_EVENTS_BODY_BYTES)
    raws: List[object]
    if batch_only:
        if not isinstance(body, list):
            raise BadRequest("an import batch must be a JSON array of events", parameter="body")
        raws, batch = body, True
    else:
        try:
            raws, batch = split_mode(content_type, body)
        except ValueError as e:
            raise BadRequest(str(e), parameter="body") from None
    if batch and not raws:
        raise BadRequest("the batch holds no event", parameter="body")
    if len(raws) > MAX_BATCH_EVENTS:
        raise PayloadTooLarge(f"a request may carry at most {MAX_BATCH_EVENTS} events; this one has {len(raws)}",
                              parameter="body")
    judged = judge_all(raws, now, retention_days)
    return judged, repeats(judged)


def post_events(pushed, raw_body: Optional[bytes], content_type: str, now: float, retention_days: int) -> dict:
    """Judge and count a request's events; the answer lists each one's fate."""
    judged, repeated = _events_of(raw_body, content_type, now, retention_days)
    fresh = [item for item, again in zip(judged, repeated) if isinstance(item, UsageEvent) and not again]
    statuses = iter(pushed.push(fresh, now).statuses)
    return summary(_results(judged, repeated, lambda: next(statuses), "request"))


def _results(judged: list, repeated: list, status_of_valid, where: str) -> List[dict]:
    """Each event's answer in order: refused (why), a repeat within ``where``, or ``status_of_valid()``."""
    results = []
    for index, (item, again) in enumerate(zip(judged, repeated)):
        if isinstance(item, Refusal):
            results.append(result_entry(index, item, "refused", item.reason))
        elif again:
            results.append(result_entry(index, item, "duplicate", f"repeats an earlier event of this {where}"))
        else:
            results.append(result_entry(index, item, status_of_valid()))
    return results


def summary(results: List[dict]) -> dict:
    counts = {status: sum(1 for r in results if r["status"] == status)
              for status in ("accepted", "duplicate", "refused", "staged") if any(r["status"] == status for r in results)}
    return {**{k: counts.get(k, 0) for k in ("accepted", "duplicate", "refused")},
            **({"staged": counts["staged"]} if "staged" in counts else {}), "results": results}


def put_import_batch(imports, import_id: str, number: str, raw_body: Optional[bytes], now: float,
                     retention_days: int) -> dict:
    """Store batch ``number`` of an import: its valid events wait for the commit (``staged``)."""
    if not re.fullmatch(r"[0-9]{1,6}", number):  # ASCII digits only (str.isdigit takes any script's)
        raise BadRequest("the batch number must be an integer from 0 to 999999", parameter="number")
    judged, repeated = _events_of(raw_body, "application/cloudevents-batch+json", now, retention_days,
                                  batch_only=True)
    valid = [item for item, again in zip(judged, repeated) if isinstance(item, UsageEvent) and not again]
    stored = imports.put_batch(import_id, int(number), valid, now)
    return {**stored, **summary(_results(judged, repeated, lambda: "staged", "batch"))}


def register_import(imports, raw_body: Optional[bytes], now: float) -> dict:
    """``POST /v1/imports``: an optional JSON body ``{"description": "..."}``."""
    description = None
    if raw_body:
        body = json_body(raw_body)
        if not isinstance(body, dict) or set(body) - {"description"} or not isinstance(body.get("description", ""), str) \
                or len(body.get("description", "")) > 200:
            raise BadRequest('the body is optional: {"description": "<at most 200 characters>"}', parameter="body")
        description = body.get("description") or None
    return imports.register(now, description)
