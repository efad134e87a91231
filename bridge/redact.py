"""Secrets that cannot leak: a wrapper type, a registry of live secret values, and a log filter.

Two layers, because either alone misses cases:
- every ``Secret`` registers its value, so a token that ends up inside an exception message or a
  URL is still scrubbed from the log line;
- patterns catch credentials we never held as a ``Secret``, such as the signature and session
  token inside a presigned KVS or S3 URL that arrived in a cloud response.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import deque

__all__ = ["MASK", "RedactingFilter", "Secret", "redact", "register"]

MASK = "***"
# Short values (a 1-character password in a test) would mask innocent text everywhere.
_MIN_LEN = 6
# Tokens are refreshed all day; keep the newest ones, which are the ones that can still hurt.
_MAX_REGISTERED = 256

_lock = threading.Lock()
_values: deque[str] = deque(maxlen=_MAX_REGISTERED)

# Query parameters and headers that carry credentials in AWS presigned URLs and in our own APIs.
_PATTERNS = [
    re.compile(
        r"(?i)(X-Amz-(?:Signature|Security-Token|Credential)|Signature|Credential|AWSAccessKeyId"
        r"|token|access_token|refresh_token|api_key|password)=([^&\s\"']+)"
    ),
    # botocore's request repr shows header values as bytes (b'...'); keep the scheme readable.
    re.compile(
        r"(?i)(authorization[\"']?\s*[:=]\s*b?[\"']?"
        r"(?:Bearer|Basic|Digest|AWS4-HMAC-SHA256)?\s*)([^\s\"',]+)"
    ),
    re.compile(r"(?i)(x-skybell-user-api-key[\"']?\s*[:=]\s*[\"']?)([^\s\"',]+)"),
    # botocore.auth at debug: "Signature:\n<hex>" for every request it signs (the presigned KVS
    # URL included), logged before the caller can register the signature as a secret; and the
    # canonical request's "x-amz-security-token:<token>" line, or the same header in a repr.
    re.compile(r"(?i)(\bsignature:\s*)([^\s\"',]+)"),
    re.compile(r"(?i)(x-amz-security-token[\"']?\s*:\s*b?[\"']?)([^\s\"',]+)"),
    # Temporary AWS credentials as the SkyBell cloud returns them, should a response be logged.
    re.compile(
        r"(?i)((?:SecretAccessKey|SessionToken|AccessKeyId)[\"']?\s*:\s*[\"']?)([^\s\"',]+)"
    ),
]


def register(value: str) -> None:
    """Remember a secret value so that ``redact`` masks it wherever it appears."""
    if len(value) < _MIN_LEN:
        return
    with _lock:
        if value not in _values:
            _values.append(value)


def redact(text: str) -> str:
    """Mask every registered secret and every credential-shaped URL parameter in ``text``."""
    with _lock:
        values = sorted(_values, key=len, reverse=True)
    for value in values:
        if value in text:
            text = text.replace(value, MASK)
    for pattern in _PATTERNS:
        text = pattern.sub(_sub, text)
    return text


def _sub(match: re.Match[str]) -> str:
    whole = match.group(0)
    prefix = match.group(1)
    rest = whole[len(prefix) :]
    if rest.startswith("="):
        return f"{prefix}={MASK}"
    return f"{prefix}{MASK}"


class Secret:
    """A string that never shows itself in ``repr``, ``str``, logs or tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value
        register(value)

    def reveal(self) -> str:
        """The real value, for the one place that must send it."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret({MASK!r})"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class RedactingFilter(logging.Filter):
    """Rewrites each record's message (with its arguments) and exception text, redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.msg = redact(message)
        record.args = None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True
