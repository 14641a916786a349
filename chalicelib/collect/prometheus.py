"""Adapter for the Prometheus HTTP API (Prometheus, Mimir, Thanos, VictoriaMetrics, AMP).

Only raw samples are read: ``selector[range]`` evaluated at an instant returns
every stored sample in the range, so the collector can compute exact deltas
itself instead of trusting ``increase()``'s extrapolation.

A shared Prometheus scrapes more than Kong, and any of its targets can publish a
``kong_bandwidth_bytes{service="victim"}`` series. ``series_matchers``
(``PROMETHEUS_SERIES_SELECTOR``, checked and re-rendered by core/settings.py) are added here
to every selector the client is given, raw samples, last values and label values alike, so
no caller can forget them and only the configured gateways' series count.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple, Union

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from chalicelib.collect.shards import with_matcher
from chalicelib.core.errors import PrometheusError
from chalicelib.core.redact import redact

Labels = Tuple[Tuple[str, str], ...]


@dataclass(frozen=True)
class Series:
    labels: Dict[str, str]
    samples: List[Tuple[float, float]]  # (epoch seconds, value)

    @property
    def key(self) -> Labels:
        return series_key(self.labels)


def series_key(labels: Dict[str, str]) -> Labels:
    """A series' identity without its metric name (PromQL functions drop ``__name__``)."""
    return tuple(sorted((k, v) for k, v in labels.items() if k != "__name__"))


class SigV4Auth(requests.auth.AuthBase):
    """Signs requests for Amazon Managed Service for Prometheus with botocore's signer."""

    def __init__(self, region: str, session=None):
        import boto3

        self.region = region
        self.session = session or boto3.session.Session()

    def __call__(self, request):
        from botocore.auth import SigV4Auth as BotoSigV4
        from botocore.awsrequest import AWSRequest

        credentials = self.session.get_credentials()
        if credentials is None:
            raise PrometheusError("SigV4 signing needs AWS credentials and none were found")
        aws_request = AWSRequest(method=request.method, url=request.url, data=request.body,
                                 headers={"Content-Type": request.headers.get("Content-Type", "")})
        BotoSigV4(credentials.get_frozen_credentials(), "aps", self.region).add_auth(aws_request)
        request.headers.update(dict(aws_request.headers.items()))
        return request


def _number(raw: str) -> float:
    return float(raw)  # "NaN", "+Inf" parse to floats; the collector rejects them


class PrometheusClient:
    def __init__(self, base_url: str, timeout: float = 10, auth=None, headers=None,
                 session: Optional[requests.Session] = None, retries: int = 3, backoff: float = 0.5,
                 series_matchers: Optional[str] = None):
        self.base_url = base_url.rstrip("/")
        self.series_matchers = series_matchers or None
        self.timeout = timeout
        self.session = session or requests.Session()
        retry = Retry(total=retries, backoff_factor=backoff, status_forcelist=(429, 502, 503, 504),
                      allowed_methods=frozenset({"GET", "POST"}), raise_on_status=False)
        self.session.mount("http://", HTTPAdapter(max_retries=retry))
        self.session.mount("https://", HTTPAdapter(max_retries=retry))
        self.session.auth = auth
        self.session.headers.update(headers or {})
        self.requests_made = 0

    @classmethod
    def from_settings(cls, settings) -> "PrometheusClient":
        url = settings.require("prometheus_url")
        auth: Union[SigV4Auth, Tuple[str, str], None] = None
        headers: Dict[str, str] = {}
        if settings.prometheus_sigv4_region:
            auth = SigV4Auth(settings.prometheus_sigv4_region)
        elif settings.prometheus_bearer_token:
            headers["Authorization"] = f"Bearer {settings.prometheus_bearer_token}"
        elif settings.prometheus_username:
            auth = (settings.prometheus_username, settings.prometheus_password or "")
        return cls(url, timeout=settings.prometheus_timeout_seconds, auth=auth, headers=headers,
                   series_matchers=settings.prometheus_series_selector)

    def scoped(self, selector: str) -> str:
        """``selector`` narrowed to the configured gateways' series (PROMETHEUS_SERIES_SELECTOR)."""
        return with_matcher(selector, self.series_matchers or "")

    def query(self, promql: str, at: float) -> Tuple[str, list]:
        """Run an instant query; return (resultType, result)."""
        data = self._call("POST", "/api/v1/query", {"query": promql, "time": f"{at:.3f}"})
        try:
            return data["resultType"], data["result"]
        except (KeyError, TypeError) as e:
            raise PrometheusError("Prometheus answered without data.result") from e

    def label_values(self, label: str, selector: str, start: float, end: float) -> List[str]:
        """The values ``label`` takes in series of ``selector`` with samples in [start, end]:
        names only, so the catch-all shard learns which services are new without their samples."""
        data = self._call("GET", f"/api/v1/label/{label}/values",
                          {"match[]": self.scoped(selector), "start": f"{start:.3f}", "end": f"{end:.3f}"})
        if not isinstance(data, list) or not all(isinstance(v, str) for v in data):
            raise PrometheusError(f"Prometheus answered label values that are not a list of strings: {data!r:.200}")
        return data

    def _call(self, method: str, path: str, params: dict):
        self.requests_made += 1
        try:
            if method == "POST":
                response = self.session.post(f"{self.base_url}{path}", data=params, timeout=self.timeout)
            else:
                response = self.session.get(f"{self.base_url}{path}", params=params, timeout=self.timeout)
        except requests.RequestException as e:
            # The URL may carry user:password@ and the error may quote it: neither reaches a log or last_error.
            raise PrometheusError(redact(f"Prometheus at {self.base_url} unreachable: {e}")) from e
        try:
            body = response.json()
        except ValueError as e:
            raise PrometheusError(
                f"Prometheus answered HTTP {response.status_code} with a body that is not JSON") from e
        if response.status_code != 200 or not isinstance(body, dict) or body.get("status") != "success":
            body = body if isinstance(body, dict) else {}
            raise PrometheusError(
                f"Prometheus refused the query (HTTP {response.status_code}): "
                f"{body.get('errorType', '')} {body.get('error', '')}".strip())
        if "data" not in body:
            raise PrometheusError("Prometheus answered without data.result")
        return body["data"]

    def raw_samples(self, selector: str, start: float, end: float) -> List[Series]:
        """Every stored sample of ``selector`` with start <= timestamp < end."""
        # Evaluate 1 ms before `end` so a sample exactly at `end` belongs to the next window.
        span_ms = max(1, int(round((end - start) * 1000)))
        result_type, result = self.query(f"{self.scoped(selector)}[{span_ms}ms]", at=end - 0.001)
        if result_type != "matrix":
            raise PrometheusError(f"expected a matrix for raw samples, got {result_type}")
        series = []
        for item in result:
            try:
                samples = [(float(ts), _number(value)) for ts, value in item["values"]]
                series.append(Series(dict(item["metric"]), [s for s in samples if s[0] >= start]))
            except (KeyError, TypeError, ValueError) as e:
                raise PrometheusError(f"malformed series in Prometheus answer: {item!r:.200}") from e
        return series

    def last_values(self, selector: str, at: float, lookback_seconds: int) -> Dict[Labels, float]:
        """The last value of each series in the ``lookback_seconds`` before ``at`` (exclusive)."""
        result_type, result = self.query(f"last_over_time({self.scoped(selector)}[{int(lookback_seconds)}s])", at=at - 0.001)
        if result_type != "vector":
            raise PrometheusError(f"expected a vector for last values, got {result_type}")
        values = {}
        for item in result:
            try:
                values[series_key(item["metric"])] = _number(item["value"][1])
            except (KeyError, TypeError, ValueError, IndexError) as e:
                raise PrometheusError(f"malformed sample in Prometheus answer: {item!r:.200}") from e
        return values
