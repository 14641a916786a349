"""The project's own exceptions. Adapters raise these (``from`` the SDK error);
the API edge maps them to HTTP status codes with a JSON body."""


class BandwidthMeterError(Exception):
    """Base of every error Bandwidth Meter raises on purpose."""


class BadRequest(BandwidthMeterError):
    """Input from a caller is invalid. ``parameter`` names what was wrong."""

    def __init__(self, message: str, parameter: str | None = None, details: list | None = None):
        super().__init__(message)
        self.message = message
        self.parameter = parameter
        self.details = details or []


class NotFound(BandwidthMeterError):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class Conflict(BandwidthMeterError):
    """The request cannot be done in the resource's present state (an import no longer open)."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class PreconditionFailed(BandwidthMeterError):
    """A conditional change (If-Match) was made against a version that is no longer current.
    ``current`` is the current version's ETag (None when there is nothing stored)."""

    def __init__(self, message: str, current: str | None = None):
        super().__init__(message)
        self.message = message
        self.current = current


class PrometheusError(BandwidthMeterError):
    """Prometheus could not be reached, refused the query, or answered garbage."""


class BadSample(BandwidthMeterError):
    """A sample or series that cannot be accounted exactly (NaN, Inf, missing label)."""


class StoreError(BandwidthMeterError):
    """DynamoDB failed in a way the caller should report (after retries)."""


class MailError(BandwidthMeterError):
    """The mailer (SES) did not accept a message."""


class GatewayError(BandwidthMeterError):
    """The gateway's Admin API (Kong) could not be reached or refused a change (after retries)."""


class GatewayServiceNotFound(GatewayError):
    """The gateway has no service of that name (Kong answered 404): it cannot be blocked there."""
