"""The bridge's error hierarchy.

Third-party exceptions (aiohttp, botocore, aiortc) are converted into these types at one
boundary per package and raised ``from`` the original, so callers only ever handle our types::

    BridgeError
    ├── ConfigError              bad settings; the CLI exits 2 with the message
    ├── UnknownDevice            a name or id that matches no doorbell on the account
    ├── SettingsError            a doorbell setting the user asked for is unknown or invalid
    └── CloudError               anything the SkyBell cloud (or the way to it) did wrong
        ├── AuthError            credentials refused; never retried blindly
        ├── ApiError             the envelope said error=true, or data=false, or a 4xx
        │   └── NotFound         404 / "Not your device"
        ├── DeviceUnreachable    HTTP 599: the doorbell did not answer the cloud within 30 s
        ├── ServerError          5xx from the cloud: transient
        ├── CloudTimeout         no answer in time: transient
        ├── CloudConnectionError the TCP/TLS connection failed: transient
        └── BadResponse          the body was not the JSON envelope we expect

``transient`` tells retry loops whether trying again can help. Auth failures are kept apart
from transient ones on purpose: retrying a refused password only gets an account locked.
"""

from __future__ import annotations


class BridgeError(Exception):
    """Base of every error the bridge raises on purpose."""

    transient: bool = False


class ConfigError(BridgeError):
    """A setting is missing, malformed or out of range."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


class UnknownDevice(BridgeError):
    """No doorbell matches the given name or id."""

    def __init__(self, wanted: str, known: list[str]) -> None:
        hint = ", ".join(known) if known else "none"
        super().__init__(f"unknown device {wanted!r}; known devices: {hint}")
        self.wanted = wanted


class SettingsError(BridgeError):
    """A doorbell setting to change is unknown, of the wrong type or out of range.

    The message is one line (``key: reason``) whatever the input, so it can go back as is in an
    HTTP 400 or an MQTT error state.
    """

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason


class CloudError(BridgeError):
    """The SkyBell cloud refused or failed a request."""

    def __init__(self, message: str, *, status: int | None = None, path: str = "") -> None:
        where = f" ({path})" if path else ""
        code = f"HTTP {status}: " if status is not None else ""
        super().__init__(f"{code}{message}{where}")
        self.message = message
        self.status = status
        self.path = path


class AuthError(CloudError):
    """The credentials were refused (bad key, bad password, revoked token)."""


class ApiError(CloudError):
    """The request was understood and refused; changing the request may fix it."""


class NotFound(ApiError):
    """The resource does not exist or is not on this account."""


class DeviceUnreachable(CloudError):
    """The cloud could not reach the doorbell in time (HTTP 599)."""

    transient = True


class ServerError(CloudError):
    """The cloud failed internally (5xx)."""

    transient = True


class CloudTimeout(CloudError):
    """The cloud did not answer in time."""

    transient = True


class CloudConnectionError(CloudError):
    """No connection to the cloud could be made."""

    transient = True


class BadResponse(CloudError):
    """The cloud answered with something that is not the documented JSON envelope."""
