"""SigV4 query presigning of the KVS signaling WebSocket URL, and checks on a presigned URL.

The URL carries the temporary credentials' signature, so it is itself a credential: nothing here
logs it, and ``describe_url`` gives the only form of it that may appear in a log line.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

from botocore.auth import SIGV4_TIMESTAMP, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from bridge.redact import Secret, register

__all__ = [
    "DEFAULT_EXPIRES",
    "SERVICE",
    "KvsCredentials",
    "describe_url",
    "expires_at",
    "is_fresh",
    "presign_wss",
    "url_param",
]

_log = logging.getLogger(__name__)

SERVICE = "kinesisvideo"
# botocore defaults to 3600 s; KVS refuses anything over 300 s with a 403. 299 is what the
# SkyBell cloud itself uses for ``signedWSS``.
DEFAULT_EXPIRES = 299
_DEFAULT_PORTS = {"ws": 80, "wss": 443, "http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class KvsCredentials:
    """Temporary AWS credentials from the live-call response (``data.credentials``)."""

    access_key_id: str
    secret_access_key: Secret
    session_token: Secret | None = None
    expiration: datetime | None = None

    @classmethod
    def from_cloud(cls, data: Mapping[str, Any]) -> KvsCredentials:
        """Build from ``{AccessKeyId, SecretAccessKey, SessionToken?, Expiration?}``."""
        try:
            access_key = str(data["AccessKeyId"])
            secret = Secret(str(data["SecretAccessKey"]))
        except KeyError as err:
            raise ValueError(f"credentials lack {err.args[0]}") from None
        token = data.get("SessionToken")
        raw_expiration = data.get("Expiration")
        expiration = None
        if raw_expiration:
            # "2024-02-29T18:31:11.000Z": fromisoformat reads the Z since Python 3.11.
            expiration = _utc(datetime.fromisoformat(str(raw_expiration)))
        return cls(access_key, secret, Secret(str(token)) if token else None, expiration)

    def expired(self, now: datetime, margin_s: float = 0.0) -> bool:
        """True when the credentials are (or within ``margin_s`` will be) past their expiry."""
        if self.expiration is None:
            return False
        return _utc(now) + timedelta(seconds=margin_s) >= self.expiration


class _ClockedQueryAuth(SigV4QueryAuth):
    """``SigV4QueryAuth`` with an optional fixed signing time.

    botocore stamps ``request.context['timestamp']`` from the wall clock in ``add_auth`` and then
    calls this hook before anything reads the timestamp, so overriding it here is the one seam
    that lets tests sign "in the past" without patching module globals.
    """

    def __init__(
        self,
        credentials: Credentials,
        region: str,
        expires: int,
        now: datetime | None,
    ) -> None:
        super().__init__(credentials, SERVICE, region, expires=expires)
        self._fixed_time = now

    # botocore-stubs leave this private hook out, hence the ignore; the expired-signature
    # tests fail loudly if a botocore release ever stops calling it.
    def _modify_request_before_signing(self, request: AWSRequest) -> None:
        if self._fixed_time is not None:
            request.context["timestamp"] = _utc(self._fixed_time).strftime(SIGV4_TIMESTAMP)
        super()._modify_request_before_signing(request)  # type: ignore[misc]


def presign_wss(
    endpoint: str,
    channel_arn: str,
    client_id: str | None,
    region: str,
    access_key: str,
    secret_key: str,
    session_token: str | None,
    expires: int = DEFAULT_EXPIRES,
    now: datetime | None = None,
) -> str:
    """Presign ``endpoint`` (``wss://`` or ``ws://``, with or without a path) for one role.

    A ``client_id`` makes this a viewer's URL; ``None`` makes it the master's.
    """
    register(secret_key)
    if session_token:
        register(session_token)
    parts = urlsplit(endpoint)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"not a WebSocket endpoint: {parts.scheme}://{parts.hostname}")
    if parts.query or parts.fragment:
        raise ValueError("the signaling endpoint must not carry a query or fragment")
    params = {"X-Amz-ChannelARN": channel_arn}
    if client_id is not None:
        params["X-Amz-ClientId"] = client_id
    request = AWSRequest(
        method="GET",
        url=urlunsplit((parts.scheme, parts.netloc, parts.path or "/", "", "")),
        params=params,
        # Sign the Host exactly as aiohttp will send it: botocore only strips the default port
        # for http/https, so a "wss://host:443" endpoint would otherwise be signed as host:443.
        headers={"host": _host_header(endpoint)},
    )
    credentials = Credentials(access_key, secret_key, session_token)
    signer = _ClockedQueryAuth(credentials, region, expires, now)
    signer.add_auth(request)
    url = str(request.url)
    signature = url_param(url, "X-Amz-Signature")
    if signature:
        # botocore logs the bare signature at debug, where no URL pattern would catch it.
        register(signature)
    _log.debug("presigned signaling URL for %s", describe_url(url))
    return url


def _host_header(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None and parts.port != _DEFAULT_PORTS.get(parts.scheme):
        host = f"{host}:{parts.port}"
    return host


def url_param(url: str, name: str) -> str | None:
    """One query parameter of a URL, decoded; ``None`` when absent."""
    values = parse_qs(urlsplit(url).query, keep_blank_values=True).get(name)
    return values[0] if values else None


def expires_at(signed_url: str) -> datetime | None:
    """When a presigned URL stops being accepted; ``None`` if it does not say."""
    stamp = url_param(signed_url, "X-Amz-Date")
    lifetime = url_param(signed_url, "X-Amz-Expires")
    if not stamp or not lifetime:
        return None
    try:
        signed = datetime.strptime(stamp, SIGV4_TIMESTAMP).replace(tzinfo=UTC)
        return signed + timedelta(seconds=int(lifetime))
    except ValueError:
        return None


def is_fresh(signed_url: str, now: datetime, margin_s: float = 30.0) -> bool:
    """True when the URL will still be accepted ``margin_s`` seconds from ``now``."""
    deadline = expires_at(signed_url)
    return deadline is not None and _utc(now) + timedelta(seconds=margin_s) < deadline


def describe_url(url: str) -> str:
    """The loggable part of a signaling URL: host, path and channel, never the signature."""
    parts = urlsplit(url)
    channel = url_param(url, "X-Amz-ChannelARN") or "?"
    role = "viewer" if url_param(url, "X-Amz-ClientId") is not None else "master"
    return f"{parts.hostname}{parts.path or '/'} channel={channel} role={role}"


def _utc(moment: datetime) -> datetime:
    # A naive datetime is taken as UTC: every clock the bridge injects is UTC.
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)
