"""The usage table's stream played to the alerts function on a moto server, as Lambda's
event-source mapping does: ``poll_once()`` a batch at a time, or ``drain()`` it."""
from __future__ import annotations

import boto3

from localrun.streams import StreamPoller


def alerts_poller(aws_url: str, table_name: str) -> StreamPoller:
    import app

    arn = boto3.client("dynamodb", region_name="us-east-1", endpoint_url=aws_url).describe_table(
        TableName=table_name)["Table"]["LatestStreamArn"]
    streams = boto3.client("dynamodbstreams", region_name="us-east-1", endpoint_url=aws_url)
    return StreamPoller(streams, arn, app.alerts, sleep=lambda s: None)


def drain(poller: StreamPoller) -> None:
    while poller.poll_once():
        pass
