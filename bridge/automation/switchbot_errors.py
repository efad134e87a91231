"""Errors of the SwitchBot client, a subtree of ``bridge.errors.BridgeError``::

    BridgeError
    └── AutomationError                  an automation could not act
        └── SwitchBotError               the SwitchBot API (or the way to it) failed
            ├── SwitchBotAuthError       HTTP 401/403: bad token or secret, clock skew, or the
            │                            account's daily limit used up (the API cannot tell)
            ├── BudgetExhausted          our own daily budget is spent; nothing was sent
            ├── SwitchBotUnavailable     transient: HTTP 5xx, timeout, no connection
            │   └── SwitchBotRateLimited HTTP 429
            ├── DeviceTypeError          statusCode 151
            ├── DeviceNotFound           statusCode 152
            ├── CommandNotSupported      statusCode 160
            ├── DeviceOffline            statusCode 161
            ├── HubOffline               statusCode 171
            ├── SwitchBotSystemError     statusCode 190: device out of sync, or a bad parameter
            └── SwitchBotBadResponse     not the documented JSON envelope

Only ``transient`` errors are retried by the client. 161 and 171 are deliberately not transient:
an offline BLE device or hub is rarely back within the seconds a backoff spans, and every retry
costs budget, so the client reports them at once and leaves retrying to whoever owns the rule.
"""

from __future__ import annotations

from bridge.errors import BridgeError

__all__ = [
    "STATUS_ERRORS",
    "AutomationError",
    "BudgetExhausted",
    "CommandNotSupported",
    "DeviceNotFound",
    "DeviceOffline",
    "DeviceTypeError",
    "HubOffline",
    "SwitchBotAuthError",
    "SwitchBotBadResponse",
    "SwitchBotError",
    "SwitchBotRateLimited",
    "SwitchBotSystemError",
    "SwitchBotUnavailable",
]


class AutomationError(BridgeError):
    """An automation could not reach or drive its target."""


class SwitchBotError(AutomationError):
    """The SwitchBot API refused or failed a request."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        http_status: int | None = None,
        path: str = "",
    ) -> None:
        code = f"statusCode {status_code}: " if status_code is not None else ""
        http = f"HTTP {http_status}: " if http_status is not None and status_code is None else ""
        where = f" ({path})" if path else ""
        super().__init__(f"SwitchBot {http}{code}{message}{where}")
        self.message = message
        self.status_code = status_code
        self.http_status = http_status
        self.path = path


class SwitchBotAuthError(SwitchBotError):
    """Token or signature refused; also what the API answers once the daily limit is spent."""


class BudgetExhausted(SwitchBotError):
    """The local daily call budget is used up, so the request was not sent."""


class SwitchBotUnavailable(SwitchBotError):
    """The API failed in a way that trying again later can fix."""

    transient = True
    retry_after: float | None = None  # seconds, when the server said (Retry-After on a 429)


class SwitchBotRateLimited(SwitchBotUnavailable):
    """HTTP 429: too many requests in a short window."""


class DeviceTypeError(SwitchBotError):
    """statusCode 151: the device type does not support this call."""


class DeviceNotFound(SwitchBotError):
    """statusCode 152: no such device on the account."""


class CommandNotSupported(SwitchBotError):
    """statusCode 160: the device does not know this command."""


class DeviceOffline(SwitchBotError):
    """statusCode 161: the device did not answer its hub or the cloud."""


class HubOffline(SwitchBotError):
    """statusCode 171: the hub that relays to the device is offline."""


class SwitchBotSystemError(SwitchBotError):
    """statusCode 190: device state out of sync with the server, or a malformed command."""


class SwitchBotBadResponse(SwitchBotError):
    """The answer was not the documented ``{statusCode, message, body}`` JSON."""


# statusCode -> (error type, what it means), for the one place that converts answers.
STATUS_ERRORS: dict[int, tuple[type[SwitchBotError], str]] = {
    151: (DeviceTypeError, "device type error (this device does not support the call)"),
    152: (DeviceNotFound, "device not found"),
    160: (CommandNotSupported, "command not supported by this device"),
    161: (DeviceOffline, "device offline"),
    171: (HubOffline, "hub offline (the device's hub is not connected)"),
    190: (SwitchBotSystemError, "internal error: device out of sync or invalid parameters"),
}
