"""What the simulated cloud accepts at ``POST /devices/{id}/settings/``, and the defaults it reports.

Written from the seed's field list ("Update device settings"), not from the bridge's own table
(``bridge.skybell.settings``): the fake checks the bridge instead of agreeing with it by
construction. A body is checked whole before any of it is stored, as a database update is; the
first problem found is the 400's message. Fields the seed's device object shows but its list
does not document (``skybell_chime``, ``event_duration``...) are accepted with the type they
have there; any other key is refused, which catches a bridge that sends a misspelt field.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["CHIME_FILES", "default_settings", "settings_problem"]

CHIME_FILES = frozenset(
    {
        "user.wav",
        "1.wav",
        "2.wav",
        "3.wav",
        "4.wav",
        "5.wav",
        "8.wav",
        "9.wav",
        "cartoon-melodic-bell.wav",
        "home.wav",
        "modern.wav",
        "onemomentplease.wav",
        "single-press.wav",
        "wifi_ring.wav",
    }
)
_UNSET = 0xFFFFFFFF  # hmbd/fd sensitivity: "use motion_sensitivity instead"
_COLOUR = re.compile(r"#[0-9A-Fa-f]{6}")
_MAX_GRID = 32  # the seed tested up to 10x10; far larger is a client bug, not a motion grid


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _whole(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _bool(key: str, value: Any) -> str | None:
    return None if isinstance(value, bool) else f"{key} must be true or false"


def _text(key: str, value: Any) -> str | None:
    return None if isinstance(value, str) and value.strip() else f"{key} must be a string"


def _range(low: int, high: int, *also: int) -> Callable[[str, Any], str | None]:
    def check(key: str, value: Any) -> str | None:
        number = _number(value)
        if number is not None and (low <= number <= high or number in also):
            return None
        return f"{key} must be a number from {low} to {high}"

    return check


def _led_color(key: str, value: Any) -> str | None:
    if isinstance(value, str) and _COLOUR.fullmatch(value):
        return None
    return "led_color must be a hexadecimal RGB value such as #00FF00"


def _chime_file(key: str, value: Any) -> str | None:
    if value in CHIME_FILES:
        return None
    return "chime_file must be one of: " + ", ".join(sorted(CHIME_FILES))


def _image_quality(key: str, value: Any) -> str | None:
    # The wording tests/test_skybell_client.py has matched since the first simulator.
    return (
        None
        if value in (0, 1, 2, 3) and not isinstance(value, bool)
        else ("image_quality must be 0, 1, 2 or 3")
    )


def _outdoor_volume(key: str, value: Any) -> str | None:
    number = _number(value)
    if number is not None and 0 <= number <= 3:
        return None
    if number is not None and 4 <= number <= 99:
        return "outdoor_chime_volume 4-99 is for SkyBell Chime devices, not doorbells"
    return "outdoor_chime_volume must be 0 (low), 1 (medium) or 2 (high)"


def _motion_zones(key: str, value: Any) -> str | None:
    problem = (
        "motion_zone_config must be {x, y, zones: y rows of x {ignore, sensitivity}, threshold}"
    )
    if not isinstance(value, Mapping):
        return problem
    x, y, threshold = (_whole(value.get(k)) for k in ("x", "y", "threshold"))
    zones = value.get("zones")
    if x is None or y is None or threshold is None:
        return problem
    if not (1 <= x <= _MAX_GRID and 1 <= y <= _MAX_GRID and 1 <= threshold <= x * y):
        return problem
    if not isinstance(zones, list) or len(zones) != y:
        return problem
    for row in zones:
        if not isinstance(row, list) or len(row) != x:
            return problem
        for zone in row:
            if not (
                isinstance(zone, Mapping)
                and isinstance(zone.get("ignore"), bool)
                and _number(zone.get("sensitivity")) is not None
            ):
                return problem
    return None


_CHECKS: dict[str, Callable[[str, Any], str | None]] = {
    "device_name": _text,
    "time_zone": _text,
    "led_color": _led_color,
    "brightness": _range(0, 1000),
    "indoor_chime": _bool,
    "digital_chime": _bool,
    "outdoor_chime": _bool,
    "skybell_chime": _bool,
    "outdoor_chime_volume": _outdoor_volume,
    "motion_detection": _bool,
    "debug_motion_detect": _bool,
    "motion_sensitivity": _range(0, 1000),
    "hmbd_sensitivity": _range(0, 1000, _UNSET),
    "fd_sensitivity": _range(0, 1000, _UNSET),
    "fr_sensitivity": _range(0, 1000),
    "image_quality": _image_quality,
    "video_rotation": _range(0, 359),  # [U] the seed gives no values
    "speaker_volume": _range(0, 2),
    "chime_file": _chime_file,
    "motion_zone_config": _motion_zones,
    # In the seed's device object, not in its list of fields.
    "button_pressed": _bool,
    "video_datetime": _bool,
    "audio_cmd_enabled": _bool,
    "audio_alarm_enabled": _bool,
    "force_turn": _bool,
    "event_duration": _range(1, 300),
}


def settings_problem(body: Mapping[str, Any]) -> str | None:
    """Why the cloud refuses this settings body (the first problem), or None to store it."""
    if not body:
        return "No settings provided"
    for key, value in body.items():
        check = _CHECKS.get(key)
        if check is None:
            return f"Unknown setting {key[:40]!r}"
        problem = check(key, value)
        if problem is not None:
            return problem
    return None


def default_settings() -> dict[str, Any]:
    """The seed's documented defaults, as a device object reports them before any change.

    ``image_quality`` is left out: the simulated doorbell's media decides its own unless a
    test or the bridge sets it (``SimDoorbell.settings``).
    """
    zones = [[{"ignore": False, "sensitivity": 100} for _ in range(8)] for _ in range(5)]
    return {
        "led_color": "#00ff00",
        "brightness": 0,
        "chime_file": "1.wav",
        "indoor_chime": True,
        "digital_chime": False,
        "outdoor_chime": True,
        "skybell_chime": True,
        "outdoor_chime_volume": 0,
        "speaker_volume": 0,
        "motion_detection": True,
        "motion_sensitivity": 50,
        "hmbd_sensitivity": _UNSET,
        "fd_sensitivity": _UNSET,
        "fr_sensitivity": 500,
        "debug_motion_detect": False,
        "video_rotation": 0,
        "video_datetime": True,
        "button_pressed": True,
        "event_duration": 30,
        "audio_cmd_enabled": False,
        "audio_alarm_enabled": False,
        "force_turn": False,
        "motion_zone_config": {"x": 8, "y": 5, "zones": zones, "threshold": 1},
    }
