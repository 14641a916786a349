"""The text of alert emails. Every value from outside (service names above all) is escaped."""
from __future__ import annotations

import html
import re
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Optional
from urllib.parse import quote

from chalicelib.core.timeutil import iso

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_UNITS = ("B", "KB", "MB", "GB", "TB", "PB")


def human_bytes(n: float) -> str:
    value, unit = float(n), 0
    while value >= 1000 and unit < len(_UNITS) - 1:
        value /= 1000
        unit += 1
    return f"{int(value)} {_UNITS[unit]}" if unit == 0 else f"{value:.2f} {_UNITS[unit]}"


@dataclass(frozen=True)
class ThresholdAlert:
    service: str
    threshold: float
    usage_bytes: int
    limit_bytes: int
    direction: str
    period_kind: str  # daily | weekly | monthly
    period_start: int
    period_end: int
    crossed_at: int
    covered: tuple = ()
    forecast_eta: Optional[int] = None  # set for a forecast: when the trend reaches 100 %
    reject_at: Optional[float] = None  # set when the quota blocks the service at the gateway from this percent
    kind: str = "service"  # "consumer": ``service`` is a consumer's key, its quota counts it on every service

    @property
    def percent(self) -> float:
        return round(100.0 * self.usage_bytes / self.limit_bytes, 1)


def _threshold(t: float) -> str:
    return f"{t:g}%"


def _day(ts: int) -> str:
    day = datetime.fromtimestamp(ts, tz=timezone.utc).day
    suffix = "th" if 11 <= day % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


def display_name(service: str) -> str:
    """A service name fit for a subject line: control characters blanked, at most 120 characters."""
    return _CONTROL.sub(" ", service)[:120]


def compose(title: str, facts: list, link: str, link_name: str) -> tuple[str, str, str]:
    """(subject, plain text, HTML) of a message: a title, a table of facts and one link, every
    value escaped in the HTML. Alert emails and block notices share it."""
    text = "\n".join([title, ""] + [f"{k}: {v}" for k, v in facts]
                     + ["", f"{link_name.capitalize()}: {link}", "", "-- Bandwidth Meter"])
    rows = "".join(f"<tr><th align=\"left\">{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
                   for k, v in facts)
    body = (f"<!doctype html><html><body><h2>{html.escape(title)}</h2>"
            f"<table>{rows}</table><p><a href=\"{html.escape(link, quote=True)}\">Open the {link_name}</a></p>"
            f"<p style=\"color:#666\">Bandwidth Meter</p></body></html>")
    return title, text, body


def _named(alert: ThresholdAlert) -> str:
    """The subject's name as a title says it: a consumer is said to be one (a service may have the same name)."""
    name = display_name(alert.service)
    return f"consumer {name}" if alert.kind == "consumer" else name


def subject(alert: ThresholdAlert) -> str:
    name = _named(alert)
    if alert.forecast_eta is not None:
        return (f"[Bandwidth Meter] at this rate {name} reaches 100% of its {alert.period_kind} quota "
                f"on the {_day(alert.forecast_eta)}")
    return f"[Bandwidth Meter] {name} reached {_threshold(alert.threshold)} of its {alert.period_kind} quota"


def chart_link(public_url: str, alert: ThresholdAlert) -> str:
    return (f"{public_url}/dashboard#{'consumer' if alert.kind == 'consumer' else 'service'}="
            f"{quote(alert.service, safe='')}"
            f"&start={alert.period_start}&end={alert.period_end}")


def render(alert: ThresholdAlert, public_url: str) -> tuple[str, str, str]:
    """(subject, plain text, HTML) for one alert."""
    link = chart_link(public_url, alert)
    facts = [("Consumer", alert.service) if alert.kind == "consumer" else ("Service", alert.service)]
    if alert.forecast_eta is not None:
        facts.append(("Reaches 100% around", iso(alert.forecast_eta)))
    facts += [
        ("Threshold reached" if alert.forecast_eta is None else "Forecast for", _threshold(alert.threshold)
         + (f" (also covers {', '.join(_threshold(t) for t in alert.covered)})" if alert.covered else "")),
        ("Usage", f"{human_bytes(alert.usage_bytes)} ({alert.usage_bytes} bytes, {alert.direction})"),
        ("Quota", f"{human_bytes(alert.limit_bytes)} ({alert.limit_bytes} bytes)"),
        ("Percent used", f"{alert.percent}%"),
        ("Period", f"{iso(alert.period_start)} to {iso(alert.period_end)} ({alert.period_kind})"),
        ("Crossed at", iso(alert.crossed_at)),
    ]
    if alert.reject_at is not None:
        # Said as it is when sent: this email follows the usage write, and the block is applied by
        # the collector's reconcile, which may not have run yet (its own email says when it has).
        due = alert.usage_bytes * 100 >= alert.reject_at * alert.limit_bytes
        facts.append(("Gateway", (f"requests are refused (HTTP 429) from {alert.reject_at:g}% of the quota until "
                                  f"{iso(alert.period_end)}")
                      + (f"; the usage has reached that, so this {_blocked_thing(alert)} will be blocked at the "
                         "gateway within a minute (at the collector's next run, if not already)" if due else "")))
    return compose(subject(alert), facts, link, "chart")


def _blocked_thing(alert: ThresholdAlert) -> str:
    return "consumer (on every service)" if alert.kind == "consumer" else "service"


def payload(alert: ThresholdAlert, public_url: str) -> dict:
    """The webhook body: the same facts as the email, as JSON. A consumer's names it under
    ``consumer`` (and says ``kind``); a service's is as it always was."""
    facts = asdict(alert)
    kind = facts.pop("kind")
    if kind == "consumer":
        facts = {"kind": kind, "consumer": facts.pop("service"), **facts}
    return {**facts, "type": "forecast" if alert.forecast_eta is not None else "threshold",
            "covered": list(alert.covered), "percent": alert.percent, "subject": subject(alert),
            "chart_url": chart_link(public_url, alert)}
