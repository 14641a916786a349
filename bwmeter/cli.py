"""``bwmeter``: Bandwidth Meter from the command line.

    bwmeter services
    bwmeter consumers [--sort usage|name|percent] [--limit N]
    bwmeter usage SERVICE [--range 24h] [--step auto]
    bwmeter stats SERVICE [--range 1h]
    bwmeter quota get|set|rm SERVICE ...
    bwmeter consumer quota get|set|delete CONSUMER ...
    bwmeter alerts SERVICE
    bwmeter export SERVICE --csv [--range 24h] [-o FILE]
    bwmeter watch SERVICE [--interval 1] [--duration S] [--max-requests N]
    bwmeter health | status | quotas | audit [--limit N]
    bwmeter rules get | rules set FILE
    bwmeter import FILE.csv|FILE.jsonl [--source S] [--batch-size N]
    bwmeter completion bash|zsh

The endpoint and key come from ``--url`` / ``--api-key`` or ``BWMETER_URL`` /
``BWMETER_API_KEY`` (prefer the variable: a flag is visible in the process list).
"""
from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import sys
import time
from datetime import datetime, timezone
from typing import Callable, List, Mapping, Optional, Sequence, TextIO

import shtab

from bwmeter import __version__
from bwmeter.client import DEFAULT_URL, ApiError, BwmeterError, Client, NetworkError, watch

EXIT_CODES = """exit codes:
  0  success
  1  unexpected answer (not the Bandwidth Meter API?)
  2  usage error
  3  network error: the API could not be reached or did not answer
  4  the API refused the request (4xx: bad input, no or wrong key, not found, throttled)
  5  the API failed (5xx)
"""
SPARKS = "▁▂▃▄▅▆▇█"
_SIZE = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*([kmgtp]?i?b?)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "p": 10**15,
          "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40, "pi": 2**50}
_DURATION = re.compile(r"^(\d+)([smhdw])$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


# -- formatting ------------------------------------------------------------------------------
def human_bytes(n: Optional[float]) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.3g} {unit}"
        n /= 1000
    return f"{n:.3g} PB"


def parse_size(text: str) -> int:
    """``500GB``, ``1.5TiB``, ``1000`` (bytes) -> bytes. Decimal units are powers of 1000."""
    match = _SIZE.match(text)
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size such as 500GB, 1.5TiB or 1000000")
    unit = (match.group(2) or "").lower().rstrip("b")
    if unit not in _UNITS:
        raise argparse.ArgumentTypeError(f"{text!r}: unknown unit")
    value = int(float(match.group(1)) * _UNITS[unit])
    if value <= 0:
        raise argparse.ArgumentTypeError(f"limit must be positive (more than 0 bytes), not {text!r}")
    return value


def parse_duration(text: str) -> int:
    match = _DURATION.match(text.strip())
    if not match or int(match.group(1)) == 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 30m, 24h or 7d")
    return int(match.group(1)) * _SECONDS[match.group(2)]


def parse_thresholds(text: str) -> List[float]:
    try:
        values = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of percentages such as 80,90,100") from None
    if not values:
        raise argparse.ArgumentTypeError("give at least one percentage")
    return [int(v) if v.is_integer() else v for v in values]


def sparkline(values: Sequence[Optional[float]], width: Optional[int] = None) -> str:
    """▁ to █ scaled from 0 to the largest value; a point without data is a space. Longer
    series are summed into ``width`` characters (all-null groups stay spaces)."""
    values = list(values)
    if width and len(values) > width:
        groups = [values[i * len(values) // width:(i + 1) * len(values) // width] for i in range(width)]
        values = [None if all(v is None for v in g) else sum(v for v in g if v is not None) for g in groups]
    top = max((v for v in values if v is not None), default=0)
    return "".join(" " if v is None else SPARKS[0] if top <= 0 else SPARKS[min(7, round(v / top * 7))]
                   for v in values)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], right: Sequence[int] = ()) -> str:
    cells = [[str(c) for c in headers]] + [["-" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        parts = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def counted(n: int, word: str, plural: Optional[str] = None) -> str:
    """``1 minute``, ``2 minutes``: a count with its noun in the right number."""
    return f"{n} {word if n == 1 else plural or word + 's'}"


def _pct(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.1f} %"


# -- commands --------------------------------------------------------------------------------
class Context:
    def __init__(self, args, client: Client, out: TextIO, err: TextIO, now: Callable[[], float],
                 clock: Callable[[], float], sleep: Callable[[float], None], stdin: Optional[TextIO] = None):
        self.args, self.client, self.out, self.err = args, client, out, err
        self.stdin = stdin or sys.stdin
        self.now, self.clock, self.sleep = now, clock, sleep

    def print(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def emit_json(self, value) -> None:
        self.print(json.dumps(value, indent=2, sort_keys=True))

    def window(self):
        end = int(self.now())
        return end - self.args.range, end


def cmd_services(ctx: Context) -> int:
    rows = ctx.client.services(sort=ctx.args.sort)
    if ctx.args.json:
        ctx.emit_json({"services": rows})
        return 0
    if not rows:
        ctx.print("No services have been seen yet.")
        return 0
    ctx.print(table(
        ["SERVICE", "USED", "QUOTA", "USED %", "PERIOD", "LAST ACTIVE"],
        [[r["service"], human_bytes(r["usage"]["total"] if not r.get("quota") else r["usage"][r["quota"]["direction"]]),
          human_bytes(r["quota"]["limit_bytes"]) if r.get("quota") else None, _pct(r.get("percent")),
          f"{r['period']['kind']} from {r['period']['start'][:10]}", r.get("last_active")] for r in rows],
        right=(1, 2, 3)))
    return 0


def cmd_consumers(ctx: Context) -> int:
    page = ctx.client.consumers(sort=ctx.args.sort, limit=ctx.args.limit)
    rows = page["consumers"]
    if ctx.args.json:
        ctx.emit_json(page)
        return 0
    if not rows:
        ctx.print("No consumers have been seen yet (Kong labels bandwidth by consumer with the prometheus "
                  "plugin's per_consumer and bandwidth_metrics on).")
        return 0
    ctx.print(table(
        ["CONSUMER", "USED", "QUOTA", "USED %", "SERVICES", "PERIOD", "LAST ACTIVE"],
        [[r["consumer"], human_bytes(r["usage"]["total"] if not r.get("quota") else r["usage"][r["quota"]["direction"]]),
          human_bytes(r["quota"]["limit_bytes"]) if r.get("quota") else None, _pct(r.get("percent")),
          len(r.get("services") or {}), f"{r['period']['kind']} from {r['period']['start'][:10]}",
          r.get("last_active")] for r in rows],
        right=(1, 2, 3, 4)))
    total = page.get("total_count")
    more = f"{len(rows)} of {total}" if total is not None and total > len(rows) else counted(len(rows), "consumer")
    ranked = f"; ordered as ranked at {page['ranked_at']}" if page.get("ranked_at") else ""
    ctx.print(f"{more}{ranked}")
    return 0


def cmd_usage(ctx: Context) -> int:
    start, end = ctx.window()
    chart = ctx.client.bandwidth(ctx.args.service, start, end, ctx.args.step, ctx.args.direction, ctx.args.route)
    if ctx.args.json:
        ctx.emit_json(chart)
        return 0
    series = list(chart["series"])
    if ctx.args.direction == "all" and len(series) == 2:
        points = [{"time": a["time"], "bytes": None if a["bytes"] is None and b["bytes"] is None
                   else (a["bytes"] or 0) + (b["bytes"] or 0), "partial": bool(a.get("partial") or b.get("partial"))}
                  for a, b in zip(series[0]["points"], series[1]["points"])]
        series.append({"direction": "total", "route": ctx.args.route, "points": points,
                       "total_bytes": sum(p["bytes"] for p in points if p["bytes"] is not None)})
    step = chart["step"]
    count = len(series[0]["points"]) if series else 0
    ctx.print(f"{chart['service']}: {chart['start']} to {chart['end']}, step {step}, {count} points"
              + (f", route {ctx.args.route}" if ctx.args.route else ""))
    rows = []
    for s in series:
        values = [p["bytes"] for p in s["points"]]
        known = [v for v in values if v is not None]
        partial = sum(1 for p in s["points"] if p.get("partial"))
        rows.append([s["direction"], human_bytes(s["total_bytes"]), human_bytes(max(known) if known else None),
                     human_bytes(sum(known) / len(known) if known else None),
                     f"{len(known)}/{len(values)}" + (f" ({partial} partial)" if partial else ""),
                     sparkline(values, ctx.args.width)])
    ctx.print(table(["DIRECTION", "TOTAL", f"PEAK/{step}", f"AVG/{step}", "COLLECTED", "TREND"], rows,
                    right=(1, 2, 3, 4)))
    partial_times = [p["time"] for p in (series[0]["points"] if series else []) if p.get("partial")]
    if partial_times:
        ctx.print(f"(partial: {', '.join(partial_times)} {'is' if len(partial_times) == 1 else 'are'} only partly "
                  "collected (collection began in it, a gap, or still filling); the bytes are what was collected)")
    if any(p["bytes"] is None for s in series for p in s["points"]):
        ctx.print("(a blank in the trend is time not collected: before the service was seen, a gap, or not final yet)")
    return 0


def cmd_stats(ctx: Context) -> int:
    start, end = ctx.window()
    try:
        stats = ctx.client.stats(ctx.args.service, start, end, ctx.args.step)
    except ApiError as e:
        if e.status in (403, 404) and not e.enveloped:  # the route itself is missing, not the service
            raise BwmeterError(f"this API has no stats endpoint (GET /v1/services/{{service}}/stats answered "
                               f"{e.status}: {e.message}); it may be an older version", exit_code=4) from None
        raise
    if ctx.args.json:
        ctx.emit_json(stats)
        return 0
    ctx.print(f"{stats['service']}: {stats['start']} to {stats['end']} (collected until {stats['collected_until']})")
    counts, latency = stats.get("requests_count") or {}, stats.get("latency_ms") or {}

    def ms(v):
        return "-" if v is None else f"{v:g} ms"

    lines = [("requests", [f"{counts.get('success', 0):,} ok", f"{counts.get('error', 0):,} errors"]),
             ("latency", [f"avg {ms(latency.get('average'))}", f"p95 {ms(latency.get('p95'))}",
                          f"p99 {ms(latency.get('p99'))}"])]
    by_status = stats.get("by_status") or {}
    if by_status:
        lines.append(("by status", [f"{code}: {n:,}" for code, n in by_status.items()]))
    for label, parts in lines:
        ctx.print(f"  {label:<10} " + "   ".join(parts))
    return 0


def unseen(ctx: "Context", service: str) -> Optional[str]:
    """None when the API has seen ``service``; else what to tell the user, with the closest
    names it has seen (a typo such as media-cnd for media-cdn)."""
    return _never_seen(ctx, service, ctx.client.service, "services", "service", service)


def _never_seen(ctx: "Context", name: str, lookup, listing: str, key: str, called: str) -> Optional[str]:
    """None when ``lookup(name)`` finds it; else "<called> has never been seen", with the closest
    names of one page of ``/v1/<listing>`` (enough for a suggestion: the API's own check reads as many)."""
    try:
        lookup(name)
        return None
    except ApiError as e:
        if e.status != 404:
            raise
    page = ctx.client.json("GET", f"/v1/{listing}", params={"sort": "name", "limit": 1000})
    known = [r.get(key) for r in page.get(listing) or [] if isinstance(r, dict)]
    close = difflib.get_close_matches(name, [k for k in known if isinstance(k, str)], n=3, cutoff=0.6)
    return f"{called} has never been seen" + (f"; did you mean {' or '.join(close)}?" if close else "")


QUOTA_FLAGS = ("limit_bytes", "period", "anchor_day", "direction", "thresholds", "notify", "forecast", "webhook_url",
               "reject_at")


def unseen_consumer(ctx: "Context", consumer: str) -> Optional[str]:
    """As ``unseen``, for a consumer (its key: ``ws:name`` outside Kong's default workspace)."""
    return _never_seen(ctx, consumer, ctx.client.consumer, "consumers", "consumer", f"consumer {consumer}")


def cmd_quota(ctx: Context) -> int:
    a = ctx.args
    if a.operation is None or a.service is None:
        print(a.usage_help(), file=ctx.err, end="")
        missing = "get, set or rm and a SERVICE" if a.operation is None else "a SERVICE"
        raise BwmeterError(f"quota needs {missing}, e.g. bwmeter quota get media-cdn", exit_code=2)
    return _quota(ctx, "service", a.service, a.operation)


def cmd_consumer(ctx: Context) -> int:
    """``bwmeter consumer quota get|set|delete CONSUMER``: a consumer's own quota, as a service's."""
    a = ctx.args
    if a.consumer_command != "quota" or a.operation is None or a.consumer is None:
        print(a.usage_help(), file=ctx.err, end="")
        raise BwmeterError("consumer needs quota, get, set or delete and a CONSUMER, "
                           "e.g. bwmeter consumer quota get acme-mobile", exit_code=2)
    return _quota(ctx, "consumer", a.consumer, "rm" if a.operation == "delete" else a.operation)


def _quota(ctx: Context, kind: str, name: str, operation: str) -> int:
    """Show, set or remove the quota of a service or (``kind`` "consumer") of a consumer."""
    a, client = ctx.args, ctx.client
    said = name if kind == "service" else f"consumer {name}"
    if operation == "get":
        quota = client.quota(name, kind=kind)
    elif operation == "rm":
        client.delete_quota(name, kind=kind)
        if a.json:
            ctx.emit_json({kind: name, "deleted": True})
        else:
            ctx.print(f"Removed the quota of {said}.")
        return 0
    else:
        changes = {k: getattr(a, k) for k in QUOTA_FLAGS if getattr(a, k, None) is not None}
        if a.quota_action is not None:  # --action: the quota's warn|reject
            changes["action"] = a.quota_action
        problem = unseen(ctx, name) if kind == "service" else unseen_consumer(ctx, name)
        if problem and not a.force:
            raise BwmeterError(f"{problem}{'' if problem.endswith('?') else '.'} Check the name, or pass --force to "
                               f"store a quota for a {kind} that has not carried traffic yet.", exit_code=2)
        quota, version = {}, None
        if not a.replace:
            try:
                # The change applies to what was read: if someone changes the quota meanwhile,
                # the API refuses it (412) instead of silently undoing theirs.
                quota, version = client.quota_versioned(name, kind=kind)
            except ApiError as e:
                if e.status != 404:
                    raise
        quota.update(changes)
        if quota.get("action") == "warn":
            quota.pop("reject_at", None)  # only a reject quota has a reject level
        if "limit_bytes" not in quota:
            raise BwmeterError(f"{said} has no quota yet: give --limit", exit_code=2)
        quota = client.put_quota(name, quota, if_match=version, kind=kind)
        for warning in quota.pop("warnings", None) or []:  # the API's own, e.g. never seen
            print(f"bwmeter: warning: {warning}", file=ctx.err, flush=True)
    if a.json:
        ctx.emit_json(quota)
        return 0
    shown = without_meaningless(quota)
    shown["limit_bytes"] = f"{quota['limit_bytes']:,} ({human_bytes(quota['limit_bytes'])})"
    ctx.print(f"Quota of {said}:")
    for key in sorted(shown):
        value = shown[key]
        if isinstance(value, list):
            value = ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value) or "-"
        ctx.print(f"  {key:<12} {value}")
    return 0


def cmd_alerts(ctx: Context) -> int:
    body = ctx.client.alerts(ctx.args.service)
    if ctx.args.json:
        ctx.emit_json(body)
        return 0
    alerts = body.get("alerts", [])
    if not alerts:
        problem = unseen(ctx, ctx.args.service)
        if problem:  # a typo would otherwise read as "no alerts"
            raise BwmeterError(f"{problem}{'' if problem.endswith('?') else '.'} So it has no alerts.",
                               exit_code=4)
        ctx.print(f"No alerts for {ctx.args.service}.")
        return 0
    ctx.print(table(
        ["CROSSED AT", "THRESHOLD", "STATUS", "USAGE", "LIMIT", "SENT AT", "TO"],
        [[a["crossed_at"], ("forecast " if a.get("forecast") else "") + f"{a['threshold']:g} %", a["status"],
          human_bytes(a["usage_bytes"]), human_bytes(a["limit_bytes"]), a.get("sent_at"),
          ", ".join(a.get("recipients") or []) or None] for a in alerts],
        right=(1, 3, 4)))
    return 0


def cmd_export(ctx: Context) -> int:
    start, end = ctx.window()
    args = (ctx.args.service, start, end, ctx.args.step, ctx.args.direction, ctx.args.route)
    if ctx.args.json:
        text = json.dumps(ctx.client.bandwidth(*args), indent=2) + "\n"
    else:
        text = ctx.client.bandwidth_csv(*args)
    if ctx.args.output and ctx.args.output != "-":
        with open(ctx.args.output, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        print(f"Wrote {ctx.args.output}.", file=ctx.err)
    else:
        ctx.out.write(text)
        ctx.out.flush()
    return 0


def cmd_watch(ctx: Context) -> int:
    a = ctx.args
    previous = None
    requests_sent = throttled = 0
    paused_for = 0.0
    for event in watch(ctx.client, a.service, interval=a.interval, duration=a.duration,
                       max_requests=a.max_requests, clock=ctx.clock, sleep=ctx.sleep):
        if event.kind in ("usage", "throttled", "error"):
            requests_sent += 1
        if event.kind == "throttled":
            throttled += 1
            paused_for += event.wait
        if a.json:
            ctx.print(json.dumps(event.as_dict(), sort_keys=True))
            continue
        stamp = datetime.fromtimestamp(ctx.now(), tz=timezone.utc).strftime("%H:%M:%SZ")
        if event.kind == "usage":
            d = event.data
            used = d["usage"][d["quota"]["direction"]] if d.get("quota") else d["usage"]["total"]
            change = ("" if previous is None or used == previous else "  (new period)" if used < previous
                      else f"  (+{human_bytes(used - previous)})")
            quota = f" of {human_bytes(d['quota']['limit_bytes'])}, {_pct(d.get('percent'))}" if d.get("quota") else ""
            ctx.print(f"{stamp}  {d['service']}  {human_bytes(used)} this {d['period']['kind']}{quota}{change}")
            previous = used
        elif event.kind == "throttled":
            print(f"{stamp}  throttled: {event.error.message}. Not sending for {event.wait:g} s "
                  f"(Retry-After), then resuming.", file=ctx.err, flush=True)
        elif event.kind == "resumed":
            print(f"{stamp}  resumed.", file=ctx.err, flush=True)
        else:
            print(f"{stamp}  {_describe(event.error)}; trying again.", file=ctx.err, flush=True)
    if not a.json:
        print(f"{requests_sent} requests, {throttled} throttled, paused {paused_for:g} s in all.",
              file=ctx.err, flush=True)
    return 0


def cmd_health(ctx: Context) -> int:
    body = ctx.client.health()
    if ctx.args.json:
        ctx.emit_json(body)
        return 0
    ctx.print(f"{body.get('status', '?')}: Bandwidth Meter {body.get('version', '?')} at {ctx.client.base_url}")
    backends = body.get("backends") or {}
    width = max((len(k) for k in backends), default=0)
    for key in sorted(backends):
        ctx.print(f"  {key:<{width}}  {backends[key]}")
    return 0


def cmd_status(ctx: Context) -> int:
    s = ctx.client.collector_status()
    if ctx.args.json:
        ctx.emit_json(s)
        return 0
    lag = s.get("lag_seconds")
    ctx.print("Collector: " + (f"running since {s.get('running_since')}" if s.get("running") else "idle"))
    lines = [
        ("collected to", f"{s.get('watermark') or 'nothing yet'}"
         + (f" (lag {lag} s; a minute is final {s.get('configured_lag_seconds')} s after it ends)"
            if lag is not None else "")),
        ("since", s.get("collection_start")),
        ("last run", f"{s.get('last_run_start')} .. {s.get('last_run_end')}, {s.get('last_duration_ms')} ms"
         if s.get("last_run_start") else None),
        ("series seen", s.get("series_seen")),
        ("written", f"{counted(s.get('minutes_written'), 'minute')}, {counted(s.get('items_written') or 0, 'item')}"
         if s.get("minutes_written") is not None else None),
        ("kong schemas", ", ".join(s.get("kong_schemas_seen") or []) or None),
        ("last success", s.get("last_success")),
        ("last error", f"{s['last_error']} (at {s.get('last_error_at')})" if s.get("last_error") else "none"),
        ("gaps", ", ".join(f"{g['start']} .. {g['end']}" for g in s.get("gaps") or []) or "none"),
    ]
    enforcement = s.get("enforcement") or {}
    if enforcement.get("enabled"):
        lines.append(("enforcement", f"{enforcement.get('blocked_count', 0)} blocked at Kong"
                      + (f", last error: {enforcement['last_error']}" if enforcement.get("last_error") else "")))
    for label, value in lines:
        ctx.print(f"  {label:<13} {'-' if value is None else value}")
    return 0


def cmd_enforcement(ctx: Context) -> int:
    body = ctx.client.enforcement()
    if ctx.args.json:
        ctx.emit_json(body["deck"] if ctx.args.deck else body)
        return 0
    if ctx.args.deck:
        ctx.print(json.dumps(body["deck"], indent=2))
        return 0
    blocked, lifting = body.get("blocked") or [], body.get("lift_pending") or []
    admin_api = body.get("mode") == "admin-api"

    def state(entry: dict) -> str:  # desired vs applied: a reconcile (each collector run) closes the gap
        name = entry.get("state") or ("blocked" if entry.get("at_gateway") else "block pending")
        return name + (" (next run)" if name in ("block pending", "lift pending") else "")

    def blocked_name(entry: dict) -> str:  # a consumer is refused on every service: said so
        return f"consumer {entry['consumer']}" if entry.get("kind") == "consumer" else entry["service"]

    if blocked or lifting:
        ctx.print(table(["BLOCKED", "USED", "LIMIT", "USED %", "REJECT AT", "UNTIL", "STATE"], [
            [blocked_name(b), human_bytes(b["usage_bytes"]), human_bytes(b["limit_bytes"]), _pct(b.get("percent")),
             f"{b['reject_at']:g}%", b["period_end"], state(b)] for b in blocked] + [
            [blocked_name(b), None, None, None, None, b.get("period_end"), state(b)] for b in lifting],
            right=(1, 2, 3, 4)))
        if any(b.get("state") == "block pending" for b in blocked):
            ctx.print("block pending: due now; the collector's next run (within a minute) blocks it at the gateway.")
        if lifting:
            ctx.print("lift pending: no longer due, but the gateway answers 429 until the collector's next run "
                      "lifts the block.")
    else:
        ctx.print("No service or consumer is blocked" + (", at the gateway or due." if admin_api else "."))
    gateway = body.get("gateway") or {}
    if admin_api:
        ctx.print(f"Kong Admin API: reconciled {gateway.get('last_reconcile') or 'not yet'}, "
                  f"{gateway.get('blocked_count', 0)} blocked there"
                  + (f"; missing services: {', '.join(gateway['missing_services'])}"
                     if gateway.get("missing_services") else "")
                  + (f"; missing consumers: {', '.join(gateway['missing_consumers'])}"
                     if gateway.get("missing_consumers") else "")
                  + (f"; last error: {gateway['last_error']}" if gateway.get("last_error") else ""))
    else:
        ctx.print("No Kong Admin API configured: apply `bwmeter enforcement --deck` with decK (DB-less Kong, Konnect).")
    return 0


def without_meaningless(quota: dict) -> dict:
    """A quota without the fields that mean nothing for it: anchor_day is a monthly period's
    billing-cycle day (a day or week period ignores it), reject_at only applies to action reject."""
    return {k: v for k, v in quota.items()
            if not (k == "anchor_day" and quota.get("period", "month") != "month")
            and not (k == "reject_at" and quota.get("action") != "reject")}


def _action(q: dict) -> str:
    if q.get("action") == "reject":
        return f"reject at {q.get('reject_at', 100):g}%"
    return q.get("action") or "warn"


LIMIT_COLUMNS = ["LIMIT", "PERIOD", "DIRECTION", "ACTION", "THRESHOLDS", "NOTIFY"]


def _limit_rows(quotas: Sequence[dict], first: str) -> List[list]:
    return [[q.get(first), human_bytes(q.get("limit_bytes")), q.get("period"), q.get("direction"), _action(q),
             ",".join(f"{t:g}" for t in q.get("thresholds") or []) or None,
             ", ".join(q.get("notify") or []) or None] for q in quotas]


def _print_rules(ctx: Context, rules: Sequence[dict]) -> None:
    if not rules:
        ctx.print("No quota rules.")
        return
    ctx.print("Rules, in order (the first whose pattern matches a service without its own quota applies):")
    ctx.print(table(["PATTERN", *LIMIT_COLUMNS], _limit_rows(rules, "pattern"), right=(1,)))


def cmd_quotas(ctx: Context) -> int:
    body = ctx.client.quotas()
    if ctx.args.json:
        ctx.emit_json(body)
        return 0
    quotas = body.get("quotas") or []
    if quotas:
        ctx.print(table(["SERVICE", *LIMIT_COLUMNS], _limit_rows(quotas, "service"), right=(1,)))
    else:
        ctx.print("No service has its own quota.")
    ctx.print()
    _print_rules(ctx, body.get("rules") or [])
    return 0


def read_rules_file(path: str, stdin: TextIO) -> dict:
    """The body for PUT /v1/quota-rules from a file (``-``: standard input): what ``bwmeter rules
    get --json`` prints, or just the list of rules. The API validates the rules themselves."""
    try:
        if path == "-":
            text = stdin.read()
        else:
            with open(path, encoding="utf-8") as f:
                text = f.read()
    except OSError as e:
        raise BwmeterError(f"cannot read {path}: {e.strerror or e}", exit_code=2) from None
    try:
        body = json.loads(text)
    except ValueError as e:
        raise BwmeterError(f"{path} is not JSON ({e}); write {{\"rules\": [...]}} as `bwmeter rules get --json` "
                           "prints it", exit_code=2) from None
    if isinstance(body, list):
        body = {"rules": body}
    if not isinstance(body, dict) or not isinstance(body.get("rules"), list):
        raise BwmeterError(f"{path} must hold {{\"rules\": [...]}} or a list of rules", exit_code=2)
    return body


def cmd_rules(ctx: Context) -> int:
    a = ctx.args
    if a.action == "get":
        if a.file:
            raise BwmeterError("rules get takes no file (did you mean rules set FILE?)", exit_code=2)
        body = ctx.client.rules()
    else:
        if not a.file:
            raise BwmeterError("rules set needs a FILE (or - for standard input) with the rules as JSON", exit_code=2)
        body = ctx.client.put_rules(read_rules_file(a.file, ctx.stdin))
    if a.json:
        ctx.emit_json(body)
        return 0
    if a.action == "set":
        ctx.print(f"Saved {counted(len(body.get('rules') or []), 'quota rule')}.")
    _print_rules(ctx, body.get("rules") or [])
    return 0


def _change(entry: dict) -> str:
    old, new = entry.get("old"), entry.get("new")
    if entry.get("key") == "quota-rules":
        count = lambda rules: "none" if not rules else counted(len(rules), "rule")  # noqa: E731
        return f"{count(old)} -> {count(new)}"
    if entry.get("action") == "delete" or new is None:
        return f"removed (was {human_bytes(old.get('limit_bytes'))})" if isinstance(old, dict) else "removed"
    if not isinstance(old, dict):
        return f"set: {human_bytes(new.get('limit_bytes'))} per {new.get('period')}"
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return "changed: " + (", ".join(f"{k} {_shown(k, old.get(k))} -> {_shown(k, new.get(k))}" for k in changed)
                          or "nothing")


def _shown(key: str, value) -> str:
    """A quota field's value as the audit shows it: sizes readable, lists joined, absent as -."""
    if value is None:
        return "-"
    if key == "limit_bytes" and isinstance(value, int):
        return human_bytes(value)
    if isinstance(value, list):
        return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value) or "none"
    return str(value)


def cmd_audit(ctx: Context) -> int:
    body = ctx.client.audit(ctx.args.limit)
    if ctx.args.json:
        ctx.emit_json(body)
        return 0
    entries = body.get("entries") or []
    if not entries:
        ctx.print("No quota changes yet.")
        return 0
    ctx.print(table(["AT", "KEY", "ACTION", "BY", "CHANGE"],
                    [[e.get("at"), e.get("key"), e.get("action"), e.get("actor"), _change(e)] for e in entries]))
    return 0


EVENT_TYPE = "dev.bandwidth-meter.usage"
IMPORT_COLUMNS = ("id", "time", "service", "direction", "bytes")  # required; source, route, consumer optional


class ImportFileError(BwmeterError):
    def __init__(self, message: str):
        super().__init__(message, exit_code=2)


def usage_events(path: str, default_source: str) -> List[dict]:
    """The CloudEvents of an import file: CSV with a header (id, time, service, direction, bytes,
    and optionally source, route, consumer), or JSON Lines of CloudEvents or of such flat objects."""
    import csv

    def as_event(row: dict, where: str) -> dict:
        if "specversion" in row:
            return row
        missing = [c for c in IMPORT_COLUMNS if row.get(c) in (None, "")]
        if missing:
            raise ImportFileError(f"{where}: missing {', '.join(missing)}")
        try:
            nbytes = int(row["bytes"])
        except (TypeError, ValueError):
            raise ImportFileError(f"{where}: bytes must be an integer, got {row['bytes']!r}") from None
        data = {"service": row["service"], "direction": row["direction"], "bytes": nbytes}
        data.update({k: row[k] for k in ("route", "consumer") if row.get(k)})
        return {"specversion": "1.0", "id": str(row["id"]), "source": row.get("source") or default_source,
                "type": EVENT_TYPE, "time": row["time"], "data": data}

    try:
        with open(path, encoding="utf-8", newline="") as f:
            if path.endswith(".csv"):
                return [as_event(row, f"{path} line {n}") for n, row in enumerate(csv.DictReader(f), start=2)]
            if path.endswith((".jsonl", ".ndjson")):
                events = []
                for n, line in enumerate(f, start=1):
                    if line.strip():
                        try:
                            row = json.loads(line)
                        except ValueError as e:
                            raise ImportFileError(f"{path} line {n} is not JSON: {e}") from None
                        if not isinstance(row, dict):
                            raise ImportFileError(f"{path} line {n}: an event must be a JSON object")
                        events.append(as_event(row, f"{path} line {n}"))
                return events
    except OSError as e:
        raise ImportFileError(f"cannot read {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise ImportFileError(f"{path} is not UTF-8 text") from None
    raise ImportFileError(f"{path}: give a .csv or a .jsonl file")


def progress(err: TextIO, label: str, done: int, total: int, width: int = 30) -> None:
    filled = width * done // total if total else width
    print(f"\r{label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}", end="", file=err, flush=True)


IMPORT_CALL_ATTEMPTS = 5


def made_again_if_unavailable(ctx: Context, what: str, call: Callable[[], dict]) -> dict:
    """An import's batches and its commit are idempotent (a batch sent again replaces itself, a
    commit resumes after the last batch applied): a call the API failed (5xx, such as a 503 while
    DynamoDB is throttled) or that got no answer is made again, after 1, 2, 4 and 8 s."""
    for attempt in range(IMPORT_CALL_ATTEMPTS):
        try:
            return call()
        except (NetworkError, ApiError) as e:
            if (isinstance(e, ApiError) and e.status < 500) or attempt == IMPORT_CALL_ATTEMPTS - 1:
                raise
            wait = 2.0 ** attempt
            print(f"\n{what} failed ({e}); trying again in {wait:g} s", file=ctx.err, flush=True)
            ctx.sleep(wait)
    raise AssertionError("unreachable")


def cmd_import(ctx: Context) -> int:
    """Register an import, send the file in numbered batches, commit it (resuming until done)."""
    a = ctx.args
    if a.batch_size > 1000:
        raise ImportFileError("--batch-size is at most 1000 (the API's limit per batch)")
    events = usage_events(a.file, a.source or f"bwmeter-import:{os.path.basename(a.file)}")
    if not events:
        raise ImportFileError(f"{a.file} holds no event")
    batches = [events[i:i + a.batch_size] for i in range(0, len(events), a.batch_size)]
    job = ctx.client.register_import(a.description)
    import_id = job["id"]
    print(f"Import {import_id}: {counted(len(events), 'event')} in {counted(len(batches), 'batch', 'batches')}.",
          file=ctx.err, flush=True)
    staged, refusals = 0, []
    for number, batch in enumerate(batches):
        answer = made_again_if_unavailable(ctx, f"sending batch {number}",
                                           lambda: ctx.client.put_import_batch(import_id, number, batch))
        staged += answer.get("staged", 0)
        refusals += [(number * a.batch_size + r["index"], r.get("reason", "")) for r in answer["results"]
                     if r["status"] != "staged"]
        progress(ctx.err, "sending   ", number + 1, len(batches))
    print(file=ctx.err)
    while True:
        job = made_again_if_unavailable(ctx, "committing", lambda: ctx.client.commit_import(import_id))
        progress(ctx.err, "committing", job["batches_applied"], job["batches"])
        if job["status"] == "committed":
            break
    print(file=ctx.err)
    result = job.get("result") or {}
    if a.json:
        ctx.emit_json({"import": import_id, "events": len(events), "staged": staged, "refused": len(refusals),
                       **result})
    else:
        ctx.print(f"Committed import {import_id}: {result.get('accepted', 0)} counted, "
                  f"{result.get('duplicate', 0)} already counted, {len(refusals)} refused.")
    for index, reason in refusals[:10]:
        print(f"  event {index + 1}: {reason}", file=ctx.err)
    if len(refusals) > 10:
        print(f"  ... and {len(refusals) - 10} more", file=ctx.err)
    return 0


def cmd_completion(ctx: Context) -> int:
    script = completion_script(ctx.args.shell)
    if ctx.args.json:
        ctx.emit_json({"shell": ctx.args.shell, "script": script})
    else:
        ctx.out.write(script)
        ctx.out.flush()
    return 0


def completion_script(shell: str) -> str:
    """A static completion script generated from the parser itself (shtab), so it never lags behind."""
    return shtab.complete(build_parser(), shell=shell)


# -- the parser ------------------------------------------------------------------------------
def _common(sub: bool) -> argparse.ArgumentParser:
    """Options accepted before or after the command (``bwmeter --json services`` and
    ``bwmeter services --json``); on a command their default is to leave the value alone."""
    p = argparse.ArgumentParser(add_help=False)
    keep = argparse.SUPPRESS if sub else None
    p.add_argument("--url", default=keep, help=f"API base URL (env BWMETER_URL; default {DEFAULT_URL})")
    p.add_argument("--api-key", default=keep, help="API key (env BWMETER_API_KEY, preferred)")
    p.add_argument("--json", action="store_true", default=keep if sub else False,
                   help="machine-readable output: the API's JSON (watch: one JSON event per line)")
    p.add_argument("--timeout", type=float, default=keep, help="seconds to wait for an answer (default 10)")
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bwmeter", description="Bandwidth Meter from the command line.",
                                     epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     parents=[_common(False)])
    parser.add_argument("--version", action="version", version=f"bwmeter {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = _common(True)

    def command(name, func, help_text):
        p = commands.add_parser(name, help=help_text, description=help_text, parents=[common])
        p.set_defaults(func=func)
        return p

    def chart_options(p, default_range="24h"):
        p.add_argument("service")
        p.add_argument("--range", type=parse_duration, default=parse_duration(default_range),
                       help=f"how far back from now, e.g. 30m, 24h, 7d (default {default_range})")
        p.add_argument("--step", default="auto", choices=("auto", "1m", "5m", "15m", "1h", "1d"),
                       help="point size (default auto: the API picks it for the range)")

    p = command("services", cmd_services, "list services with their usage in the current quota period")
    p.add_argument("--sort", choices=("usage", "name", "percent"), default="usage")

    p = command("consumers", cmd_consumers, "list consumers with their usage in their current quota period")
    p.add_argument("--sort", choices=("usage", "name", "percent"), default="usage")
    p.add_argument("--limit", type=_positive(int), default=50, help="how many to list (default 50)")

    p = command("usage", cmd_usage, "a service's bandwidth over a range: a table and a sparkline")
    chart_options(p)
    p.add_argument("--direction", choices=("all", "ingress", "egress", "total"), default="all")
    p.add_argument("--route", help="only this route")
    p.add_argument("--width", type=int, default=60, help="sparkline width in characters (default 60)")

    p = command("stats", cmd_stats, "a service's request counts and latency over a range")
    chart_options(p, "1h")

    def quota_options(p, what="service"):
        p.add_argument("--limit", dest="limit_bytes", type=parse_size, metavar="SIZE", help="bytes per period: 500GB, 1.5TiB, 1000000")
        p.add_argument("--period", choices=("day", "week", "month"))
        p.add_argument("--anchor-day", type=int, help="billing-cycle day for monthly periods")
        p.add_argument("--direction", choices=("total", "ingress", "egress"))
        p.add_argument("--thresholds", type=parse_thresholds,
                       help="percentages that trigger an email, e.g. 80,90,100")
        p.add_argument("--notify", action="append", help="an email to notify (repeat for more)")
        p.add_argument("--forecast", action=argparse.BooleanOptionalAction, default=None,
                       help="also warn when the trend reaches 100 %% before the period ends")
        p.add_argument("--webhook-url")
        p.add_argument("--action", dest="quota_action", choices=("warn", "reject"),
                       help=f"warn: emails only; reject: also block the {what} at the gateway (429) from --reject-at")
        p.add_argument("--reject-at", type=float, metavar="PERCENT",
                       help="with --action reject: percent of the limit that blocks (default 100)")
        p.add_argument("--replace", action="store_true",
                       help="set: replace the whole quota (default: change only the options given)")
        p.add_argument("--force", action="store_true",
                       help=f"set: store a quota for a {what} the API has never seen (it may start later)")

    p = command("quota", cmd_quota, "show, set or remove a service's quota (set and rm need an admin key)")
    # Not "action": --action is the quota's own warn|reject, and argparse would say "required: action".
    p.add_argument("operation", choices=("get", "set", "rm"), nargs="?", metavar="get|set|rm")
    p.add_argument("service", nargs="?", metavar="SERVICE")
    p.set_defaults(usage_help=p.format_help)
    quota_options(p)

    p = command("consumer", cmd_consumer, "show, set or delete a consumer's quota: counted on every service, "
                "a reject quota blocks the consumer everywhere (set and delete need an admin key)")
    p.add_argument("consumer_command", choices=("quota",), nargs="?", metavar="quota")
    p.add_argument("operation", choices=("get", "set", "delete", "rm"), nargs="?", metavar="get|set|delete")
    p.add_argument("consumer", nargs="?", metavar="CONSUMER",
                   help="the consumer's username (ws:username outside Kong's default workspace)")
    p.set_defaults(usage_help=p.format_help)
    quota_options(p, "consumer")

    p = command("alerts", cmd_alerts, "alerts sent (or due) for a service")
    p.add_argument("service")

    p = command("export", cmd_export, "a service's bandwidth as CSV (default) or, with --json, JSON")
    chart_options(p)
    p.add_argument("--csv", action="store_true", help="CSV: time,service,direction,route,bytes,partial (the default)")
    p.add_argument("--direction", choices=("all", "ingress", "egress", "total"), default="all")
    p.add_argument("--route", help="only this route")
    p.add_argument("-o", "--output", help="write to this file instead of standard output").complete = shtab.FILE

    p = command("watch", cmd_watch, "print a service's live usage every second; waits out throttling")
    p.add_argument("service")
    p.add_argument("--interval", type=_positive(float), default=1.0, help="seconds between requests (default 1)")
    p.add_argument("--duration", type=_positive(float), help="stop after this many seconds")
    p.add_argument("--max-requests", type=_positive(int), help="stop after this many requests")

    command("health", cmd_health, "the API's version and configured backends (needs no key)")
    command("status", cmd_status, "the collector: how far it has collected, its last run and last error")
    command("quotas", cmd_quotas, "every service's own quota, and the quota rules")
    p = command("enforcement", cmd_enforcement, "services blocked at the gateway now (quotas with action reject), "
                "and why")
    p.add_argument("--deck", action="store_true", help="print the decK file of the blocks (for DB-less Kong, Konnect)")

    p = command("rules", cmd_rules, "show the quota rules, or replace them from a JSON file (set needs an admin key)")
    p.add_argument("action", choices=("get", "set"))
    p.add_argument("file", nargs="?", metavar="FILE",
                   help="set: the rules as JSON, as `rules get --json` prints them (- reads standard input)"
                   ).complete = shtab.FILE

    p = command("audit", cmd_audit, "every quota and rule change: when, what, by which key (needs an admin key)")
    p.add_argument("--limit", type=_positive(int), default=100, help="newest entries to show (default 100)")

    p = command("import", cmd_import, "import usage from a file (register, send in numbered batches, commit: it "
                "counts once, all at once; needs an ingest or admin key)")
    p.add_argument("file", metavar="FILE", help="FILE.csv (header: id,time,service,direction,bytes[,source,route,"
                   "consumer]) or FILE.jsonl (CloudEvents, or objects with those fields)").complete = shtab.FILE
    p.add_argument("--source", help="CloudEvents source of events without one (default bwmeter-import:FILE)")
    p.add_argument("--batch-size", type=_positive(int), default=1000, help="events per batch (at most 1000)")
    p.add_argument("--description", help="a note kept with the import")

    p = command("completion", cmd_completion, "print a shell completion script: "
                "`source <(bwmeter completion bash)`, or for zsh save it as _bwmeter on your $fpath")
    p.add_argument("shell", choices=("bash", "zsh"))
    return parser


def _positive(kind):
    def convert(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value <= 0:
            raise argparse.ArgumentTypeError("must be more than 0")
        return value

    return convert


def _describe(error: BwmeterError, url_source: str = "") -> str:
    if isinstance(error, NetworkError) and url_source:
        return (f"{error.message} [bwmeter called {url_source}; point it at the API with "
                "BWMETER_URL=http://HOST:PORT or --url (`make run` prints the `export BWMETER_URL=...` line to paste)]")
    if isinstance(error, ApiError):
        text = f"the API answered {error.status} ({error.code}): {error.message}"
        if error.status == 401:
            text += " [set BWMETER_API_KEY or pass --api-key]"
        elif error.status == 403 and error.code == "forbidden":
            text += " [this needs an admin key]"
        return text
    return error.message


_NEGATIVE = re.compile(r"^-\d")


def _attach_negative_values(argv: List[str]) -> List[str]:
    """``--limit -5MB`` as ``--limit=-5MB``: argparse takes a value starting with - for an option
    (and says "expected one argument"); attached, the value reaches its check, which explains."""
    out: List[str] = []
    for arg in argv:
        if out and out[-1].startswith("--") and "=" not in out[-1] and _NEGATIVE.match(arg):
            out[-1] = f"{out[-1]}={arg}"
        else:
            out.append(arg)
    return out


def main(argv: Optional[List[str]] = None, *, env: Mapping[str, str] = os.environ, stdout: TextIO = None,
         stderr: TextIO = None, stdin: TextIO = None, sleep: Callable[[float], None] = time.sleep,
         clock: Callable[[], float] = time.monotonic, now: Callable[[], float] = time.time) -> int:
    stdout, stderr = stdout or sys.stdout, stderr or sys.stderr
    parser = build_parser()
    try:
        args = parser.parse_args(_attach_negative_values(list(sys.argv[1:] if argv is None else argv)))
    except SystemExit as e:  # argparse has printed the problem (2) or the help (0)
        return int(e.code or 0)
    url = args.url or env.get("BWMETER_URL") or DEFAULT_URL
    url_source = (f"{url} (from --url)" if args.url else f"{url} (from BWMETER_URL)" if env.get("BWMETER_URL")
                  else f"the default {url}, as BWMETER_URL is not set")
    key = args.api_key or env.get("BWMETER_API_KEY") or None

    def announce_wait(wait: float, error: ApiError) -> None:
        print(f"bwmeter: throttled ({error.message}); retrying in {wait:g} s", file=stderr, flush=True)

    client = Client(url, key, timeout=args.timeout or 10.0, sleep=sleep, on_throttle=announce_wait)
    try:
        return args.func(Context(args, client, stdout, stderr, now, clock, sleep, stdin))
    except BwmeterError as e:
        if args.json:
            detail = e.as_dict() if isinstance(e, ApiError) else {"message": e.message}
            print(json.dumps({"error": detail}), file=stderr, flush=True)
        else:
            print(f"bwmeter: {_describe(e, url_source)}", file=stderr, flush=True)
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
