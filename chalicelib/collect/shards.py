"""Splitting the collector's work into shards, and keeping each Prometheus query bounded.

With ``SHARD_COUNT`` = N > 1, shard 0 is the catch-all: it counts every service no fixed shard
has, and hands each service it has counted to a fixed shard (1..N-1) at a chunk boundary. A
fixed shard reads only its own services' series, by name, ``SERVICE_GROUP`` names a query:
Prometheus matches an alternation of at most 256 literals as a set (an index lookup), and a
query's answer is bounded by the group, not by the fleet. The catch-all asks Prometheus for the
service names in the window (names only), and reads the unassigned ones by name in the same
groups, plus the series without a service label; so no query's answer grows with the fleet.

The hand-over keeps totals exact: the catch-all counts a service up to a chunk end H and writes
its item (checkpoint and period usage inside), then records "H:service" as incoming for the
target shard. The target shard counts it from H: at its first chunk starting at or after H, it
first counts [H, chunk start) for the newcomers alone, then takes them over.
"""
from __future__ import annotations

import hashlib
import string
from typing import Any, Dict, Iterable, List, Set, Tuple

from chalicelib.collect.kong import UNMATCHED_SERVICE
from chalicelib.core.names import DEFAULT_WORKSPACE, workspace_and_name

UNMATCHED_MATCHER = 'service=""'  # series without a service label: Kong's traffic that matched none
WORKSPACE_LABEL = "workspace"  # Kong 3.7+
SERVICE_GROUP = 256  # Prometheus' FastRegexMatcher turns up to 256 alternatives into a set lookup
_PUNCTUATION = frozenset(string.punctuation)


class ShardEventError(ValueError):
    """A worker invocation whose payload names no valid shard."""


def shard_number(event, shard_count: int) -> int:
    """The shard a worker invocation's payload ({"shard": n}) names, checked against SHARD_COUNT."""
    shard = event.get("shard") if isinstance(event, dict) else None
    if not isinstance(shard, int) or isinstance(shard, bool) or not 0 <= shard < shard_count:
        raise ShardEventError(f"the worker's event must be {{\"shard\": 0..{shard_count - 1}}}, got {event!r:.100}")
    return shard


def shard_of(service: str, shard_count: int) -> int:
    """The fixed shard (1..N-1) a service is handed to: a stable hash, so a retried hand-over
    names the same shard."""
    digest = hashlib.blake2b(service.encode(), digest_size=8).digest()
    return 1 + int.from_bytes(digest, "big") % (shard_count - 1)


def stays_in_catch_all(service: str) -> bool:
    """Traffic that matched no Kong service has no ``service`` label, so no name selects it:
    only the catch-all's negative matcher does."""
    return service == UNMATCHED_SERVICE


def regex_literal(text: str) -> str:
    """``text`` as a regular expression matching exactly it, in RE2 (Prometheus) and Python
    alike: every ASCII punctuation character escaped, everything else as it is."""
    return "".join("\\" + c if c in _PUNCTUATION else c for c in text)


def promql_string(text: str) -> str:
    """A PromQL double-quoted string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _groups(names: Iterable[str]) -> List[List[str]]:
    # Sorted, so neighbouring alternatives share prefixes and a retried run sends the same queries.
    ordered = sorted(set(names))
    return [ordered[i:i + SERVICE_GROUP] for i in range(0, len(ordered), SERVICE_GROUP)]


def _alternation(names: List[str]) -> str:
    return promql_string("|".join(regex_literal(name) for name in names))


def owned_matchers(services: Iterable[str]) -> List[str]:
    """One label matcher per query, together selecting exactly these services. A service of a
    Kong workspace other than ``default`` (``team-a:orders``, names.qualified) is selected by its
    workspace and name; a matcher without a workspace means the default workspace's names (the
    window skips other workspaces' series it returns, see window.py)."""
    by_workspace: Dict[str, List[str]] = {}
    for key in services:
        workspace, name = workspace_and_name(key)
        by_workspace.setdefault(workspace, []).append(name)
    matchers = []
    for workspace in sorted(by_workspace):
        scope = "" if workspace == DEFAULT_WORKSPACE else f"{WORKSPACE_LABEL}={promql_string(workspace)},"
        matchers += [f"{scope}service=~{_alternation(group)}" for group in _groups(by_workspace[workspace])]
    return matchers


def selects_only_the_default_workspace(matcher: str) -> bool:
    """Whether a shard's matcher selects names of the default workspace (no workspace in it):
    a series it returns from another workspace belongs to another service key."""
    return bool(matcher) and not matcher.startswith(f"{WORKSPACE_LABEL}=")


def with_matcher(selector: str, matcher: str) -> str:
    """Add label matchers to a series selector (a bare metric name or ``{...}``)."""
    if not matcher:
        return selector
    if selector.endswith("}"):
        inner = selector[selector.index("{") + 1:-1]
        head = selector[:selector.index("{")]
        return f"{head}{{{inner + ',' if inner else ''}{matcher}}}"
    return f"{selector}{{{matcher}}}"


def parse_incoming(entries: Iterable[str]) -> List[Tuple[int, str]]:
    """``"<minute>:<service>"`` entries as (minute, service), oldest first."""
    parsed = []
    for entry in entries:
        at, _, service = entry.partition(":")
        parsed.append((int(at), service))
    return sorted(parsed)


def assigned_names(assignments: Dict[int, Any]) -> Set[str]:
    """Every service a fixed shard has or is about to take (the catch-all leaves them alone)."""
    names: Set[str] = set()
    for item in assignments.values():
        names.update(item.services or ())
        names.update(service for _, service in parse_incoming(item.incoming or ()))
    return names
