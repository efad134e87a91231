"""State payloads: what each entity's state topic carries, from the bridge's own values.

Pure functions, so the formats are in one place (and in the README): ``ON``/``OFF`` for binary
sensors and switches, the option or number as text for selects and numbers, ``None`` where the
cloud reports a value no control can show (HA then shows "unknown"), and JSON for the light.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from bridge.mqtt.discovery import LIGHT_SETTINGS
from bridge.skybell.models import Device
from bridge.skybell.payloads import Event
from bridge.skybell.settings import SETTINGS, colour_to_rgb

__all__ = [
    "device_states",
    "event_payload",
    "last_event_attributes",
    "on_off",
    "setting_states",
    "wifi_dbm",
]

_UNKNOWN = "None"  # HA's payload for "state unknown" on switches, numbers and selects


def on_off(value: bool) -> str:
    """A boolean as HA's default payloads."""
    return "ON" if value else "OFF"


def wifi_dbm(device: Device) -> int | None:
    """The doorbell's Wi-Fi signal in dBm, as its telemetry last said (``signal_level``)."""
    telemetry = device.raw.get("telemetry") or {}
    value = telemetry.get("signal_level") if isinstance(telemetry, dict) else None
    try:
        dbm = float(str(value).strip())
    except ValueError:
        return None
    # A signal level is a small negative number; anything else is not one.
    return int(dbm) if -150 <= dbm <= 0 else None


def device_states(device: Device) -> dict[str, str]:
    """State key -> payload for what the cloud's device record says (the battery only where
    the model reports one)."""
    states = {
        "availability": "online" if device.online else "offline",
        "online": on_off(device.online),
    }
    wifi = wifi_dbm(device)
    states["wifi_signal"] = str(wifi) if wifi is not None else _UNKNOWN
    if device.battery is not None:
        states["battery"] = str(device.battery)
    return states


def setting_states(settings: Mapping[str, Any]) -> dict[str, str]:
    """State key -> payload for each control, from user-facing settings (``extract_settings``)."""
    states: dict[str, str] = {}
    led, colour = settings.get("led"), settings.get("led_color")
    if isinstance(led, bool):
        light: dict[str, Any] = {"state": on_off(led)}
        if led and isinstance(colour, str):
            r, g, b = colour_to_rgb(colour)
            light |= {"color_mode": "rgb", "color": {"r": r, "g": g, "b": b}}
        states["led"] = json.dumps(light)
    for key, setting in SETTINGS.items():
        if key in LIGHT_SETTINGS or key not in settings:
            continue
        value = settings[key]
        if value is None:
            states[key] = _UNKNOWN
        elif setting.kind == "bool":
            states[key] = on_off(bool(value))
        else:
            states[key] = str(value)
    return states


def event_payload(event: Event) -> str:
    """The Doorbell event entity's message for a press (``event_type`` plus attributes)."""
    return json.dumps(
        {
            "event_type": "press",
            "event_id": event.id,
            "activity_id": event.activity_id,
            "time": _iso(event),
            "source": event.source,
        }
    )


def last_event_attributes(event: Event) -> str:
    """Attributes of the Last event sensor: what the event was."""
    return json.dumps({"type": event.type, "event_id": event.id, "activity_id": event.activity_id})


def _iso(event: Event) -> str:
    return event.time.isoformat()
