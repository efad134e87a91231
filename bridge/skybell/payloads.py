"""SkyBell payloads parsed into ``Event``, the one shape every source gives (webhook, local UDP,
activity polling). The ``bridge.events`` package is what the bridge does with them.

Webhook payloads follow the seed's examples. Their quirks, kept in one place here:
- ``date_time`` is a JS millisecond number for ``doorbell`` and an ISO string for the rest;
- ``activity_id`` sits at the top for ``doorbell``/``motion`` and inside ``detail`` for ``vready``;
- ``preview`` is a base64 JPEG of 15 to 25 kB: it is decoded into ``Event.preview`` and left out of
  ``payload`` so the event log and the SSE feed stay small.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from time import monotonic
from typing import Any, Final, TypedDict

from bridge.skybell.models import Activity, Device, _parse_time

__all__ = [
    "EVENT_TYPES",
    "PRESS_TYPES",
    "SOURCES",
    "Event",
    "EventDict",
    "PayloadError",
    "event_from_activity",
    "event_from_query",
    "event_from_webhook",
    "event_id",
    "make_event",
    "parse_time",
]

EVENT_TYPES: Final = (
    "doorbell",
    "motion",
    "lstream",
    "availability",
    "vready",
    "telemetry",
    "ota",
    "devicedeleted",
    "unknown",
)
# The events a person causes at the door; polling and UDP only ever see these.
PRESS_TYPES: Final = frozenset({"doorbell", "motion"})
SOURCES: Final = ("webhook", "udp", "poll", "api", "sim")

_MAX_ID = 128  # device and activity ids are UUIDs; anything far longer is not one


class PayloadError(ValueError):
    """A webhook payload (or query) does not have the documented shape."""


class EventDict(TypedDict):
    """An event as the live feed (``/api/events/stream``) and webhook actions give it."""

    id: str
    device_id: str
    device: str
    type: str
    time: str  # ISO 8601, UTC ("...Z")
    source: str
    sources: list[str]
    activity_id: str | None
    known_device: bool
    has_preview: bool
    received_monotonic: float
    payload: dict[str, Any]


@dataclass(frozen=True)
class Event:
    """Something a doorbell did, as seen by one or more sources."""

    id: str
    device_id: str
    device: str  # the stream name (slug); for a device not on the account, its id
    type: str
    time: datetime  # aware UTC: when it happened, by the source's clock
    source: str  # the source that saw it first
    payload: dict[str, Any] = field(compare=False)
    activity_id: str | None = None
    # Every source that reported it, in order of arrival (the bus merges duplicates here).
    sources: tuple[str, ...] = ()
    known_device: bool = True
    # time.monotonic() at arrival: system-wide on Linux, so a benchmark in another process on
    # the same machine can subtract its own press time from it.
    received: float = field(default_factory=monotonic, compare=False)
    preview: bytes | None = field(default=None, repr=False, compare=False)

    def as_dict(self) -> EventDict:
        """JSON-friendly view (no preview bytes), as the log and the HTTP API give it."""
        return {
            "id": self.id,
            "device_id": self.device_id,
            "device": self.device,
            "type": self.type,
            "time": self.time.isoformat().replace("+00:00", "Z"),
            "source": self.source,
            "sources": list(self.sources or (self.source,)),
            "activity_id": self.activity_id,
            "known_device": self.known_device,
            "has_preview": self.preview is not None,
            "received_monotonic": self.received,
            "payload": self.payload,
        }


def event_id(device_id: str, type_: str, activity_id: str | None, when: datetime, src: str) -> str:
    """Stable: the same report (a webhook the cloud retries, say) always gets the same id."""
    if activity_id:
        basis = f"{device_id}|{type_}|a:{activity_id}"
    else:
        basis = f"{device_id}|{type_}|t:{int(when.timestamp() * 1000)}|{src}"
    return hashlib.sha256(basis.encode()).hexdigest()[:24]


def make_event(
    device: Device | None,
    type_: str,
    source: str,
    *,
    device_id: str = "",
    when: datetime | None = None,
    payload: dict[str, Any] | None = None,
    activity_id: str | None = None,
    preview: bytes | None = None,
) -> Event:
    """Build an event; ``device`` None means the id is not on the account (yet)."""
    if type_ not in EVENT_TYPES:
        raise PayloadError(f"unknown event type {type_!r}")
    if source not in SOURCES:
        raise PayloadError(f"unknown source {source!r}")
    when = when or datetime.now(UTC)
    dev_id = device.id if device is not None else device_id
    # An unknown device keeps its id as its name: a slug from the payload's name could collide
    # with a known doorbell's stream name and fire its rules.
    slug = device.slug if device is not None else dev_id
    return Event(
        id=event_id(dev_id, type_, activity_id, when, source),
        device_id=dev_id,
        device=slug,
        type=type_,
        time=when.astimezone(UTC),
        source=source,
        payload=payload or {},
        activity_id=activity_id or None,
        sources=(source,),
        known_device=device is not None,
        preview=preview,
    )


def parse_time(value: Any) -> datetime | None:
    """An aware UTC time from JS milliseconds or ISO 8601 (naive means UTC), else None."""
    try:
        when = _parse_time(value)
        if when is None:
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        # Converted here, where a failure is still "not a time": 9999-12-31T23:59:59-14:00
        # parses, but is past year 9999 in UTC, and the event id needs its Unix time too.
        when = when.astimezone(UTC)
        when.timestamp()
    except (ValueError, OverflowError, OSError):  # NaN, or a year past 9999
        return None
    return when


def _opt_str(data: Mapping[str, Any], key: str, where: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or (key.endswith("id") and len(value) > _MAX_ID):
        raise PayloadError(f"'{where}{key}' must be a string")
    return value


def _webhook_time(value: Any) -> datetime:
    if value is None:
        return datetime.now(UTC)
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise PayloadError("date_time must be JS milliseconds or an ISO 8601 string")
    when = parse_time(value)
    if when is None:
        raise PayloadError(f"date_time {str(value)[:40]!r} is not a time")
    return when


def _preview(value: Any) -> bytes | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return base64.b64decode(value, validate=False) or None
    except (binascii.Error, ValueError):
        return None  # a broken preview costs the picture, not the event


def event_from_webhook(
    payload: Any, devices: Mapping[str, Device], *, source: str = "webhook"
) -> Event:
    """Turn a webhook body into an Event, or raise PayloadError naming what is wrong."""
    if not isinstance(payload, dict):
        raise PayloadError("the body must be a JSON object")
    kind = payload.get("event")
    if not isinstance(kind, str) or not kind:
        raise PayloadError("'event' must be a non-empty string")
    device_id = payload.get("device_id")
    if not isinstance(device_id, str) or not device_id or len(device_id) > _MAX_ID:
        raise PayloadError("'device_id' must be a non-empty string")
    _opt_str(payload, "name", "")
    detail = payload.get("detail")
    if detail is not None and not isinstance(detail, dict):
        raise PayloadError("'detail' must be an object")
    detail = detail or {}
    activity_id = _opt_str(payload, "activity_id", "") or _opt_str(detail, "activity_id", "detail.")
    when = _webhook_time(payload.get("date_time"))
    # Event names we do not model (the seed also shows "sound") keep their name in the payload.
    type_ = kind if kind in EVENT_TYPES and kind != "unknown" else "unknown"
    kept = {k: v for k, v in payload.items() if k != "preview"}
    return make_event(
        devices.get(device_id),
        type_,
        source,
        device_id=device_id,
        when=when,
        payload=kept,
        activity_id=activity_id,
        preview=_preview(payload.get("preview")),
    )


def event_from_query(query: Mapping[str, str], devices: Mapping[str, Device]) -> Event:
    """A GET webhook: SkyBell sends no body, so the event comes from the trigger URL's query.

    ``triggers.add`` registers GET triggers as ``...?event=doorbell&device_id=...``. Without those
    parameters the call is an unattributed ping: an ``unknown`` event with no device.
    """
    if not query.get("event") and not query.get("device_id"):
        return make_event(None, "unknown", "webhook", payload={"ping": True, "method": "GET"})
    payload: dict[str, Any] = {k: query[k] for k in ("event", "device_id", "name") if k in query}
    if "date_time" in query:
        payload["date_time"] = query["date_time"]
    if "activity_id" in query:
        payload["activity_id"] = query["activity_id"]
    payload["method"] = "GET"
    return event_from_webhook(payload, devices)


def event_from_activity(activity: Activity, device: Device | None, source: str = "poll") -> Event:
    """An event for one row of the cloud's activity list."""
    type_ = activity.event_type if activity.event_type in EVENT_TYPES else "unknown"
    payload = {
        "event": activity.event_type,
        "device_id": activity.device_id,
        "name": activity.device_name,
        "activity_id": activity.id,
    }
    return make_event(
        device,
        type_,
        source,
        device_id=activity.device_id,
        when=activity.event_time,
        payload=payload,
        activity_id=activity.id,
    )
