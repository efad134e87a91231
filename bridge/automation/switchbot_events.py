"""SwitchBot webhook events (API v1.1, "Receive events from webhook") parsed into ``Event``.

Every delivery is ``{"eventType": "changeReport", "eventVersion": "1", "context": {...}}``, the
context naming the product (``deviceType``) and the device (``deviceMac``) plus the product's
state fields. Each product's state becomes one event type:

=========================  ==========================================  ===========================
deviceType                 context field                               event type
=========================  ==========================================  ===========================
WoPresence                 detectionState DETECTED / NOT_DETECTED      switchbot.motion / .clear
WoContact                  openState open / close / timeOutNotClose    switchbot.contact.open /
                                                                       .close / .left_open
WoLock, WoLockPro          lockState LOCKED / UNLOCKED / JAMMED        switchbot.lock.locked /
                                                                       .unlocked / .jammed
WoKeypad, WoKeypadTouch    eventName createKey / deleteKey             switchbot.keypad.create_key /
                                                                       .delete_key (else .other)
WoCamera, WoPanTiltCam     detectionState DETECTED                     switchbot.camera.motion
WoHand                     power on / off                              switchbot.bot.on / .off
WoPlugUS, WoPlugJP         powerState ON / OFF                         switchbot.plug.on / .off
WoBulb, WoStrip, WoCeiling powerState ON / OFF                         switchbot.light.on / .off
WoCurtain                  slidePosition                               switchbot.curtain
WoMeter…, WoIOSensor, Hub2 temperature, humidity                       switchbot.meter
WoSweeper, WoSweeperPlus   workingStatus                               switchbot.vacuum
anything else              -                                           switchbot.other
=========================  ==========================================  ===========================

SwitchBot does not sign its webhooks: the receiver's path token is the only credential, so
anything arriving here is treated as untrusted text. The event keeps only the context's scalar
fields, each shortened, and every error is one line.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from bridge.errors import ConfigError
from bridge.redact import Secret
from bridge.skybell.payloads import Event, PayloadError, event_id, parse_time

__all__ = [
    "SWITCHBOT_EVENT_TYPES",
    "SWITCHBOT_SOURCE",
    "WEBHOOK_PREFIX",
    "is_switchbot_event",
    "normalise_mac",
    "parse_switchbot_event",
    "webhook_path",
]

WEBHOOK_PREFIX: Final = "/api/switchbot/webhook/"  # + the token: the receiver's path
_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,128}")

SWITCHBOT_SOURCE: Final = "switchbot"
_PREFIX = "switchbot."
_MAX_TEXT = 120  # longer strings in a context are shortened in the stored payload
_MAX_FIELDS = 32

# (state field, {value: type suffix}) per product; values compared case-insensitively.
_STATES: Final[dict[str, tuple[str, dict[str, str]]]] = {
    "WoPresence": ("detectionState", {"detected": "motion", "not_detected": "motion.clear"}),
    "WoContact": (
        "openState",
        {"open": "contact.open", "close": "contact.close", "timeoutnotclose": "contact.left_open"},
    ),
    "WoLock": (
        "lockState",
        {"locked": "lock.locked", "unlocked": "lock.unlocked", "jammed": "lock.jammed"},
    ),
    "WoCamera": ("detectionState", {"detected": "camera.motion"}),
    "WoHand": ("power", {"on": "bot.on", "off": "bot.off"}),
    "WoPlugUS": ("powerState", {"on": "plug.on", "off": "plug.off"}),
    "WoBulb": ("powerState", {"on": "light.on", "off": "light.off"}),
}
_STATES["WoLockPro"] = _STATES["WoLock"]
_STATES["WoPanTiltCam"] = _STATES["WoCamera"]
_STATES["WoPlugJP"] = _STATES["WoPlugUS"]
for _light in ("WoStrip", "WoCeiling", "WoCeilingPro"):
    _STATES[_light] = _STATES["WoBulb"]
_KEYPAD = {"createkey": "keypad.create_key", "deletekey": "keypad.delete_key"}
# Products whose every report is one kind of event (a reading, not a state change).
_READINGS: Final = {
    "WoCurtain": "curtain",
    "WoMeter": "meter",
    "WoMeterPlus": "meter",
    "WoIOSensor": "meter",
    "WoHub2": "meter",
    "WoSweeper": "vacuum",
    "WoSweeperPlus": "vacuum",
}

SWITCHBOT_EVENT_TYPES: Final = tuple(
    sorted(
        {_PREFIX + t for _, values in _STATES.values() for t in values.values()}
        | {_PREFIX + t for t in _KEYPAD.values()}
        | {_PREFIX + t for t in _READINGS.values()}
        | {_PREFIX + "keypad.other", _PREFIX + "other"}
    )
)


def webhook_path(token: Secret) -> str:
    """The receiver's path for ``token`` (what ``switchbot webhook add`` registers);
    ConfigError for a token that is short or is not one URL path segment."""
    text = token.reveal()
    if not _TOKEN.fullmatch(text):
        # The token itself is never echoed: it is the credential.
        raise ConfigError(
            "switchbot.webhook_token",
            "use 16 to 128 letters, digits, - and _ (switchbot webhook add makes one)",
        )
    return WEBHOOK_PREFIX + text


def is_switchbot_event(kind: str) -> bool:
    """Whether an event type comes from SwitchBot."""
    return kind.startswith(_PREFIX)


def normalise_mac(mac: str) -> str:
    """A device MAC as the device list's ``deviceId``: hex digits, upper case, no separators."""
    bare = mac.replace(":", "").replace("-", "").strip()
    return bare.upper() if bare.isalnum() else bare


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _text(context: Mapping[str, Any], key: str) -> str:
    value = context.get(key)
    if not isinstance(value, str) or not value.strip():
        raise PayloadError(f"context.{key} must be a non-empty string, got {_shown(value)}")
    if len(value) > _MAX_TEXT:
        raise PayloadError(f"context.{key} is over {_MAX_TEXT} characters")
    return value.strip()


def _kind(device_type: str, context: Mapping[str, Any]) -> str:
    if device_type in _STATES:
        key, values = _STATES[device_type]
        state = _text(context, key)
        suffix = values.get(state.casefold())
        if suffix is None:
            raise PayloadError(f"context.{key} {_shown(state)} is not one {device_type} reports")
        return _PREFIX + suffix
    if device_type in ("WoKeypad", "WoKeypadTouch"):
        name = context.get("eventName")
        found = _KEYPAD.get(name.casefold()) if isinstance(name, str) else None
        return _PREFIX + (found or "keypad.other")
    if device_type in _READINGS:
        return _PREFIX + _READINGS[device_type]
    return _PREFIX + "other"


def _payload(body: Mapping[str, Any], context: Mapping[str, Any]) -> dict[str, Any]:
    """The context's scalar fields, shortened: what the log, the feed and rules' webhooks see."""
    out: dict[str, Any] = {}
    for key, value in list(context.items())[:_MAX_FIELDS]:
        if not isinstance(key, str) or len(key) > 40:
            continue
        if isinstance(value, str):
            out[key] = value[:_MAX_TEXT]
        elif isinstance(value, bool | int) or (isinstance(value, float) and value == value):
            out[key] = value
    kind = body.get("eventType")
    if isinstance(kind, str):
        out["eventType"] = kind[:_MAX_TEXT]
    return out


def parse_switchbot_event(body: Any, names: Mapping[str, str] | None = None) -> Event:
    """The event in one webhook delivery; PayloadError (one line) for anything malformed.

    ``names`` maps device ids (``normalise_mac``) to the names the account gives them: the
    name goes into the payload (``name``) so rules and the page can use it.
    """
    if not isinstance(body, Mapping):
        raise PayloadError(f"expected a JSON object, got {type(body).__name__}")
    context = body.get("context")
    if not isinstance(context, Mapping):
        raise PayloadError("missing the context object")
    kind = body.get("eventType")
    if kind is not None and not isinstance(kind, str):
        raise PayloadError(f"eventType must be a string, got {_shown(kind)}")
    device_type = _text(context, "deviceType")
    device_id = normalise_mac(_text(context, "deviceMac"))
    type_ = _kind(device_type, context)
    when = parse_time(context.get("timeOfSample")) or datetime.now(UTC)
    payload = _payload(body, context)
    name = (names or {}).get(device_id)
    if name:
        payload["name"] = name
    return Event(
        id=event_id(device_id, type_, None, when, SWITCHBOT_SOURCE),
        device_id=device_id,
        device=device_id,  # not a stream name: a slug of its name could be a doorbell's
        type=type_,
        time=when.astimezone(UTC),
        source=SWITCHBOT_SOURCE,
        payload=payload,
        sources=(SWITCHBOT_SOURCE,),
        known_device=False,  # no doorbell of the account: never recorded, never a doorbell's
    )
