"""What a block is at Kong: the bundled ``request-termination`` plugin, tagged ours, answering 429
with a message that names the quota; and the same blocks as a decK state file for gateways the
product cannot write to (DB-less Kong, Konnect). Which blocks are due is core's decision
(chalicelib/core/enforcement.py); how they look at the gateway is decided here only.
"""
from __future__ import annotations

from typing import Iterable

from chalicelib.core.enforcement import Block
from chalicelib.core.models import CONSUMER
from chalicelib.core.names import workspace_and_name
from chalicelib.core.timeutil import iso

TAG = "bandwidth-meter"
PLUGIN = "request-termination"
BLOCK_STATUS = 429


def block_message(block: Block) -> str:
    """What a blocked client reads in the 429 body: the quota, and when it resets. Stable for the
    period (no running figures), so the plugin and a decK file do not churn each minute."""
    who = f"consumer {block.service}" if block.kind == CONSUMER else block.service
    return (f"Bandwidth quota exceeded: {who} reached {block.reject_at:g}% of its {block.period_kind} "
            f"quota of {block.limit_bytes} bytes ({block.direction}); requests are refused until "
            f"{iso(block.period_end)}")


def plugin_body(message: str) -> dict:
    """What a block posts to Kong (also the shape of a decK plugin)."""
    return {"name": PLUGIN, "config": {"status_code": BLOCK_STATUS, "message": message}, "tags": [TAG]}


def deck_snippet(blocks: Iterable[Block]) -> dict:
    """A decK state file with exactly our plugins (``deck gateway sync --select-tag bandwidth-meter``
    keeps a DB-mode Kong or Konnect at it; for DB-less Kong merge it into the declarative config).
    A consumer's block is a plugin scoped to the consumer (its username); a block in a workspace
    other than default names the entity without its ``ws:`` prefix and says its workspace under
    ``tags`` (``workspace:<ws>``), as decK files are kept one per workspace."""
    def plugin(b: Block) -> dict:
        workspace, name = workspace_and_name(b.service)
        scope = "consumer" if b.kind == CONSUMER else "service"
        tags = [TAG] + ([f"workspace:{workspace}"] if b.service != name else [])
        return {"name": PLUGIN, scope: name, "tags": tags,
                "config": {"status_code": BLOCK_STATUS, "message": block_message(b)}}

    return {
        "_format_version": "3.0",
        "_info": {"select_tags": [TAG]},
        "plugins": [plugin(b) for b in sorted(blocks, key=lambda b: (b.kind != "service", b.service))],
    }
