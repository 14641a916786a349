"""The HTTP edge: query parameters in, domain errors out as JSON with the right status.

Every error body is ``{"error": {"code", "message", "parameter"?, "details"?}}``.
"""
from __future__ import annotations

import functools
import json
import logging
import os
import re
from typing import Callable, Dict, Mapping, Optional, Sequence
from urllib.parse import unquote

from chalice import CORSConfig, Response

from chalicelib.core.errors import (BadRequest, BandwidthMeterError, Conflict, NotFound, PreconditionFailed,
                                    PrometheusError, StoreError)
from chalicelib.core.settings import ConfigError, running_in_lambda

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
MAX_BODY_DEPTH = 32  # a quota body is three levels deep; nothing we accept comes near this
# The largest integer every JSON client holds exactly (JavaScript's Number.MAX_SAFE_INTEGER);
# DynamoDB numbers hold 38 digits, so this bound serves both.
MAX_SAFE_INTEGER = 2**53 - 1


class PayloadTooLarge(BadRequest):
    pass


def error_response(status: int, code: str, message: str, parameter: Optional[str] = None,
                   details: Optional[list] = None, headers: Optional[dict] = None,
                   extra: Optional[dict] = None) -> Response:
    error: Dict[str, object] = {"code": code, "message": message, **(extra or {})}
    if parameter:
        error["parameter"] = parameter
    if details:
        error["details"] = details
    return Response(body={"error": error}, status_code=status,
                    headers={"Content-Type": "application/json", **(headers or {})})


def versioned(body, etag: str, status: int = 200) -> Response:
    """A JSON answer carrying the version it shows as its ETag (for a later If-Match)."""
    return Response(body=body, status_code=status, headers={"Content-Type": "application/json", "ETag": etag})


# Who may call a route, declared where the route is declared (``@endpoint(role=READ)``); the
# access guard (chalicelib/api/access.py) reads it. Undeclared: GET needs read, anything else admin.
# INGEST routes push usage (events, imports): ingest and admin keys may call them, read keys not;
# an ingest key may call nothing else.
PUBLIC, READ, INGEST, ADMIN = "public", "read", "ingest", "admin"
ROLES = (PUBLIC, READ, INGEST, ADMIN)


def endpoint(view: Optional[Callable] = None, *, role: Optional[str] = None) -> Callable:
    """``@endpoint`` or ``@endpoint(role=...)``: translate the project's exceptions into HTTP
    answers and never leak a stack trace; ``role`` is who may call it (PUBLIC, READ, INGEST or ADMIN),
    kept on the view as ``view.role`` for the access guard. Path parameters arrive
    percent-encoded (API Gateway and `chalice local` pass them as sent), so they are decoded
    here once: ``/v1/services/search%20api`` names the service ``search api``."""
    if role is not None and role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    if view is None:
        return functools.partial(endpoint, role=role)
    return _translated(view, role)


def _translated(view: Callable, role: Optional[str]) -> Callable:
    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        kwargs = {name: unquote(value) if isinstance(value, str) else value for name, value in kwargs.items()}
        try:
            return view(*args, **kwargs)
        except PayloadTooLarge as e:
            return error_response(413, "payload_too_large", e.message, e.parameter)
        except BadRequest as e:
            return error_response(400, "bad_request", e.message, e.parameter, e.details)
        except NotFound as e:
            return error_response(404, "not_found", e.message)
        except Conflict as e:
            return error_response(409, "conflict", e.message)
        except PreconditionFailed as e:
            return error_response(412, "precondition_failed", e.message, extra={"current_version": e.current},
                                  headers={"ETag": e.current} if e.current else None)
        except ConfigError as e:
            log.error("configuration error: %s", e)
            return error_response(500, "misconfigured", str(e))
        except (StoreError, PrometheusError) as e:
            log.error("backend error in %s: %s", view.__name__, e)
            return error_response(503, "backend_unavailable", "a backend is unavailable; try again shortly")
        except BandwidthMeterError as e:
            log.exception("unexpected domain error in %s", view.__name__)
            return error_response(500, "internal", str(e))
        except Exception:  # the edge: log it whole, answer without internals
            log.exception("unhandled error in %s", view.__name__)
            return error_response(500, "internal", "internal error; the log has details")

    wrapper.role = role  # type: ignore[attr-defined]
    return wrapper


class _Refused(ValueError):
    """A JSON value we refuse even though Python's json module would accept it."""


def _refuse_constant(name: str):
    raise _Refused(f"{name} is not JSON (RFC 8259 has no NaN or Infinity)")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise _Refused(f"the number {text[:40]} is too large")
    return value


def _safe_int(text: str) -> int:
    if len(text.lstrip("-")) > 16:  # refuse before converting: a 4,000-digit integer costs
        raise _Refused(f"the integer {text[:40]}... is beyond ±{MAX_SAFE_INTEGER}")
    value = int(text)
    if abs(value) > MAX_SAFE_INTEGER:
        raise _Refused(f"the integer {text} is beyond ±{MAX_SAFE_INTEGER}")
    return value


def nesting_depth(raw: bytes) -> int:
    """The deepest bracket nesting of a JSON text, outside strings: a linear scan, so a hostile
    body is measured before the recursive parser could overflow the stack on it."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return deepest


def json_body(raw: Optional[bytes], max_bytes: int = MAX_BODY_BYTES) -> object:
    """Parse a request body as strict JSON, with the errors a caller can act on.

    Stricter than ``json.loads``: no NaN / Infinity (browsers' JSON.parse would then fail on
    our answers), no number that overflows to infinity, no integer beyond ±(2^53 - 1), no
    nesting deeper than MAX_BODY_DEPTH, and no text that is not valid Unicode (a lone
    surrogate could not be stored or mailed)."""
    if raw is None or raw == b"":
        raise BadRequest("a JSON body is required", parameter="body")
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogatepass")
    if len(raw) > max_bytes:
        raise PayloadTooLarge(f"the body is larger than {max_bytes} bytes", parameter="body")
    if nesting_depth(raw) > MAX_BODY_DEPTH:
        raise BadRequest(f"the body is nested more than {MAX_BODY_DEPTH} levels deep", parameter="body")
    try:
        value = json.loads(raw, parse_constant=_refuse_constant, parse_float=_finite_float, parse_int=_safe_int)
        json.dumps(value, ensure_ascii=False).encode("utf-8")  # lone surrogates ("\ud800") fail here
    except _Refused as e:
        raise BadRequest(f"the body is not acceptable JSON: {e}", parameter="body") from None
    except (ValueError, UnicodeError, RecursionError) as e:
        raise BadRequest(f"the body is not valid JSON: {str(e)[:200]}", parameter="body") from None
    return value


def choice(params: Mapping[str, str], name: str, allowed: Sequence[str], default: Optional[str]) -> Optional[str]:
    value = params.get(name, default)
    if value is not None and value not in allowed:
        raise BadRequest(f"{name} must be one of {', '.join(allowed)}", parameter=name)
    return value


_INTEGER = re.compile(r"-?[0-9]{1,18}")


def integer(params: Mapping[str, str], name: str, default: int, minimum: int, maximum: int) -> int:
    """A bounded integer parameter: plain ASCII digits only (``int`` would also take "1_000",
    Arabic-Indic digits and 4,000-digit numbers, each costing or surprising)."""
    raw = params.get(name)
    if raw is None:
        return default
    if not _INTEGER.fullmatch(raw):
        raise BadRequest(f"{name} must be an integer between {minimum} and {maximum}", parameter=name)
    value = int(raw)
    if not minimum <= value <= maximum:
        raise BadRequest(f"{name} must be between {minimum} and {maximum}", parameter=name)
    return value


def cors_config(env: Mapping[str, str] = os.environ) -> CORSConfig:
    """CORS for API Gateway's preflight answers, decided when the app is loaded.

    Read straight from the environment because Chalice needs it at import time
    (the stage's variables are loaded before app.py is imported); the per-request
    allow-list check lives in ``allowed_origin``."""
    origins = [o.strip() for o in env.get("CORS_ORIGINS", "").split(",") if o.strip()]
    dev = env.get("STAGE", "dev") == "dev" and not running_in_lambda(env)  # '*' only in a local dev run
    allow = origins[0] if origins and "*" not in origins else ("*" if dev else "null")
    return CORSConfig(allow_origin=allow, allow_headers=["x-api-key", "Content-Type", "Accept", "If-Match"],
                      max_age=600, expose_headers=["Retry-After", "ETag"])


def allowed_origin(origin: Optional[str], allow_list: Sequence[str]) -> Optional[str]:
    """The value for Access-Control-Allow-Origin, or None to send no CORS header."""
    if not origin:
        return "*" if "*" in allow_list else None
    if "*" in allow_list:
        return "*"
    return origin if origin in allow_list else None
