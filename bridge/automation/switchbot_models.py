"""Typed views of SwitchBot API v1.1 answers: devices, infrared remotes, scenes, status, webhooks.

Each type keeps the original object in ``raw``: device types carry dozens of model-specific keys
(curtain calibration, lock groups, keypad passcodes) that the bridge does not need to model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

__all__ = [
    "Scene",
    "SwitchBotDevice",
    "SwitchBotDeviceStatus",
    "Webhook",
    "find_scene",
    "find_switchbot_device",
]

# hubDeviceId of a hub itself, or of a device on Wi-Fi: it has no parent hub.
NO_HUB = "000000000000"


def _str(row: dict[str, Any], key: str) -> str:
    value = row.get(key)
    return value if isinstance(value, str) else ""


@dataclass(frozen=True)
class SwitchBotDevice:
    """A physical device, or a virtual infrared remote (``remote=True``) taught to a hub."""

    id: str
    name: str
    type: str  # deviceType for physical devices ("Bot", "Plug Mini (US)"), remoteType for remotes
    hub_id: str | None  # None when the device is a hub or talks Wi-Fi itself
    remote: bool = False
    cloud_service: bool = True  # BLE devices need Cloud Services on before the API can drive them
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_api(cls, row: dict[str, Any], *, remote: bool) -> SwitchBotDevice:
        """Parse one entry of ``deviceList`` or ``infraredRemoteList``."""
        hub = _str(row, "hubDeviceId")
        return cls(
            id=_str(row, "deviceId"),
            name=_str(row, "deviceName"),
            type=_str(row, "remoteType" if remote else "deviceType"),
            hub_id=hub if hub and hub != NO_HUB else None,
            remote=remote,
            cloud_service=bool(row.get("enableCloudService", True)),
            raw=dict(row),
        )


@dataclass(frozen=True)
class Scene:
    """A manual scene made in the SwitchBot app."""

    id: str
    name: str

    @classmethod
    def from_api(cls, row: dict[str, Any]) -> Scene:
        """Parse one entry of the scene list."""
        return cls(id=_str(row, "sceneId"), name=_str(row, "sceneName"))


@dataclass(frozen=True)
class SwitchBotDeviceStatus:
    """The state a device last reported; ``values`` holds every model-specific key."""

    device_id: str
    device_type: str
    hub_id: str | None
    values: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_api(cls, body: dict[str, Any]) -> SwitchBotDeviceStatus:
        """Parse the body of ``/devices/{id}/status``."""
        hub = _str(body, "hubDeviceId")
        return cls(
            device_id=_str(body, "deviceId"),
            device_type=_str(body, "deviceType"),
            hub_id=hub if hub and hub != NO_HUB else None,
            values=dict(body),
        )

    @property
    def power(self) -> str | None:
        """ "on"/"off" where the device reports it (the API is not consistent about case)."""
        power = self.values.get("power")
        return power.lower() if isinstance(power, str) else None

    @property
    def battery(self) -> int | None:
        """Battery percentage of battery-powered devices."""
        battery = self.values.get("battery")
        return battery if isinstance(battery, int) else None


@dataclass(frozen=True)
class Webhook:
    """One configured webhook, as ``queryDetails`` describes it."""

    url: str
    device_list: str = "ALL"
    enabled: bool = True
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @classmethod
    def from_api(cls, row: dict[str, Any]) -> Webhook:
        """Parse one entry of a ``queryDetails`` answer."""
        return cls(
            url=_str(row, "url"),
            device_list=_str(row, "deviceList") or "ALL",
            enabled=bool(row.get("enable", True)),
            created_at=_ms(row.get("createTime")),
            updated_at=_ms(row.get("lastUpdateTime")),
        )


def _ms(value: Any) -> datetime | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return datetime.fromtimestamp(value / 1000, UTC)
    return None


_T = TypeVar("_T", SwitchBotDevice, Scene)


def _find(items: Sequence[_T], wanted: str) -> _T | None:
    for item in items:
        if item.id == wanted:
            return item
    folded = wanted.casefold().strip()
    return next((item for item in items if item.name.casefold().strip() == folded), None)


def find_switchbot_device(
    devices: Sequence[SwitchBotDevice], wanted: str
) -> SwitchBotDevice | None:
    """The device whose id, or else whose name (ignoring case), is ``wanted``."""
    return _find(devices, wanted)


def find_scene(scenes: Sequence[Scene], wanted: str) -> Scene | None:
    """The scene whose id, or else whose name (ignoring case), is ``wanted``."""
    return _find(scenes, wanted)
