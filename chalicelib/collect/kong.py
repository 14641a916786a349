"""Kong's Prometheus metric schemas, and turning their series into domain keys.

| Kong       | bandwidth metric                                   |
|------------|----------------------------------------------------|
| 2.x        | kong_bandwidth{service, route, type}               |
| 3.0 - 3.6  | kong_bandwidth_bytes{service, route, direction, consumer} |
| 3.7+       | the same with workspace                            |

With ``KONG_SCHEMA=auto`` both metric names are read in one query, so a fleet
in the middle of an upgrade (some nodes 2.x, some 3.x) is counted whole.

From 3.7 a series names its workspace: the same service or consumer name in two workspaces is
two things, keyed apart by names.qualified (``team-a:orders``); the ``default`` workspace, and
series without the label (before 3.7), keep the plain name, so data counted before stays
under its key. Routes belong to their service and stay as Kong names them.
"""
from __future__ import annotations

from typing import Mapping, NamedTuple

from chalicelib.core.errors import BadSample
from chalicelib.core.names import qualified
from chalicelib.core.quotas import is_service_name

BANDWIDTH_METRICS = {"2": "kong_bandwidth", "3.0": "kong_bandwidth_bytes", "3.7": "kong_bandwidth_bytes"}
DIRECTIONS = ("ingress", "egress")
# A global prometheus plugin also counts requests that matched no service; Kong labels them
# service="" and Prometheus drops empty labels. Their bytes are real traffic: keep them.
UNMATCHED_SERVICE = "(unmatched)"


class BandwidthKey(NamedTuple):
    service: str
    route: str
    direction: str
    # The consumer label's value: "" when Kong gives none (2.x has no such label; 3.x leaves it
    # empty without per_consumer or an authenticated consumer). That traffic is anonymous
    # (usage.ANONYMOUS_CONSUMER), counted, never dropped.
    consumer: str = ""


def bandwidth_selector(schema: str = "auto") -> str:
    """The PromQL series selector for raw bandwidth samples (no user input ever reaches it)."""
    if schema == "auto":
        return '{__name__=~"kong_bandwidth|kong_bandwidth_bytes"}'
    return BANDWIDTH_METRICS[schema]


def detect_schema(labels: Mapping[str, str]) -> str:
    if labels.get("__name__") == "kong_bandwidth":
        return "2"
    return "3.7" if "workspace" in labels else "3.0"


def bandwidth_key(labels: Mapping[str, str]) -> BandwidthKey:
    """Map one series' labels to (service, route, direction, consumer), or raise BadSample."""
    direction = labels.get("direction") or labels.get("type")
    workspace = labels.get("workspace") or ""
    service = qualified(workspace, labels["service"]) if labels.get("service") else UNMATCHED_SERVICE
    if direction not in DIRECTIONS:
        raise BadSample("no valid direction/type label (ingress or egress)")
    if not is_service_name(service):
        raise BadSample("service name is longer than 200 characters or holds control characters")
    # Kong leaves route empty for traffic that matched a service but no named route.
    consumer = qualified(workspace, labels["consumer"]) if labels.get("consumer") else ""
    return BandwidthKey(service, labels.get("route") or "", direction, consumer)


# Traffic statistics (read when present): request counters and the request-latency histogram.
REQUESTS_SELECTOR = '{__name__=~"kong_http_requests_total|kong_http_status"}'
LATENCY_BUCKET_SELECTOR = '{__name__=~"kong_request_latency_ms_bucket|kong_latency_bucket",type=~"request|"}'
LATENCY_SUM_SELECTOR = '{__name__=~"kong_request_latency_ms_sum|kong_latency_sum",type=~"request|"}'
LATENCY_COUNT_SELECTOR = '{__name__=~"kong_request_latency_ms_count|kong_latency_count",type=~"request|"}'
