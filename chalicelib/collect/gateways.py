"""Each gateway's bandwidth series, and how they map to (service, route, consumer, direction).

``GATEWAY`` (core/settings.py) names the schemas the collector reads, one or several. Each is a
small mapping: the series it reads (one query each, so two series never share a label set in
one answer), the label that names the service (the shards' matchers select on it), and the
key of one series. What the bytes are differs by gateway (docs/gateway-metrics.md has the
sources); direction is always ingress = from the client towards the upstream (the request),
egress = back to the client (the response).

| GATEWAY | series read                                        | service               | route    | consumer   | bytes |
|---------|----------------------------------------------------|-----------------------|----------|------------|-------|
| kong    | kong_bandwidth_bytes / kong_bandwidth (kong.py)    | service (+ workspace) | route    | consumer (+ workspace) | request line, headers and body in; status line, headers and body out |
| apisix  | apisix_bandwidth{type}                             | service (an id unless prefer_name) | route | consumer | the same ($request_length in, $bytes_sent out) |
| traefik | traefik_service_requests_bytes_total (in), traefik_service_responses_bytes_total (out) | service (name@provider) | (all routes) | "" | bodies only: no headers, no TLS or HTTP/2 framing |
| envoy   | envoy_cluster_upstream_cx_tx_bytes_total (in), envoy_cluster_upstream_cx_rx_bytes_total (out) | envoy_cluster_name | (all routes) | "" | the upstream connections' bytes (Envoy to the cluster and back, after TLS), not the client's |

Every series keeps all its labels in its id (checkpoint.series_id), ``instance`` included, so
several nodes and each node's counter resets are counted apart and exactly, as for Kong. Kong's
series ids are its labels alone (as before gateways were configurable, so stored checkpoints
stay valid); the others' carry the metric name too, because Traefik's and Envoy's request and
response counters have the same labels.

Names become keys through names.qualified: Kong's with their workspace, every other gateway's as
in the default workspace (a name holding ``:`` is spelled ``default:<name>``), so the API reads
any key back the same way. A series without a service (Kong or APISIX traffic that matched no
service) counts under kong.UNMATCHED_SERVICE.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Mapping, Optional, Set, Tuple

from chalicelib.collect import kong
from chalicelib.collect.kong import DIRECTIONS, UNMATCHED_SERVICE, BandwidthKey
from chalicelib.collect.shards import WORKSPACE_LABEL, promql_string, with_matcher
from chalicelib.core.errors import BadSample
from chalicelib.core.names import DEFAULT_WORKSPACE, qualified
from chalicelib.core.quotas import is_service_name
from chalicelib.core.usage import NO_ROUTE

Labels = Tuple[Tuple[str, str], ...]
# Route names for traffic a gateway reports without one (usage.NO_ROUTE: APISIX when no route
# matched, a 404 with the plugin as a global rule; Kong for a service matched by no named route).
ALL_ROUTES = "(all routes)"  # Traefik, Envoy: their byte counters are per service, never per route
SHARD_LABEL = "service"  # the label collect/shards.py's matchers name


@dataclass(frozen=True)
class Source:
    """One query's worth of a gateway's series: a selector, and the direction every series of it
    has (None: a label says, series by series)."""

    selector: str
    direction: Optional[str] = None
    metric: Optional[str] = None  # part of the series id when set


class Gateway:
    name = ""
    service_label = "service"

    def sources(self, settings) -> Tuple[Source, ...]:
        raise NotImplementedError

    def key(self, labels: Mapping[str, str], source: Source) -> BandwidthKey:
        """The series' (service, route, direction, consumer), or BadSample."""
        raise NotImplementedError

    def schema(self, labels: Mapping[str, str]) -> str:
        """What the run report lists as seen (``kong_schemas_seen``)."""
        return self.name

    def identity(self, key: Labels, source: Source) -> Labels:
        """The labels a series' checkpoint id is made of (``key``: its labels, replicas stripped)."""
        return ((("__name__", source.metric),) + key) if source.metric else key

    def service_names(self, prometheus, settings, start: float, end: float) -> Set[str]:
        """The service keys with series in [start, end] (names only: the catch-all shard's view)."""
        return {qualified("", name) for source in self.sources(settings)
                for name in prometheus.label_values(self.service_label, source.selector, start, end)}

    def shard_matcher(self, matcher: str) -> str:
        """A shard's matcher (on ``service``) as this gateway's series name their service."""
        if self.service_label != SHARD_LABEL and matcher.startswith(SHARD_LABEL):
            return self.service_label + matcher[len(SHARD_LABEL):]
        return matcher


def _service(name: str) -> str:
    """A gateway's service name as its key; no name: the traffic matched no service."""
    service = qualified("", name) if name else UNMATCHED_SERVICE
    if not is_service_name(service):
        raise BadSample("service name is longer than 200 characters or holds control characters")
    return service


def _consumer(name: str) -> str:
    return qualified("", name) if name else ""


def _direction(value: Optional[str]) -> str:
    if value not in DIRECTIONS:
        raise BadSample("no valid direction/type label (ingress or egress)")
    return value


class Kong(Gateway):
    """Kong 2.x and 3.x (kong.py): KONG_SCHEMA picks the metric names."""

    name = "kong"

    def sources(self, settings) -> Tuple[Source, ...]:
        return (Source(kong.bandwidth_selector(settings.kong_schema)),)

    def key(self, labels: Mapping[str, str], source: Source) -> BandwidthKey:
        return kong.bandwidth_key(labels)

    def schema(self, labels: Mapping[str, str]) -> str:
        return kong.detect_schema(labels)

    def service_names(self, prometheus, settings, start: float, end: float) -> Set[str]:
        """With workspaces other than ``default`` a name is looked up per workspace (the same
        name in two workspaces is two keys); without, one query as ever."""
        selector = self.sources(settings)[0].selector
        workspaces = set(prometheus.label_values(WORKSPACE_LABEL, selector, start, end)) - {"", DEFAULT_WORKSPACE}
        if not workspaces:
            return super().service_names(prometheus, settings, start, end)
        scoped = with_matcher(selector, f'{WORKSPACE_LABEL}=~"{DEFAULT_WORKSPACE}|"')
        names = {qualified("", name) for name in prometheus.label_values("service", scoped, start, end)}
        for workspace in sorted(workspaces):
            scoped = with_matcher(selector, f"{WORKSPACE_LABEL}={promql_string(workspace)}")
            names |= {qualified(workspace, name) for name in prometheus.label_values("service", scoped, start, end)}
        return names


class Apisix(Gateway):
    """APISIX's prometheus plugin (apisix/plugins/prometheus/exporter.lua): one counter,
    ``apisix_bandwidth{type, route, service, consumer, node, ...}``, with the default
    ``apisix_`` prefix. ``type`` is the direction: ingress adds ``$request_length`` (request
    line, headers and body), egress ``$bytes_sent`` (all sent to the client). ``service`` and
    ``route`` are ids unless the plugin has ``prefer_name: true``; ``consumer`` is the
    consumer's username; each is "" when absent (a route without a service counts under
    (unmatched) with its route; no route at all is NO_ROUTE). ``node`` is the upstream node's
    address, not the APISIX instance: it only splits series, like 3.14's LLM labels."""

    name = "apisix"

    def sources(self, settings) -> Tuple[Source, ...]:
        return (Source("apisix_bandwidth", metric="apisix_bandwidth"),)

    def key(self, labels: Mapping[str, str], source: Source) -> BandwidthKey:
        return BandwidthKey(_service(labels.get("service", "")), labels.get("route") or NO_ROUTE,
                            _direction(labels.get("type")), _consumer(labels.get("consumer", "")))


class Traefik(Gateway):
    """Traefik 2.9+ and 3.x (pkg/metrics/prometheus.go, later pkg/observability/metrics/):
    the service-level counters ``traefik_service_requests_bytes_total`` (ingress) and
    ``traefik_service_responses_bytes_total`` (egress), labels ``service`` (``name@provider``),
    ``code``, ``method``, ``protocol``; on by default (addServicesLabels). They count **body
    bytes only** (a counting reader on the request body, the writes of the response body):
    headers, TLS and HTTP/2 framing are not in them, so the same traffic weighs less than
    through Kong. They wrap each server's proxy, after the router's middlewares: answers a
    middleware gives (auth, rate limits) and "no available server" are not counted, and
    weighted or failover services count under their leaf services. The router-level counters
    (addRoutersLabels) count the same requests again and are not read. Traefik has no consumer."""

    name = "traefik"
    REQUESTS = "traefik_service_requests_bytes_total"
    RESPONSES = "traefik_service_responses_bytes_total"

    def sources(self, settings) -> Tuple[Source, ...]:
        return (Source(self.REQUESTS, "ingress", self.REQUESTS), Source(self.RESPONSES, "egress", self.RESPONSES))

    def key(self, labels: Mapping[str, str], source: Source) -> BandwidthKey:
        return BandwidthKey(_service(labels.get("service", "")), ALL_ROUTES, _direction(source.direction), "")


class Envoy(Gateway):
    """Envoy's cluster (upstream) connection counters, as ``/stats/prometheus`` renders them:
    ``envoy_cluster_upstream_cx_tx_bytes_total`` (bytes Envoy sent on its connections to the
    cluster: the requests, ingress) and ``envoy_cluster_upstream_cx_rx_bytes_total`` (bytes it
    received from the cluster: the responses, egress), label ``envoy_cluster_name``. They count
    what the transport socket read and wrote, after TLS decryption: HTTP/1 lines, headers and
    bodies, or HTTP/2 frames; not TLS records or TCP/IP headers. They are the **upstream**
    side: answers Envoy gives itself (direct responses, local replies, cache hits) never reach a
    cluster and are not counted, and compression between client and Envoy is not seen. Per
    cluster only: Envoy has no byte counter per route or consumer."""

    name = "envoy"
    service_label = "envoy_cluster_name"
    SENT = "envoy_cluster_upstream_cx_tx_bytes_total"
    RECEIVED = "envoy_cluster_upstream_cx_rx_bytes_total"

    def sources(self, settings) -> Tuple[Source, ...]:
        return (Source(self.SENT, "ingress", self.SENT), Source(self.RECEIVED, "egress", self.RECEIVED))

    def key(self, labels: Mapping[str, str], source: Source) -> BandwidthKey:
        return BandwidthKey(_service(labels.get(self.service_label, "")), ALL_ROUTES, _direction(source.direction),
                            "")


GATEWAYS: Dict[str, Gateway] = {g.name: g for g in (Kong(), Apisix(), Traefik(), Envoy())}


def configured(settings) -> Tuple[Gateway, ...]:
    """The gateways GATEWAY names, in its order."""
    return tuple(GATEWAYS[name] for name in settings.gateways)
