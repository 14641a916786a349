"""The HTTP edge: query parameters in, domain errors out as JSON with the right status.

Every error body is ``{"error": {"code", "message", "parameter"?, "details"?}}``.
"""
from __future__ import annotations

import functools
import json
import logging
import os
from typing import Callable, Mapping, Optional, Sequence

from chalice import CORSConfig, Response

from chalicelib.core.errors import BadRequest, BandwidthMeterError, NotFound, PrometheusError, StoreError
from chalicelib.core.settings import ConfigError

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024


class PayloadTooLarge(BadRequest):
    pass


def error_response(status: int, code: str, message: str, parameter: Optional[str] = None,
                   details: Optional[list] = None, headers: Optional[dict] = None) -> Response:
    error = {"code": code, "message": message}
    if parameter:
        error["parameter"] = parameter
    if details:
        error["details"] = details
    return Response(body={"error": error}, status_code=status,
                    headers={"Content-Type": "application/json", **(headers or {})})


def endpoint(view: Callable) -> Callable:
    """Translate the project's exceptions into HTTP answers; never leak a stack trace."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        try:
            return view(*args, **kwargs)
        except PayloadTooLarge as e:
            return error_response(413, "payload_too_large", e.message, e.parameter)
        except BadRequest as e:
            return error_response(400, "bad_request", e.message, e.parameter, e.details)
        except NotFound as e:
            return error_response(404, "not_found", e.message)
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

    return wrapper


def json_body(raw: Optional[bytes]) -> object:
    """Parse a request body as JSON, with the errors a caller can act on."""
    if raw is None or raw == b"":
        raise BadRequest("a JSON body is required", parameter="body")
    if len(raw) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"the body is larger than {MAX_BODY_BYTES} bytes", parameter="body")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise BadRequest(f"the body is not valid JSON: {e}", parameter="body") from None


def choice(params: Mapping[str, str], name: str, allowed: Sequence[str], default: Optional[str]) -> Optional[str]:
    value = params.get(name, default)
    if value is not None and value not in allowed:
        raise BadRequest(f"{name} must be one of {', '.join(allowed)}", parameter=name)
    return value


def integer(params: Mapping[str, str], name: str, default: int, minimum: int, maximum: int) -> int:
    raw = params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be an integer", parameter=name) from None
    if not minimum <= value <= maximum:
        raise BadRequest(f"{name} must be between {minimum} and {maximum}", parameter=name)
    return value


def cors_config() -> CORSConfig:
    """CORS for API Gateway's preflight answers, decided when the app is loaded.

    Read straight from the environment because Chalice needs it at import time
    (the stage's variables are loaded before app.py is imported); the per-request
    allow-list check lives in ``allowed_origin``."""
    origins = [o.strip() for o in os.environ.get("CORS_ORIGINS", "").split(",") if o.strip()]
    dev = os.environ.get("STAGE", "dev") == "dev"
    allow = origins[0] if origins and "*" not in origins else ("*" if dev else "null")
    return CORSConfig(allow_origin=allow, allow_headers=["x-api-key", "Content-Type", "Accept"],
                      max_age=600, expose_headers=["Retry-After"])


def allowed_origin(origin: Optional[str], allow_list: Sequence[str]) -> Optional[str]:
    """The value for Access-Control-Allow-Origin, or None to send no CORS header."""
    if not origin:
        return "*" if "*" in allow_list else None
    if "*" in allow_list:
        return "*"
    return origin if origin in allow_list else None
