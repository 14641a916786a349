"""A DynamoDB stream poller that plays Lambda's event-source mapping.

Per shard, in order: read a batch, invoke the handler with the event Lambda would
send, and on failure retry the batch with backoff up to ``max_attempts`` times; with
``batchItemFailures`` resume from the lowest failed sequence number
(ReportBatchItemFailures). A batch that keeps failing is reported (a log line and a
file under ``failed_dir``, the on-failure destination) and skipped, so one poison
record cannot block the stream forever.
"""
from __future__ import annotations

import json
import logging
import os
import time
from datetime import datetime
from typing import Callable, Dict, Optional

log = logging.getLogger("localrun.streams")


class StreamPoller:
    def __init__(self, client, stream_arn: str, handler: Callable, batch_size: int = 100, max_attempts: int = 3,
                 failed_dir: Optional[str] = None, sleep: Callable[[float], None] = time.sleep, context=None):
        self.client = client
        self.stream_arn = stream_arn
        self.handler = handler
        self.batch_size = batch_size
        self.max_attempts = max_attempts
        self.failed_dir = failed_dir
        self.sleep = sleep
        self.context = context
        self.iterators: Dict[str, Optional[str]] = {}  # shard -> next iterator (None: shard closed)
        self.invocations = 0
        self.skipped_batches = 0

    def _iterator(self, shard_id: str, kind: str, sequence: Optional[str] = None) -> str:
        args = {"StreamArn": self.stream_arn, "ShardId": shard_id, "ShardIteratorType": kind}
        if sequence:
            args["SequenceNumber"] = sequence
        return self.client.get_shard_iterator(**args)["ShardIterator"]

    def _discover(self) -> None:
        for shard in self.client.describe_stream(StreamArn=self.stream_arn)["StreamDescription"]["Shards"]:
            if shard["ShardId"] not in self.iterators:
                self.iterators[shard["ShardId"]] = self._iterator(shard["ShardId"], "TRIM_HORIZON")

    def _event(self, records) -> dict:
        out = []
        for record in records:
            record = dict(record)
            dynamodb = dict(record["dynamodb"])
            created = dynamodb.get("ApproximateCreationDateTime")
            if isinstance(created, datetime):
                dynamodb["ApproximateCreationDateTime"] = created.timestamp()
            record["dynamodb"] = dynamodb
            record["eventSourceARN"] = self.stream_arn
            out.append(record)
        return {"Records": out}

    def poll_once(self) -> int:
        """One pass over every open shard; returns the number of records delivered."""
        self._discover()
        delivered = 0
        for shard_id, iterator in list(self.iterators.items()):
            if iterator is None:
                continue
            answer = self.client.get_records(ShardIterator=iterator, Limit=self.batch_size)
            records = answer.get("Records", [])
            if records:
                delivered += self._deliver(shard_id, records)
                last = records[-1]["dynamodb"]["SequenceNumber"]
                self.iterators[shard_id] = self._iterator(shard_id, "AFTER_SEQUENCE_NUMBER", last)
            else:
                self.iterators[shard_id] = answer.get("NextShardIterator")
        return delivered

    def _deliver(self, shard_id: str, records) -> int:
        batch = records
        for attempt in range(1, self.max_attempts + 1):
            self.invocations += 1
            try:
                result = self.handler(self._event(batch), self.context)
            except Exception as e:  # Lambda retries a batch whose invocation raised
                log.error("stream handler failed on %d records (attempt %d/%d): %s", len(batch), attempt,
                          self.max_attempts, e)
                self.sleep(min(2 ** attempt * 0.5, 10))
                continue
            failed = [f["itemIdentifier"] for f in (result or {}).get("batchItemFailures", [])]
            if not failed:
                return len(records)
            lowest = min(failed, key=int)
            batch = [r for r in batch if int(r["dynamodb"]["SequenceNumber"]) >= int(lowest)]
            log.warning("stream handler reported %d failed records; retrying from %s (attempt %d/%d)",
                        len(failed), lowest, attempt, self.max_attempts)
            self.sleep(min(2 ** attempt * 0.5, 10))
        self._give_up(shard_id, batch)
        return len(records)

    def _give_up(self, shard_id: str, batch) -> None:
        self.skipped_batches += 1
        first = batch[0]["dynamodb"]["SequenceNumber"]
        log.error("stream batch from %s (shard %s, %d records) failed %d times; sent to the failure "
                  "destination and skipped", first, shard_id, len(batch), self.max_attempts)
        if self.failed_dir:
            os.makedirs(self.failed_dir, exist_ok=True)
            with open(os.path.join(self.failed_dir, f"{first}.json"), "w") as f:
                json.dump(self._event(batch), f, default=str, indent=1)
