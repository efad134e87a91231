"""Errors of the KVS signaling layer, placed in the bridge's hierarchy.

A refused presign (HTTP 403 on the WebSocket handshake) is an ``AuthError``: retrying the same URL
cannot help, but presigning again with fresh credentials can. Everything else that goes wrong on
the socket is transient, so the live-call loop may simply start over.
"""

from __future__ import annotations

from bridge.errors import AuthError, BridgeError, CloudError

__all__ = [
    "GoAway",
    "PayloadTooLarge",
    "SignalingAuthError",
    "SignalingClosed",
    "SignalingError",
    "SignalingStatusError",
    "SignalingTimeout",
]


class SignalingError(CloudError):
    """The signaling socket failed in a way that a new connection may fix."""

    transient = True


class SignalingAuthError(AuthError):
    """The signaling service refused the presigned URL (HTTP 403); presign again."""


class SignalingTimeout(SignalingError):
    """The handshake or an awaited message did not come in time."""


class SignalingClosed(SignalingError):
    """The socket closed (by the service, the network or us) while we needed it."""


class GoAway(SignalingError):
    """The service sent GO_AWAY: it will close this socket soon, reconnect elsewhere."""


class SignalingStatusError(SignalingError):
    """The service answered a message we sent with an error STATUS_RESPONSE."""

    def __init__(
        self,
        description: str,
        *,
        correlation_id: str | None,
        error_type: str | None,
        status_code: str | None,
    ) -> None:
        super().__init__(f"{error_type or 'error'}: {description}")
        self.correlation_id = correlation_id
        self.error_type = error_type
        self.status_code = status_code


class PayloadTooLarge(BridgeError, ValueError):
    """A message payload exceeds the service's size limit; sending it would be refused."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"signaling payload is {size} bytes after base64, limit {limit}")
        self.size = size
        self.limit = limit
