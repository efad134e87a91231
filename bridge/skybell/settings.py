"""The doorbell settings an owner changes, in one table: the page, the HTTP API and MQTT use it.

Each entry names a user-facing key, its kind (bool, int, enum, colour), its range or options,
the cloud field(s) it maps to and a human label. Facts come from the SkyBell seed ("Update
device settings" and the device object); where the seed is silent the entry says so [U].

- ``validate_settings(partial)`` turns a partial body of user-facing keys into the cloud-ready
  body for ``SkyBellClient.update_settings``, or raises a one-line ``SettingsError``.
- ``extract_settings(device)`` reads the same keys back from a ``Device``.
- ``apply_settings(client, device_id, partial)`` does the round trip: validate, send, then read
  the device again. The update's answer is ``data: {}`` (seed), so the re-read device is the
  only state the cloud confirms.

The LED has no on/off field in the seed, only ``led_color`` and ``brightness`` (where 0 is
"low", not off). Off is therefore the colour ``#000000``, an RGB LED with every channel dark,
and on is any other colour [U]. Turning it on without a colour keeps a colour it has, or
restores the seed's default green.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal, TypedDict

from bridge.errors import SettingsError

if TYPE_CHECKING:
    from bridge.skybell.client import SkyBellClient
from bridge.skybell.models import Device
from bridge.skybell.tones import TONES

__all__ = [
    "CHIME_TONES",
    "LED_DEFAULT_COLOUR",
    "LED_OFF",
    "SETTINGS",
    "ControlInfo",
    "Setting",
    "SettingKind",
    "SettingsError",
    "apply_settings",
    "colour_to_rgb",
    "controls",
    "extract_settings",
    "rgb_to_colour",
    "validate_settings",
]

SettingKind = Literal["bool", "int", "enum", "colour"]

LED_OFF: Final = "#000000"
LED_DEFAULT_COLOUR: Final = "#00FF00"  # the seed's default led_color
# The seed's chime_file enum ("Select the tone the SkyBell will play upon a button press";
# user.wav is a tone the owner uploaded) is the same list as the play-tone call's file names.
CHIME_TONES: Final = TONES
_LEVELS = ("low", "medium", "high")  # the seed's legacy 0, 1, 2
_COLOUR = re.compile(r"#[0-9A-Fa-f]{6}")
_SENSITIVITY_HELP = "0, 1, 2: low, medium, high; 3 to 1000: 0.3 % to 100 %"


@dataclass(frozen=True, slots=True)
class Setting:
    """One user-facing control and how it maps onto the cloud's settings object."""

    key: str  # the user-facing name (the cloud's own where the mapping is one to one)
    kind: SettingKind
    label: str
    group: str  # where the page puts it: Light, Chimes, Motion, Camera and sound
    cloud: tuple[str, ...]  # the cloud field(s) it reads and writes
    default: Any  # the seed's default, reported when the cloud's object lacks the field
    minimum: int | None = None  # int: inclusive range
    maximum: int | None = None
    options: tuple[str, ...] = ()  # enum: the user-facing values, in display order
    cloud_values: tuple[int, ...] = ()  # enum: the cloud's value for each option (empty: same)
    help: str = ""

    def to_cloud(self, value: Any) -> Any:
        """The cloud's value for a valid user-facing one (enum labels become numbers)."""
        if self.kind == "enum" and self.cloud_values:
            return self.cloud_values[self.options.index(value)]
        return value

    def from_cloud(self, raw: Any) -> Any:
        """The user-facing value for the cloud's; None where it has none (a value we cannot show)."""
        if self.kind == "bool":
            return raw if isinstance(raw, bool) else None
        if self.kind == "int":
            number = _integer(raw)
            return number if number is not None and self.in_range(number) else None
        if self.kind == "colour":
            return raw.upper() if isinstance(raw, str) and _COLOUR.fullmatch(raw) else None
        if self.cloud_values:
            number = _integer(raw)
            return (
                self.options[self.cloud_values.index(number)]
                if number in self.cloud_values
                else None
            )
        return raw if raw in self.options else None

    def in_range(self, number: int) -> bool:
        """Whether a number is within the (inclusive) range; kinds without one accept any."""
        low = self.minimum if self.minimum is not None else -math.inf
        high = self.maximum if self.maximum is not None else math.inf
        return low <= number <= high


def _table(*settings: Setting) -> dict[str, Setting]:
    return {s.key: s for s in settings}


SETTINGS: Final[dict[str, Setting]] = _table(
    Setting(
        key="led",
        kind="bool",
        label="LED",
        group="Light",
        cloud=("led_color",),
        default=True,
        help="Off sets the colour to #000000",
    ),
    Setting(
        key="led_color",
        kind="colour",
        label="LED colour",
        group="Light",
        cloud=("led_color",),
        default=LED_DEFAULT_COLOUR,
        help="#RRGGBB",
    ),
    Setting(
        key="brightness",
        kind="int",
        label="LED brightness",
        group="Light",
        cloud=("brightness",),
        default=0,
        minimum=0,
        maximum=1000,
        help=_SENSITIVITY_HELP,
    ),
    Setting(
        key="indoor_chime",
        kind="bool",
        label="Indoor chime (mechanical)",
        group="Chimes",
        cloud=("indoor_chime",),
        default=True,
    ),
    Setting(
        key="digital_chime",
        kind="bool",
        label="Digital indoor chime",
        group="Chimes",
        cloud=("digital_chime",),
        default=False,
    ),
    Setting(
        key="outdoor_chime",
        kind="bool",
        label="Outdoor chime (doorbell speaker)",
        group="Chimes",
        cloud=("outdoor_chime",),
        default=True,
    ),
    # [U] In the seed's examples and device object, not in its list of fields.
    Setting(
        key="skybell_chime",
        kind="bool",
        label="SkyBell Chime",
        group="Chimes",
        cloud=("skybell_chime",),
        default=True,
    ),
    Setting(
        key="chime_file",
        kind="enum",
        label="Chime tone",
        group="Chimes",
        cloud=("chime_file",),
        default="1.wav",
        options=CHIME_TONES,
        help="user.wav is a tone uploaded in the SkyBell app",
    ),
    # Doorbells take 0-2 (low, medium, high); the seed's 4-99 are for SkyBell Chime devices.
    Setting(
        key="outdoor_chime_volume",
        kind="enum",
        label="Outdoor chime volume",
        group="Chimes",
        cloud=("outdoor_chime_volume",),
        default="low",
        options=_LEVELS,
        cloud_values=(0, 1, 2),
    ),
    Setting(
        key="motion_detection",
        kind="bool",
        label="Motion detection",
        group="Motion",
        cloud=("motion_detection",),
        default=True,
        help="Events and recordings on motion",
    ),
    Setting(
        key="motion_sensitivity",
        kind="int",
        label="Motion sensitivity",
        group="Motion",
        cloud=("motion_sensitivity",),
        default=50,
        minimum=0,
        maximum=1000,
        help="Higher finds more motion, and more false alarms. " + _SENSITIVITY_HELP,
    ),
    Setting(
        key="debug_motion_detect",
        kind="bool",
        label="Boxes around motion",
        group="Motion",
        cloud=("debug_motion_detect",),
        default=False,
        help="Drawn on the live view and on recordings",
    ),
    Setting(
        key="image_quality",
        kind="enum",
        label="Video quality",
        group="Camera and sound",
        cloud=("image_quality",),
        default="480p",
        options=("480p", "720p low", "720p high", "1080p"),
        cloud_values=(0, 1, 2, 3),
    ),
    Setting(
        key="speaker_volume",
        kind="enum",
        label="Speaker volume in live view",
        group="Camera and sound",
        cloud=("speaker_volume",),
        default="low",
        options=_LEVELS,
        cloud_values=(0, 1, 2),
    ),
)


class ControlInfo(TypedDict, total=False):
    """One control as ``GET /api/devices/{stream}/settings`` describes it to the page."""

    key: str
    kind: SettingKind
    label: str
    group: str
    help: str
    min: int  # int only
    max: int
    options: list[str]  # enum only


def controls() -> list[ControlInfo]:
    """The table as JSON for a page or client: labels, ranges and options, in display order."""
    out: list[ControlInfo] = []
    for s in SETTINGS.values():
        info: ControlInfo = {"key": s.key, "kind": s.kind, "label": s.label, "group": s.group}
        info["help"] = s.help
        if s.minimum is not None:
            info["min"] = s.minimum
        if s.maximum is not None:
            info["max"] = s.maximum
        if s.options:
            info["options"] = list(s.options)
        out.append(info)
    return out


def validate_settings(
    partial: Mapping[str, Any], current: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The cloud-ready body for a partial body of user-facing settings, or a SettingsError.

    ``current`` (what ``extract_settings`` gives) lets ``{"led": true}`` keep the colour the
    LED has; without it the LED comes on in the seed's default green.
    """
    if not isinstance(partial, Mapping):
        raise SettingsError("settings", "expected a JSON object of settings to change")
    if not partial:
        raise SettingsError("settings", "no settings given; known: " + ", ".join(SETTINGS))
    body: dict[str, Any] = {}
    for key, value in partial.items():
        setting = SETTINGS.get(key) if isinstance(key, str) else None
        if setting is None:
            raise SettingsError(_shown(key), "unknown setting; known: " + ", ".join(SETTINGS))
        if setting.key == "led":
            continue  # needs led_color first: below
        body[setting.cloud[0]] = setting.to_cloud(_checked(setting, value))
    if "led" in partial:
        body["led_color"] = _led_colour(
            _checked(SETTINGS["led"], partial["led"]), body.get("led_color"), current
        )
    return body


def extract_settings(device: Device) -> dict[str, Any]:
    """The user-facing settings of a device as the cloud last reported them (same keys as SETTINGS).

    A field the cloud leaves out reads as the seed's default; a value no control can show
    (outdoor_chime_volume 3, a malformed colour) reads as None.
    """
    raw = device.settings
    out: dict[str, Any] = {}
    for setting in SETTINGS.values():
        field = setting.cloud[0]
        if field not in raw:
            out[setting.key] = setting.default
        elif setting.key == "led":
            colour = SETTINGS["led_color"].from_cloud(raw[field])
            out[setting.key] = None if colour is None else colour != LED_OFF
        else:
            out[setting.key] = setting.from_cloud(raw[field])
    return out


async def apply_settings(
    client: SkyBellClient, device_id: str, partial: Mapping[str, Any]
) -> dict[str, Any]:
    """Validate, send to the cloud, and return the settings the cloud then reports.

    Raises SettingsError before any cloud call for bad input, and the client's CloudError
    types after (DeviceUnreachable: the doorbell did not answer the cloud, HTTP 599).
    """
    current: dict[str, Any] | None = None
    body = validate_settings(partial)
    if partial.get("led") is True and "led_color" not in partial:
        # "On" must not repaint an LED that is already on: it keeps its colour.
        current = extract_settings(await client.device(device_id))
        body = validate_settings(partial, current)
    await client.update_settings(device_id, body)
    return extract_settings(await client.device(device_id))


def colour_to_rgb(colour: str) -> tuple[int, int, int]:
    """``#RRGGBB`` as (r, g, b) from 0 to 255; SettingsError for anything else."""
    if not isinstance(colour, str) or not _COLOUR.fullmatch(colour):
        raise SettingsError("led_color", f"expected a colour #RRGGBB, got {_shown(colour)}")
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def rgb_to_colour(red: int, green: int, blue: int) -> str:
    """(r, g, b) from 0 to 255 as ``#RRGGBB``; SettingsError for a channel out of range."""
    channels = (red, green, blue)
    if not all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in channels):
        raise SettingsError(
            "led_color", f"each of r, g, b must be 0 to 255, got {_shown(channels)}"
        )
    return "#{:02X}{:02X}{:02X}".format(*channels)


# -- checks ------------------------------------------------------------------------------------


def _checked(setting: Setting, value: Any) -> Any:
    """The user-facing value, normalised, or a SettingsError that says what is wrong with it."""
    if setting.kind == "bool":
        if not isinstance(value, bool):
            raise SettingsError(setting.key, f"expected true or false, got {_shown(value)}")
        return value
    if setting.kind == "int":
        number = _integer(value)
        if number is None:
            raise SettingsError(setting.key, f"expected a whole number, got {_shown(value)}")
        if not setting.in_range(number):
            raise SettingsError(
                setting.key,
                f"{_shown(number)} is out of range {setting.minimum} to {setting.maximum}",
            )
        return number
    if setting.kind == "colour":
        if not isinstance(value, str) or not _COLOUR.fullmatch(value):
            raise SettingsError(setting.key, f"expected a colour #RRGGBB, got {_shown(value)}")
        return value.upper()
    if not isinstance(value, str) or value not in setting.options:
        raise SettingsError(
            setting.key, f"{_shown(value)} is not one of: " + ", ".join(setting.options)
        )
    return value


def _integer(value: Any) -> int | None:
    """An int, or a float with no fraction (HA number entities send 50.0); None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return None


def _led_colour(on: bool, colour: str | None, current: Mapping[str, Any] | None) -> str:
    if not on:
        if colour is not None and colour != LED_OFF:
            raise SettingsError("led", f"false contradicts led_color {colour}; send one of them")
        return LED_OFF
    if colour == LED_OFF:
        raise SettingsError("led_color", f"{LED_OFF} is the LED off; give a colour to turn it on")
    if colour is not None:
        return colour
    kept = current.get("led_color") if current is not None else None
    if isinstance(kept, str) and _COLOUR.fullmatch(kept) and kept.upper() != LED_OFF:
        return kept.upper()
    return LED_DEFAULT_COLOUR


def _shown(value: Any) -> str:
    """A value as JSON, short and on one line, whatever the client sent (errors echo it)."""
    try:
        text = json.dumps(value, ensure_ascii=True, allow_nan=True)
    except (TypeError, ValueError, RecursionError):
        text = type(value).__name__
    return text if len(text) <= 40 else text[:37] + "..."
