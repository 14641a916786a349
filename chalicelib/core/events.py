"""Pushed usage events: CloudEvents 1.0 in JSON, each checked on its own.

An event says that ``data.bytes`` bytes flowed through ``data.service`` (optionally one of its
routes and consumers) in one direction at ``time``. Its identity is (``source``, ``id``): it
counts once however often it is sent (chalicelib/core/pushed.py keeps that promise).

Each event of a batch is judged alone: a refused one (schema, unknown time, too old, in the
future, repeated within the batch) has a reason and never blocks the others. Events older than
the minutes' retention are refused: their minute item would already have expired, and their
(source, id) marker may have too, so accepting them could count a replay twice.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import jsonschema

from chalicelib.core.timeutil import DAY, MINUTE, TimeFormatError, floor_minute, iso, parse_time
from chalicelib.core.usage import ANONYMOUS_CONSUMER

EVENT_SCHEMA: dict = json.loads((Path(__file__).parent / "schemas" / "usage-event.json").read_text())
EVENT_TYPE = EVENT_SCHEMA["properties"]["type"]["const"]
MAX_BATCH_EVENTS = 1000
FUTURE_TOLERANCE_SECONDS = 5 * MINUTE  # clocks differ; bytes from further ahead have not flowed yet
NO_ROUTE = "(no route)"  # an event without a route (parentheses: not a Kong route name)

_VALIDATOR = jsonschema.Draft202012Validator(EVENT_SCHEMA)


@dataclass(frozen=True)
class UsageEvent:
    source: str
    id: str
    service: str
    direction: str
    bytes: int
    time: int  # epoch seconds
    route: str = NO_ROUTE
    consumer: str = ANONYMOUS_CONSUMER

    @property
    def minute(self) -> int:
        return floor_minute(self.time)

    @property
    def digest(self) -> str:
        """The identity (source, id) as a fixed-length key: both are free text."""
        return identity_digest(self.source, self.id)

    def as_record(self) -> list:
        """The compact form kept in batch records (pushed.py, imports.py)."""
        return [self.source, self.id, self.service, self.direction, self.bytes, self.time, self.route, self.consumer]

    @classmethod
    def from_record(cls, record: Sequence) -> "UsageEvent":
        source, id_, service, direction, nbytes, time, route, consumer = record
        return cls(source, id_, service, direction, int(nbytes), int(time), route, consumer)


def identity_digest(source: str, event_id: str) -> str:
    return hashlib.sha256(f"{len(source)}:{source}\x00{event_id}".encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class Refusal:
    reason: str
    id: Optional[str] = None
    source: Optional[str] = None


Judged = Union[UsageEvent, Refusal]


def oldest_accepted(now: float, retention_days: int) -> int:
    """The earliest minute an event may fall in: the minutes' retention, less the minute now is in
    (whose item would expire within the minute), so an accepted event's minute is still kept."""
    return floor_minute(now) - retention_days * DAY + MINUTE


def judge(raw: object, now: float, retention_days: int) -> Judged:
    """One event of a request: the event, or why it is refused."""
    if not isinstance(raw, dict):
        return Refusal("an event must be a JSON object")
    event_id = raw.get("id") if isinstance(raw.get("id"), str) else None
    source = raw.get("source") if isinstance(raw.get("source"), str) else None
    errors = sorted(_VALIDATOR.iter_errors(raw), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        where = "/".join(str(p) for p in first.absolute_path) or "(event)"
        return Refusal(f"{where}: {_short(first.message)}", event_id, source)
    try:
        at = parse_time(raw["time"])
    except TimeFormatError as e:
        return Refusal(f"time: {e}", event_id, source)
    if at > now + FUTURE_TOLERANCE_SECONDS:
        return Refusal(f"time: {raw['time']} is in the future (more than {FUTURE_TOLERANCE_SECONDS // MINUTE} "
                       "minutes ahead of the server's clock)", event_id, source)
    oldest = oldest_accepted(now, retention_days)
    if at < oldest:
        return Refusal(f"time: {raw['time']} is older than the {retention_days} days minutes are kept "
                       f"(the oldest accepted is {iso(oldest)}); it can no longer be counted", event_id, source)
    data = raw["data"]
    assert source is not None and event_id is not None  # the schema requires both as strings
    return UsageEvent(source, event_id, data["service"], data["direction"], int(data["bytes"]), at,
                      data.get("route", NO_ROUTE), data.get("consumer", ANONYMOUS_CONSUMER))


def judge_all(raws: Sequence[object], now: float, retention_days: int) -> List[Judged]:
    """Each event judged alone; an identity repeated within the request counts at its first place
    (the later ones are reported as duplicates by the caller, see ``repeats``)."""
    return [judge(raw, now, retention_days) for raw in raws]


def repeats(judged: Sequence[Judged]) -> List[bool]:
    """Whether each event repeats an earlier one of the same request (same source and id)."""
    seen, result = set(), []
    for item in judged:
        if isinstance(item, UsageEvent):
            result.append(item.digest in seen)
            seen.add(item.digest)
        else:
            result.append(False)
    return result


def _short(message: str) -> str:
    return message if len(message) <= 200 else message[:197] + "..."


def result_entry(index: int, item: Judged, status: str, reason: Optional[str] = None) -> dict:
    """One line of an answer: the event's place, identity and fate."""
    entry = {"index": index, "id": item.id, "source": item.source, "status": status}
    if reason:
        entry["reason"] = reason
    return entry


def split_mode(content_type: str, body: object) -> Tuple[List[object], bool]:
    """The events of a request body by its content type: ``application/cloudevents-batch+json``
    is an array, ``application/cloudevents+json`` and ``application/json`` one event. Returns
    (events, batch). Raises ValueError with what was wrong."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media == "application/cloudevents-batch+json":
        if not isinstance(body, list):
            raise ValueError("a batch (application/cloudevents-batch+json) must be a JSON array of events")
        return body, True
    if isinstance(body, list):
        raise ValueError("a JSON array of events is a batch: send it as application/cloudevents-batch+json")
    return [body], False
