"""The Bandwidth Meter API over HTTP (``requests``), with polite back-off.

HTTP errors become this module's exceptions: ``NetworkError`` (no answer), ``ApiError``
(4xx / 5xx, carrying the API's ``{"error": {"code", "message"}}``) and ``Throttled`` (429,
carrying ``Retry-After``). One-shot calls wait out a 429 a few times before giving up;
``watch`` stops sending while throttled and resumes by itself. Time is injected
(``sleep``, ``clock``) so tests run without waiting.
"""
from __future__ import annotations

import email.utils
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple
from urllib.parse import quote, urljoin, urlsplit

import requests

from bwmeter import __version__

DEFAULT_URL = "http://127.0.0.1:8000"
MAX_BACKOFF = 60.0
MAX_REDIRECTS = 5


class BwmeterError(Exception):
    """Something the user should read; ``exit_code`` is what the command exits with."""

    exit_code = 1

    def __init__(self, message: str, exit_code: Optional[int] = None):
        super().__init__(message)
        self.message = message
        if exit_code is not None:
            self.exit_code = exit_code


class NetworkError(BwmeterError):
    exit_code = 3


class ApiError(BwmeterError):
    """The API answered 4xx or 5xx. ``enveloped`` says whether the body was the API's own
    error shape (if not, a proxy, API Gateway or an older API answered)."""

    def __init__(self, status: int, code: str, message: str, enveloped: bool = True,
                 retry_after: Optional[float] = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.enveloped = enveloped
        self.retry_after = retry_after

    @property
    def exit_code(self) -> int:  # type: ignore[override]
        return 5 if self.status >= 500 else 4

    def as_dict(self) -> dict:
        out = {"status": self.status, "code": self.code, "message": self.message}
        if self.retry_after is not None:
            out["retry_after"] = self.retry_after
        return out


class Throttled(ApiError):
    pass


def parse_retry_after(value: Optional[str], now: Callable[[], float] = time.time) -> Optional[float]:
    """``Retry-After`` as seconds: delta-seconds or an HTTP date (RFC 9110), else None."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now())


def _error_from(response: requests.Response) -> ApiError:
    status = response.status_code
    code, message, enveloped = f"http_{status}", response.reason or f"HTTP {status}", False
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        code = str(body["error"].get("code", code))
        message = str(body["error"].get("message", message))
        enveloped = True
    elif isinstance(body, dict) and isinstance(body.get("message"), str):  # API Gateway / chalice's own
        message = body["message"]
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    cls = Throttled if status == 429 else ApiError
    return cls(status, code, message, enveloped, retry_after)


class Client:
    def __init__(self, base_url: str = DEFAULT_URL, api_key: Optional[str] = None, *, timeout: float = 10.0,
                 session: Optional[requests.Session] = None, sleep: Callable[[float], None] = time.sleep,
                 retries: int = 3, max_wait: float = MAX_BACKOFF,
                 on_throttle: Optional[Callable[[float, ApiError], None]] = None):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = session or requests.Session()
        self.session.headers["User-Agent"] = f"bwmeter/{__version__}"
        # Sent per request, never as a session default: a redirect to another origin must not
        # carry it (requests strips Authorization there, but not a custom header).
        self.api_key = api_key or None
        self.sleep = sleep
        self.retries = retries
        self.max_wait = max_wait
        self.on_throttle = on_throttle

    # -- transport ---------------------------------------------------------------------------
    def call(self, method: str, path: str, *, params: Optional[dict] = None, body: Any = None,
             accept: str = "application/json", retry: bool = True,
             headers: Optional[dict] = None) -> requests.Response:
        """One API call. On 429 wait ``Retry-After`` and try again (up to ``retries`` times,
        never waiting longer than ``max_wait``) unless ``retry`` is false."""
        url = self.base_url + path
        params = {k: v for k, v in (params or {}).items() if v is not None}
        attempt = 0
        while True:
            try:
                response = self._send(method, url, params, body, accept, headers)
            except requests.Timeout as e:
                raise NetworkError(f"{self.base_url} did not answer within {self.timeout:g} s") from e
            except requests.ConnectionError as e:
                raise NetworkError(f"cannot connect to {self.base_url}: {_reason(e)}") from e
            except requests.RequestException as e:
                raise NetworkError(f"request to {self.base_url} failed: {e}") from e
            if response.status_code < 400:
                return response
            error = _error_from(response)
            if isinstance(error, Throttled) and retry and attempt < self.retries:
                wait = error.retry_after if error.retry_after is not None else min(MAX_BACKOFF, 2.0 ** attempt)
                if wait <= self.max_wait:
                    if self.on_throttle:
                        self.on_throttle(wait, error)
                    self.sleep(wait)
                    attempt += 1
                    continue
            raise error

    def _send(self, method: str, url: str, params: dict, body: Any, accept: str,
              extra_headers: Optional[dict] = None) -> requests.Response:
        """One request, following redirects here: the API key goes only to the origin (scheme,
        host, port) it was meant for, so a redirect elsewhere (a proxy's, a hijacked route's)
        never receives it."""
        origin = _origin(url)
        for _ in range(MAX_REDIRECTS + 1):
            headers = {"Accept": accept, **(extra_headers or {})}
            if self.api_key and _origin(url) == origin:
                headers["x-api-key"] = self.api_key
            response = self.session.request(method, url, params=params, json=body, timeout=self.timeout,
                                            headers=headers, allow_redirects=False)
            if not response.is_redirect:
                return response
            url = urljoin(response.url, response.headers["location"])
            params = None  # the new location carries its own query
            # as requests (and browsers) do: 303 and 302 become GET, 301 too for a POST
            status = response.status_code
            if (status in (302, 303) and method != "HEAD") or (status == 301 and method == "POST"):
                method, body = "GET", None
        raise NetworkError(f"{self.base_url} redirected more than {MAX_REDIRECTS} times")

    def json(self, method: str, path: str, **kwargs) -> Any:
        response = self.call(method, path, **kwargs)
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise BwmeterError(f"{method} {path} answered {response.status_code} with a body that is not JSON "
                               f"(is {self.base_url} the Bandwidth Meter API?)") from None

    # -- endpoints ---------------------------------------------------------------------------
    def health(self) -> dict:
        return self.json("GET", "/v1/health")

    def services(self, sort: Optional[str] = None) -> List[dict]:
        """Every service with its usage in the current quota period (all pages)."""
        rows: List[dict] = []
        cursor = None
        while True:
            page = self.json("GET", "/v1/services", params={"sort": sort, "cursor": cursor, "limit": 1000})
            rows.extend(page["services"])
            cursor = page.get("next_cursor")
            if not cursor:
                return rows

    def consumers(self, sort: Optional[str] = None, limit: int = 100) -> dict:
        """The first ``limit`` consumers in ``sort`` order (pages followed as needed): the
        listing's last page body with every row in ``consumers``."""
        rows: List[dict] = []
        cursor, page = None, {}
        while len(rows) < limit:
            page = self.json("GET", "/v1/consumers",
                             params={"sort": sort, "cursor": cursor, "limit": min(1000, limit - len(rows))})
            rows.extend(page["consumers"])
            cursor = page.get("next_cursor")
            if not cursor:
                break
        return {**page, "consumers": rows[:limit], "next_cursor": cursor}

    def service(self, service: str, retry: bool = True) -> dict:
        return self.json("GET", f"/v1/services/{_seg(service)}", retry=retry)

    def bandwidth(self, service: str, start: Optional[int] = None, end: Optional[int] = None,
                  step: Optional[str] = None, direction: Optional[str] = None, route: Optional[str] = None) -> dict:
        return self.json("GET", f"/v1/services/{_seg(service)}/bandwidth",
                         params=_range(start, end, step, direction=direction, route=route))

    def bandwidth_csv(self, service: str, start: Optional[int] = None, end: Optional[int] = None,
                      step: Optional[str] = None, direction: Optional[str] = None,
                      route: Optional[str] = None) -> str:
        params = _range(start, end, step, direction=direction, route=route, format="csv")
        return self.call("GET", f"/v1/services/{_seg(service)}/bandwidth", params=params, accept="text/csv").text

    def stats(self, service: str, start: Optional[int] = None, end: Optional[int] = None,
              step: Optional[str] = None) -> dict:
        return self.json("GET", f"/v1/services/{_seg(service)}/stats", params=_range(start, end, step))

    # A quota is a service's, or with kind="consumer" a consumer's (/v1/consumers/{key}/quota).
    def quota(self, service: str, kind: str = "service") -> dict:
        return self.json("GET", _quota_path(service, kind))

    def quota_versioned(self, service: str, kind: str = "service") -> Tuple[dict, Optional[str]]:
        """The quota and its version (the ETag), for a change of exactly what was read."""
        response = self.call("GET", _quota_path(service, kind))
        return response.json(), response.headers.get("ETag")

    def put_quota(self, service: str, quota: dict, if_match: Optional[str] = None, kind: str = "service") -> dict:
        """Store the quota; with ``if_match`` only if that version is still current (else a 412 ApiError)."""
        return self.json("PUT", _quota_path(service, kind), body=quota,
                         headers={"If-Match": if_match} if if_match else None)

    def delete_quota(self, service: str, kind: str = "service") -> None:
        self.call("DELETE", _quota_path(service, kind))

    def consumer(self, consumer: str) -> dict:
        return self.json("GET", f"/v1/consumers/{_seg(consumer)}")

    def alerts(self, service: str) -> dict:
        return self.json("GET", f"/v1/services/{_seg(service)}/alerts")

    def collector_status(self) -> dict:
        return self.json("GET", "/v1/collector/status")

    def enforcement(self) -> dict:
        """Services blocked at the gateway now, why, and the decK file (GET /v1/enforcement)."""
        return self.json("GET", "/v1/enforcement")

    def quotas(self) -> dict:
        """Every service's own quota and the rules: ``{"quotas": [...], "rules": [...]}``."""
        return self.json("GET", "/v1/quotas")

    def rules(self) -> dict:
        return self.json("GET", "/v1/quota-rules")

    def put_rules(self, body: dict) -> dict:
        return self.json("PUT", "/v1/quota-rules", body=body)

    # -- pushed usage (ingest or admin keys) --------------------------------------------------
    def register_import(self, description: Optional[str] = None) -> dict:
        return self.json("POST", "/v1/imports", body={"description": description} if description else {})

    def put_import_batch(self, import_id: str, number: int, events: List[dict]) -> dict:
        return self.json("PUT", f"/v1/imports/{_seg(import_id)}/batches/{number}", body=events,
                         headers={"Content-Type": "application/cloudevents-batch+json"})

    def commit_import(self, import_id: str) -> dict:
        return self.json("POST", f"/v1/imports/{_seg(import_id)}/commit")

    def audit(self, limit: Optional[int] = None) -> dict:
        return self.json("GET", "/v1/quota-audit", params={"limit": limit})


def _origin(url: str):
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme.lower())
    return parts.scheme.lower(), (parts.hostname or "").lower(), port


def _quota_path(name: str, kind: str) -> str:
    return f"/v1/{'consumers' if kind == 'consumer' else 'services'}/{_seg(name)}/quota"


def _seg(value: str) -> str:
    return quote(value, safe="")


def _range(start, end, step, **extra) -> Dict[str, Any]:
    return {"start": start, "end": end, "step": step if step and step != "auto" else None, **extra}


def _reason(error: Exception) -> str:
    text = str(error)
    if "Connection refused" in text or "Errno 111" in text:
        return "connection refused (is the API running there?)"
    if "Name or service not known" in text or "nodename nor servname" in text or "Errno -2" in text:
        return "unknown host"
    return text


# -- watch ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class WatchEvent:
    """One thing that happened while watching; ``t`` is seconds since the watch started."""

    kind: str  # "usage", "throttled", "resumed", "error"
    t: float
    data: Optional[dict] = None
    wait: Optional[float] = None
    error: Optional[BwmeterError] = None

    def as_dict(self) -> dict:
        out: Dict[str, Any] = {"event": self.kind, "t": round(self.t, 3)}
        if self.data is not None:
            out["data"] = self.data
        if self.wait is not None:
            out["wait"] = self.wait
        if self.error is not None:
            out["error"] = self.error.as_dict() if isinstance(self.error, ApiError) else {"message": self.error.message}
        return out


def watch(client: Client, service: str, *, interval: float = 1.0, duration: Optional[float] = None,
          max_requests: Optional[int] = None, max_failures: int = 10,
          clock: Callable[[], float] = time.monotonic, sleep: Optional[Callable[[float], None]] = None
          ) -> Iterator[WatchEvent]:
    """Ask for the service's usage every ``interval`` seconds.

    On 429 nothing is sent until ``Retry-After`` has passed (or, without one, a back-off that
    doubles up to a minute); then the watch resumes on its own. A 4xx other than 429 ends it
    (the request will not start working by itself); network errors and 5xx are reported and
    retried on the next tick, until ``max_failures`` in a row. It stops after ``duration``
    seconds or ``max_requests`` requests, whichever comes first."""
    sleep = sleep or client.sleep
    start = clock()
    deadline = start + duration if duration is not None else None
    next_at = start
    sent = failures = throttled_in_a_row = 0
    paused = False
    while max_requests is None or sent < max_requests:
        now = clock()
        if deadline is not None and now >= deadline:
            return
        if next_at > now:
            if deadline is not None and next_at >= deadline:
                sleep(deadline - now)
                return
            sleep(next_at - now)
            continue
        sent_at = clock()
        sent += 1
        try:
            data = client.service(service, retry=False)
        except Throttled as e:
            throttled_in_a_row += 1
            wait = e.retry_after if e.retry_after is not None else min(MAX_BACKOFF, interval * 2 ** throttled_in_a_row)
            paused = True
            yield WatchEvent("throttled", sent_at - start, wait=wait, error=e)
            next_at = clock() + wait
            continue
        except ApiError as e:
            if e.status < 500:
                raise
            failures += 1
            yield WatchEvent("error", sent_at - start, error=e)
            if failures >= max_failures:
                raise
        except NetworkError as e:
            failures += 1
            yield WatchEvent("error", sent_at - start, error=e)
            if failures >= max_failures:
                raise
        else:
            failures = throttled_in_a_row = 0
            if paused:
                paused = False
                yield WatchEvent("resumed", sent_at - start)
            yield WatchEvent("usage", sent_at - start, data=data)
        next_at = sent_at + interval
