"""Bulk imports: register, append numbered batches, commit once (the adapter; pushed.py counts).

- **register** stores an open ImportJob that expires (TTL, and refused by the code once past it)
  after OPEN_DAYS: an import never committed counts nothing and disappears.
- **batches** are numbered by the client; ``PUT batch n`` stores (or replaces) batch n's valid
  events and notes n on the job in one transaction whose condition is that the job is still open,
  so a batch is either in the import before the commit starts or refused (409), never half in.
  Sending batch n again is harmless: the same number holds the same place.
- **commit** applies the batches in number order through the same claim/apply steps as pushed
  events (chalicelib/core/pushed.py), batch n under the key ``import-<id>-<n>``. Nothing of the
  import counts before; each batch's groups are applied once, so a commit that is retried,
  resumed after a crash or run twice at once counts each event once. A large import is committed
  in several calls: each applies batches for at most ``budget_seconds`` and says how far it got;
  the job records the last batch applied, so the next call resumes after it.

Events are judged (schema, retention) when their batch arrives, not again at commit: a batch's
claimed events must be the same at every run of its commit (see pushed.py). Batch items keep
BATCH_GRACE_DAYS longer than the job's open period, the time a started commit has to finish.
"""
from __future__ import annotations

import time
import uuid
from datetime import datetime, timezone
from typing import Callable, Dict, List, Optional, Sequence

from pynamodb.exceptions import PynamoDBException

from chalicelib.core.errors import BadRequest, Conflict, NotFound, StoreError
from chalicelib.core.events import UsageEvent
from chalicelib.core.models import IMPORTS_PK, ImportBatch, ImportJob, import_batch_key, is_condition_failure, read_item, transaction
from chalicelib.core.pushed import ACCEPTED, PushedUsage, pack_events, unpack_events
from chalicelib.core.timeutil import DAY, iso

OPEN_DAYS = 7
BATCH_GRACE_DAYS = 7
MAX_BATCH_NUMBER = 999_999
MAX_BATCHES = 10_000  # batches of one import (10 million events at 1,000 a batch)
MAX_STORED_BATCH_BYTES = 350_000  # one item holds 400 KB; the compressed events must fit
RUNNING = ("open", "committing")
COMMITTED_KEEP_DAYS = 36


class ImportBook:
    def __init__(self, pushed: PushedUsage, monotonic: Callable[[], float] = time.monotonic):
        self.pushed = pushed
        self.monotonic = monotonic

    def register(self, now: float, description: Optional[str] = None) -> dict:
        job = ImportJob(IMPORTS_PK, uuid.uuid4().hex, import_id="", status="open", description=description,
                        created_at=int(now), updated_at=int(now), events=0, expires_at=_at(now + OPEN_DAYS * DAY))
        job.import_id = job.sk
        try:
            job.save(condition=ImportJob.pk.does_not_exist())
        except PynamoDBException as e:
            raise StoreError(f"registering an import failed: {e}") from e
        return describe(job)

    def job(self, import_id: str, now: float) -> ImportJob:
        """The import, or NotFound (also once an uncommitted one has expired)."""
        if not (1 <= len(import_id) <= 64 and import_id.isalnum()):
            raise NotFound(f"unknown import {import_id!r}")
        job = read_item(ImportJob, (IMPORTS_PK, import_id), f"import {import_id}")
        if job is None or (job.status == "open" and _expired(job, now)):
            raise NotFound(f"unknown import {import_id!r} (an import not committed within {OPEN_DAYS} days expires "
                           "and counts nothing)")
        return job

    def put_batch(self, import_id: str, number: int, events: Sequence[UsageEvent], now: float) -> dict:
        job = self.job(import_id, now)
        if job.status != "open":
            raise Conflict(f"import {import_id} is {job.status}: no batch can be added or changed")
        if str(number) not in (job.batches or set()) and len(job.batches or ()) >= MAX_BATCHES:
            raise BadRequest(f"an import holds at most {MAX_BATCHES} batches", parameter="number")
        blob = pack_events(events)
        if len(blob) > MAX_STORED_BATCH_BYTES:
            raise BadRequest(f"batch {number} is too large to store ({len(blob)} bytes compressed, at most "
                             f"{MAX_STORED_BATCH_BYTES}): send fewer events per batch", parameter="body")
        batch = ImportBatch(*import_batch_key(import_id, number), events=blob, count=len(events),
                            expires_at=_at(job.expires_at.timestamp() + BATCH_GRACE_DAYS * DAY))
        try:
            with transaction() as tx:
                tx.update(ImportJob(IMPORTS_PK, import_id), actions=[
                    ImportJob.batches.add({str(number)}), ImportJob.updated_at.set(int(now))],
                    condition=(ImportJob.status == "open"))
                tx.save(batch)
        except PynamoDBException as e:
            if is_condition_failure(e):
                raise Conflict(f"import {import_id} is no longer open: batch {number} was not added") from e
            raise StoreError(f"storing batch {number} of import {import_id} failed: {e}") from e
        return {"import": import_id, "batch": number, "events": len(events)}

    def commit(self, import_id: str, now: float, budget_seconds: float = 20.0) -> dict:
        """Apply the import's batches not yet applied, for at most ``budget_seconds``; the answer's
        ``status`` is ``committed`` once all are (call again while it is ``committing``)."""
        job = self.job(import_id, now)
        if job.status == "committed":
            return describe(job)
        if job.status == "open":
            # No longer the open import's expiry: a started commit is finished (its batches keep
            # BATCH_GRACE_DAYS past the open period, at least that long from now).
            self._update(job, [ImportJob.status.set("committing"), ImportJob.updated_at.set(int(now)),
                               ImportJob.expires_at.set(_at(now + COMMITTED_KEEP_DAYS * DAY))],
                         ImportJob.status.is_in(*RUNNING))
        started = self.monotonic()
        numbers = sorted(int(n) for n in (job.batches or ()))
        through = int(job.committed_through) if job.committed_through is not None else -1
        result: Dict[str, int] = dict(job.result or {"accepted": 0, "duplicate": 0})
        applied_here = 0
        for number in [n for n in numbers if n > through]:
            if applied_here and self.monotonic() - started > budget_seconds:
                break  # at least one batch per call, so every call makes progress
            batch = read_item(ImportBatch, import_batch_key(import_id, number), f"batch {number} of import {import_id}")
            if batch is None:
                raise StoreError(f"batch {number} of import {import_id} is missing (expired?)")
            events = unpack_events(batch.events)
            outcome = self.pushed.apply(f"import-{import_id}-{number}", events, now)
            accepted = sum(1 for s in outcome.statuses if s == ACCEPTED)
            result = {"accepted": result["accepted"] + accepted,
                      "duplicate": result["duplicate"] + len(events) - accepted}
            # Recorded only if no other commit of the same import got further meanwhile.
            condition = ImportJob.committed_through.does_not_exist() | (ImportJob.committed_through < number)
            if not self._update(job, [ImportJob.committed_through.set(number), ImportJob.result.set(result),
                                      ImportJob.updated_at.set(int(now))], condition, lost_ok=True):
                return describe(self.job(import_id, now))
            through = number
            applied_here += 1
        if through == (numbers[-1] if numbers else -1):
            self._update(job, [ImportJob.status.set("committed"), ImportJob.committed_at.set(int(now)),
                               ImportJob.result.set(result),
                               ImportJob.expires_at.set(_at(now + COMMITTED_KEEP_DAYS * DAY))],
                         ImportJob.status.is_in(*RUNNING), lost_ok=True)
        return describe(self.job(import_id, now))

    def running(self, now: float, limit: int = 100) -> List[dict]:
        """Open and committing imports, oldest first."""
        try:
            jobs = ImportJob.query(IMPORTS_PK, filter_condition=ImportJob.status.is_in(*RUNNING))
            return [describe(j) for j in jobs if not (j.status == "open" and _expired(j, now))][:limit]
        except PynamoDBException as e:
            raise StoreError(f"listing imports failed: {e}") from e

    def _update(self, job: ImportJob, actions, condition, lost_ok: bool = False) -> bool:
        try:
            job.update(actions=actions, condition=condition)
            return True
        except PynamoDBException as e:
            if is_condition_failure(e):
                if lost_ok:
                    return False
                raise Conflict(f"import {job.sk} changed meanwhile; try again") from e
            raise StoreError(f"updating import {job.sk} failed: {e}") from e


def describe(job: ImportJob) -> dict:
    numbers = sorted(int(n) for n in (job.batches or ()))
    through = int(job.committed_through) if job.committed_through is not None else None
    return {"id": job.sk, "status": job.status, "description": job.description,
            "created": iso(job.created_at), "batches": len(numbers),
            "batches_applied": len([n for n in numbers if through is not None and n <= through]),
            "result": job.result if job.status == "committed" else None,
            "committed": iso(job.committed_at) if job.committed_at is not None else None,
            "expires": iso(job.expires_at.timestamp()) if job.expires_at is not None and job.status == "open" else None}


def _expired(job: ImportJob, now: float) -> bool:
    return job.expires_at is not None and job.expires_at.timestamp() <= now


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(int(seconds), tz=timezone.utc)
