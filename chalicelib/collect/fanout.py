"""Fanning the scheduled collection out to one worker invocation per shard.

The `collect` schedule runs every minute; with SHARD_COUNT = N > 1 it starts N asynchronous
invocations of the `collect_shard` function (payload {"shard": n}) and returns. Each worker
takes its own shard's lease, so a slow shard never blocks the others and a minute whose
invoke is retried by Lambda cannot run a shard twice at once.
"""
from __future__ import annotations

import json
from typing import List

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.core.errors import BandwidthMeterError


class FanOutError(BandwidthMeterError):
    """A shard's worker could not be started."""


class LambdaShardInvoker:
    def __init__(self, lambda_client, function_name: str):
        self.client = lambda_client
        self.function_name = function_name

    def start(self, shard: int) -> None:
        try:
            response = self.client.invoke(FunctionName=self.function_name, InvocationType="Event",
                                          Payload=json.dumps({"shard": shard}).encode())
        except (BotoCoreError, ClientError) as e:
            raise FanOutError(f"starting collector shard {shard} ({self.function_name}) failed: {e}") from e
        if response.get("StatusCode") != 202:
            raise FanOutError(f"starting collector shard {shard} answered {response.get('StatusCode')}, not 202")

    def start_all(self, shard_count: int) -> List[int]:
        """Start every shard; one that fails to start does not keep the others from starting."""
        started, failures = [], []
        for shard in range(shard_count):
            try:
                self.start(shard)
                started.append(shard)
            except FanOutError as e:
                failures.append(str(e))
        if failures:
            raise FanOutError("; ".join(failures))
        return started
