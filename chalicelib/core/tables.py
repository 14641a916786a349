"""Create the usage table (stream NEW_AND_OLD_IMAGES, TTL on ``expires_at``), idempotently.

Used by the local runtime, the AWS bootstrap command and the tests. In AWS the
CloudFormation template creates the same table.
"""
from __future__ import annotations

from chalicelib.core.models import UsageBucket


def ensure_table(wait: bool = True) -> str:
    """Create the table if it does not exist; return its stream ARN."""
    if not UsageBucket.exists():
        UsageBucket.create_table(wait=wait)
    UsageBucket.update_ttl(ignore_update_ttl_errors=True)
    return UsageBucket.describe_table()["LatestStreamArn"]
