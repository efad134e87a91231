"""Typed views of the SkyBell cloud's JSON. Each model keeps the raw dict for fields we ignore."""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bridge.errors import BadResponse, UnknownDevice
from bridge.kvs.presign import KvsCredentials
from bridge.redact import Secret

__all__ = [
    "Activity",
    "Device",
    "IceServer",
    "LiveCall",
    "Snapshot",
    "Trigger",
    "User",
    "find_device",
    "slugify",
]


def slugify(name: str) -> str:
    """A device name made URL-safe: ``Front Door`` → ``front-door``."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")
    return slug or "doorbell"


def _parse_time(value: Any) -> datetime | None:
    """SkyBell mixes ISO strings and JS millisecond timestamps (sometimes as strings)."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)) or (isinstance(value, str) and value.isdigit()):
        return datetime.fromtimestamp(int(value) / 1000, UTC)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    return None


def _need(data: Mapping[str, Any], key: str, what: str) -> Any:
    try:
        return data[key]
    except (KeyError, TypeError):
        raise BadResponse(f"{what} is missing {key!r}") from None


@dataclass(frozen=True)
class User:
    """The account behind the credentials."""

    account_id: str
    email: str
    premium_status: str
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> User:
        """Build from the ``/user/`` data object."""
        return cls(
            account_id=str(data.get("account_id", "")),
            email=str(data.get("email", "")),
            premium_status=str(data.get("premium_status", "")),
            raw=data,
        )


@dataclass(frozen=True)
class Device:
    """A doorbell on the account."""

    id: str
    name: str
    serial: str
    model: str
    firmware: str
    last_connected: datetime | None
    last_disconnected: datetime | None
    ip_address: str | None
    settings: dict[str, Any] = field(repr=False, compare=False)
    raw: dict[str, Any] = field(repr=False, compare=False)

    @property
    def slug(self) -> str:
        """The stream name: the device name made URL-safe."""
        return slugify(self.name)

    @property
    def online(self) -> bool:
        """Connected more recently than disconnected, as the cloud last saw it."""
        if self.last_connected is None:
            return False
        return self.last_disconnected is None or self.last_connected >= self.last_disconnected

    @property
    def battery(self) -> int | None:
        """Battery percentage where the model reports one (wired models do not)."""
        telemetry = self.raw.get("telemetry") or {}
        value = telemetry.get("battery_percentage", telemetry.get("battery"))
        return int(value) if isinstance(value, (int, float, str)) and str(value).isdigit() else None

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> Device:
        """Build from one row of ``/devices/`` or from ``/devices/{id}/``."""
        dev_settings = data.get("device_settings") or {}
        telemetry = data.get("telemetry") or {}
        hardware = str(data.get("hardware") or "")
        model = dev_settings.get("model_rev") or hardware.split(":")[-1]
        return cls(
            id=str(_need(data, "device_id", "device")),
            name=str(data.get("name") or (data.get("settings") or {}).get("device_name") or ""),
            serial=str(data.get("serial") or dev_settings.get("serial_number") or ""),
            model=str(model or ""),
            firmware=str(data.get("firmware") or dev_settings.get("firmware_version") or ""),
            last_connected=_parse_time(data.get("last_connected")),
            last_disconnected=_parse_time(data.get("last_disconnected")),
            ip_address=telemetry.get("ip_address"),
            settings=dict(data.get("settings") or {}),
            raw=data,
        )


def find_device(devices: Iterable[Device], wanted: str) -> Device:
    """Match a device by id, exact name, case-insensitive name or slug."""
    devices = list(devices)
    slug = slugify(wanted)
    tests: list[Callable[[Device], bool]] = [
        lambda d: d.id == wanted,
        lambda d: d.name == wanted,
        lambda d: d.name.lower() == wanted.lower(),
        lambda d: d.slug == slug,
    ]
    for test in tests:
        matches = [d for d in devices if test(d)]
        if len(matches) == 1:
            return matches[0]
    raise UnknownDevice(wanted, [f"{d.name} ({d.slug})" for d in devices])


@dataclass(frozen=True)
class Snapshot:
    """A still picture from the doorbell."""

    jpeg: bytes = field(repr=False)
    taken_at: datetime | None


@dataclass(frozen=True)
class Activity:
    """One entry of the device history: a press, motion, a live stream."""

    id: str
    device_id: str
    device_name: str
    event_type: str
    event_time: datetime
    video_url: str | None = field(repr=False)
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> Activity:
        """Build from one row of the activity list."""
        when = _parse_time(_need(data, "event_time", "activity"))
        if when is None:
            raise BadResponse(f"activity has an unreadable event_time {data.get('event_time')!r}")
        return cls(
            id=str(_need(data, "activity_id", "activity")),
            device_id=str(data.get("device_id", "")),
            device_name=str(data.get("device_name", "")),
            event_type=str(data.get("event_type", "")),
            event_time=when,
            video_url=data.get("video_url"),
            raw=data,
        )


@dataclass(frozen=True)
class Trigger:
    """A webhook (or other) trigger registered with the cloud."""

    id: str
    device_id: str
    type: str
    enabled: bool
    events: tuple[str, ...]
    url: str
    method: str
    fail_count: int
    disabled_reason: str | None

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> Trigger:
        """Build from a trigger object."""
        meta = data.get("meta_config") or {}
        return cls(
            id=str(_need(data, "trigger_id", "trigger")),
            device_id=str(data.get("device_id", "")),
            type=str(data.get("type", "")),
            enabled=bool(data.get("enabled", True)),
            events=tuple(data.get("on_events") or ()),
            url=str(meta.get("url", "")),
            method=str(meta.get("method", "")),
            fail_count=int(data.get("fail_count") or 0),
            disabled_reason=data.get("disabled_reason"),
        )


@dataclass(frozen=True)
class IceServer:
    """A browser-style RTCIceServer entry."""

    urls: tuple[str, ...]
    username: str | None = None
    credential: Secret | None = None

    def as_dict(self) -> dict[str, Any]:
        """The browser/aiortc form, credential revealed (for the peer connection only)."""
        out: dict[str, Any] = {"urls": list(self.urls)}
        if self.username is not None:
            out["username"] = self.username
        if self.credential is not None:
            out["credential"] = self.credential.reveal()
        return out


@dataclass(frozen=True)
class LiveCall:
    """What the cloud returns when asked for a live stream: the way into the KVS channel."""

    device_id: str
    ice_servers: tuple[IceServer, ...]
    https_endpoint: str | None
    wss_endpoint: str
    channel_arn: str
    credentials: KvsCredentials
    region: str
    signed_wss: Secret | None
    client_id: str

    @classmethod
    def from_api(cls, device_id: str, data: dict[str, Any]) -> LiveCall:
        """Parse the ``videostream`` response's data object."""
        if not isinstance(data, dict):
            raise BadResponse("live call response has no data object")
        endpoints = {
            str(e.get("Protocol", "")).upper(): str(e.get("ResourceEndpoint", ""))
            for e in data.get("endpoints") or []
            if isinstance(e, dict)
        }
        if "WSS" not in endpoints:
            raise BadResponse("live call response has no WSS endpoint")
        try:
            creds = KvsCredentials.from_cloud(_need(data, "credentials", "live call"))
        except (ValueError, TypeError) as err:
            raise BadResponse(f"live call credentials are unusable: {err}") from None
        ice = []
        for entry in data.get("ice") or []:
            urls = entry.get("urls")
            ice.append(
                IceServer(
                    urls=tuple([urls] if isinstance(urls, str) else urls or ()),
                    username=entry.get("username"),
                    credential=Secret(entry["credential"]) if entry.get("credential") else None,
                )
            )
        channel_arn = str(_need(data, "channelARN", "live call"))
        return cls(
            device_id=device_id,
            ice_servers=tuple(ice),
            https_endpoint=endpoints.get("HTTPS"),
            wss_endpoint=endpoints["WSS"],
            channel_arn=channel_arn,
            credentials=creds,
            region=str(data.get("aws_region") or _region_from_arn(channel_arn)),
            signed_wss=Secret(data["signedWSS"]) if data.get("signedWSS") else None,
            client_id=_client_id(data.get("signed") or [], channel_arn),
        )


def _region_from_arn(arn: str) -> str:
    parts = arn.split(":")
    return parts[3] if len(parts) > 3 and parts[3] else "us-east-1"


def _client_id(signed: list[Any], channel_arn: str) -> str:
    """The viewer client id the cloud chose, found in the ``signed`` header blobs."""
    for blob in signed:
        try:
            headers = json.loads(blob).get("headers", {}) if isinstance(blob, str) else {}
        except ValueError:
            continue
        if headers.get("X-Amz-ClientId"):
            return str(headers["X-Amz-ClientId"])
    # KVS caps client ids at 256 characters; the cloud's own form is this prefix plus the ARN.
    return ("VIEWER-FOR-CHANNEL" + channel_arn)[:256]
