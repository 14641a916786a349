"""The ports: what the functions need from each external system, as typed Protocols.

Each has a real adapter (the name in brackets) and an in-memory fake in tests/fakes/; one
contract suite (tests/integration/test_contracts.py) runs against both, the real one on a real
local server, so a fake cannot drift from what it stands in for. Types that belong to an adapter
(a Prometheus ``Series``, a Kong ``BlockPlugin``) appear here as the shape the caller relies on.
"""
from __future__ import annotations

from typing import Any, Dict, Iterable, List, Mapping, Optional, Protocol, Sequence, Tuple, runtime_checkable

Labels = Tuple[Tuple[str, str], ...]  # a series' labels without its metric name, sorted


class SampleSeries(Protocol):
    """One series' raw samples: its labels and (epoch seconds, value) pairs in time order."""

    @property
    def labels(self) -> Dict[str, str]: ...

    @property
    def samples(self) -> List[Tuple[float, float]]: ...


@runtime_checkable
class PrometheusReader(Protocol):
    """Raw samples from a Prometheus-compatible API (chalicelib/collect/prometheus.py,
    ``PrometheusClient``). Failures raise ``PrometheusError``."""

    def raw_samples(self, selector: str, start: float, end: float) -> Sequence[SampleSeries]:
        """Every stored sample of the matching series with ``start <= t < end``."""
        ...

    def label_values(self, label: str, selector: str, start: float, end: float) -> List[str]:
        """The values ``label`` takes on matching series with samples in [start, end], sorted.
        At least those: Prometheus answers by storage block, so series sampled near the window
        may be named too. Callers treat the names as candidates."""
        ...

    def last_values(self, selector: str, at: float, lookback_seconds: int) -> Dict[Labels, float]:
        """Each matching series' last value in [at - lookback_seconds, at), by its labels."""
        ...


@runtime_checkable
class Mailer(Protocol):
    """Sends email (chalicelib/notify/mailer.py, ``SesMailer``)."""

    def send(self, to: List[str], subject: str, text: str, html: str) -> str:
        """Send one message; return the provider's message id or raise ``MailError``."""
        ...


@runtime_checkable
class KongAdminPort(Protocol):
    """The Kong Admin API subset enforcement uses (chalicelib/enforce/kong_admin.py, ``KongAdmin``)."""

    def list_our_plugins(self, workspaces: Any = ()) -> Any:
        """``blocks``: our blocking plugins, each with ``id``, ``service``, ``service_id``,
        ``message`` (and ``kind``: "consumer" for one scoped to a consumer, whose key ``service``
        then holds; ``workspace``: where it was listed); ``drift``: plugins tagged ours that are not
        exactly one of ours. ``workspaces``: other workspaces to list too (``ws:name`` keys)."""
        ...

    def block(self, service: str, message: str) -> str:
        """Block a service; return the plugin's id."""
        ...

    def block_consumer(self, consumer: str, message: str) -> str:
        """Block a consumer on every service; return the plugin's id."""
        ...

    def unblock(self, plugin_id: str, workspace: Optional[str] = None) -> None: ...


@runtime_checkable
class AlertLedgerPort(Protocol):
    """Which alerts were claimed, sent or failed, with conditional writes
    (chalicelib/core/alert_ledger.py, ``AlertLedger``)."""

    def for_period(self, service: str, period_start: int, kind: str = "service") -> Dict[object, Any]: ...

    def claim(self, claim: Any, existing: Optional[Any], higher: Iterable[float] = ()) -> bool: ...

    def record_covered(self, covered: Any) -> bool: ...

    def mark_delivered(self, alert: Any, channel: str, message_id: Optional[str] = None) -> None: ...

    def mark_sent(self, alert: Any, at: float, status: str = "sent") -> None: ...

    def mark_failed(self, alert: Any, error: str) -> None: ...

    def rearm(self, alert: Any) -> bool: ...

    def due(self, limit: int = 100) -> List[Any]: ...

    def request_reevaluation(self, after: Optional[str], at: float, kind: str = "service") -> None: ...

    def reevaluation_due(self, kind: str = "service") -> Optional[str]: ...

    def history(self, service: str, limit: int = 200, kind: str = "service") -> List[Dict[str, Any]]: ...


@runtime_checkable
class QuotaSource(Protocol):
    """The quotas and rules in force (chalicelib/core/quota_book.py, ``QuotaBook``)."""

    def load(self) -> Any:
        """A ``QuotaSnapshot`` of every quota and rule."""
        ...

    def quota_for(self, service: str) -> Any: ...


@runtime_checkable
class UsageReader(Protocol):
    """The usage the API and the alerts function read (chalicelib/core/store.py, ``UsageStore``).
    Buckets are ``BucketUsage``; service items ``ServiceUsage``; states ``CollectorState``."""

    def get_service(self, service: str) -> Any:
        """The service's item, or None."""
        ...

    def list_services(self, after: Optional[str] = None, checkpoints: bool = False) -> Iterable[Any]:
        """Every service item in name order, those after ``after`` only; without the collector's
        checkpoints unless asked for."""
        ...

    def query_buckets(self, service: str, level: str, start: int, end: int) -> List[Any]:
        """The ``level`` buckets that lie whole in [start, end), in time order."""
        ...

    def range_total(self, service: str, start: int, end: int) -> Any:
        """Usage over [start, end) (minute-aligned) from the coarsest whole buckets that tile it."""
        ...

    def state(self, shard: int = 0) -> Any:
        """A shard's collector state; an empty one when none was written."""
        ...

    def state_of_service(self, item: Optional[Any]) -> Any:
        """The state of the shard that counts this service (with the catch-all's gaps)."""
        ...

    def retained_from(self, now: float) -> Dict[str, int]:
        """Per level with a TTL, the earliest bucket start still kept."""
        ...


@runtime_checkable
class UsageWriter(Protocol):
    """What the collector writes and reads back (chalicelib/core/store.py, ``UsageStore``); the
    shard assignments are left out (the shard tests run them on the real store)."""

    def put_buckets(self, level: str, buckets: Sequence[Any]) -> int:
        """Store (overwrite) these buckets at ``level``; return how many were stored."""
        ...

    def get_buckets(self, level: str, keys: Iterable[Tuple[str, int]]) -> Dict[Tuple[str, int], Any]:
        """The stored buckets among these (service, start) keys."""
        ...

    def get_services(self, names: Iterable[str]) -> List[Any]:
        """These services' items (those that exist), checkpoints included."""
        ...

    def put_services(self, items: Sequence[Any]) -> int: ...

    def list_services(self, after: Optional[str] = None, checkpoints: bool = False) -> Iterable[Any]: ...

    def state(self, shard: int = 0) -> Any: ...

    def acquire_lease(self, run_id: str, now: float, lease_seconds: int, shard: int = 0) -> bool:
        """Take the shard's run lease unless another live run holds it."""
        ...

    def update_state(self, run_id: str, shard: int = 0, **fields: Any) -> None:
        """Set (None: remove) state fields while ``run_id`` holds the lease; ``StoreError`` otherwise."""
        ...

    def take_oversized(self) -> List[Dict[str, Any]]:
        """The items refused for their size since the last call."""
        ...


def missing_methods(adapter: object, port: type) -> List[str]:
    """The port's methods ``adapter`` lacks (isinstance only says whether any is missing)."""
    wanted: Mapping[str, Any] = {name: value for name, value in vars(port).items()
                                 if callable(value) and not name.startswith("_")}
    return sorted(name for name in wanted if not callable(getattr(adapter, name, None)))
