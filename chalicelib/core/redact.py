"""Take credentials out of text that may be shown or logged (error messages, last_error).

An error from requests or botocore can quote a URL with ``user:password@`` in it, a query
string carrying a token, or an ``Authorization`` header. What is left says what failed and
where (scheme, host, port, path), never with what. E-mail addresses (alert recipients, personal
data) become ``[address]``: a provider's refusal may quote them, and such text reaches logs.
"""
from __future__ import annotations

import re

REDACTED = "[redacted]"

# scheme://user:pass@host -> scheme://[redacted]@host (also a bare user@ before a host)
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^/\s@]+@")
# any query string of a URL or path: its values may be tokens (?token=..., &X-Amz-Signature=...)
_QUERY = re.compile(r"([^\s?'\"])\?[^\s#'\"]*=[^\s#'\"]*")
# Authorization: Bearer xyz / Basic xyz, and bare "Bearer xyz"
_AUTH_SCHEME = re.compile(r"(?i)\b(bearer|basic|token)\s+[A-Za-z0-9._~+/=\-]{4,}")
# key=value or key: value pairs whose name says secret
_SECRET_PAIR = re.compile(
    r"(?i)\b([a-z_\-]*(?:password|passwd|secret|token|api[_\-]?key|signature|credential|authorization)"
    r"[a-z_\-]*)(\s*[=:]\s*)(['\"]?)[^\s'\",;&]+\3")

# local@domain.tld; after _USERINFO, whose "[redacted]@host" has no local part left to match
_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}")
ADDRESS = "[address]"


def redact(text):
    """``text`` without credentials; None stays None."""
    if text is None:
        return None
    text = _USERINFO.sub(lambda m: f"{m.group(1)}{REDACTED}@", str(text))
    text = _QUERY.sub(lambda m: f"{m.group(1)}?{REDACTED}", text)
    text = _AUTH_SCHEME.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    text = _SECRET_PAIR.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    return _EMAIL.sub(ADDRESS, text)
