"""Home Assistant MQTT discovery: the configs that make each doorbell a device with entities.

Follows HA's MQTT discovery documentation: each entity has a ``unique_id`` (instance, device id
and key: stable across renames and restarts), a ``default_entity_id`` (HA 2025.10 replaced
``object_id`` with it), the ``device`` it belongs to (identifiers, manufacturer SkyBell, model,
firmware as ``sw_version``, ``via_device`` the bridge), an ``origin``, and ``availability``: the
bridge's status and the doorbell's own, both required (``availability_mode: all``).

The doorbell's controls come from the settings table (``bridge.skybell.settings``): the LED is a
light (on/off and RGB colour, JSON schema), each other setting a switch, number or select, so
the page, the API and Home Assistant offer the same controls with the same ranges.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from bridge.mqtt.topics import BRIDGE, Topics
from bridge.skybell.settings import SETTINGS, Setting

__all__ = [
    "LIGHT_SETTINGS",
    "Doorbell",
    "Entity",
    "bridge_entities",
    "doorbell_entities",
    "rule_keys",
    "setting_component",
]

# The LED's two settings make one light entity, keyed "led".
LIGHT_SETTINGS = ("led", "led_color")
# Controls an owner toggles from a dashboard or an automation (quiet at night, motion off while
# at home); the rest are configuration, on the device's page.
_PRIMARY = frozenset(
    {"indoor_chime", "digital_chime", "outdoor_chime", "skybell_chime", "motion_detection"}
)
_COMPONENTS = {"bool": "switch", "int": "number", "enum": "select"}


def _version() -> str:
    try:
        return metadata.version("skybell-bridge")
    except metadata.PackageNotFoundError:  # a checkout that was never installed
        return "0+unknown"


@dataclass(frozen=True, slots=True)
class Doorbell:
    """What discovery needs to know of a doorbell."""

    device_id: str
    name: str  # as the SkyBell app shows it
    slug: str  # the stream name, and its topic level
    model: str
    firmware: str
    serial: str
    has_battery: bool


@dataclass(frozen=True, slots=True)
class Entity:
    """One discovery config and where it goes."""

    component: str
    key: str  # unique within its device
    topic: str
    config: dict[str, Any]

    def payload(self) -> bytes:
        """The config as JSON."""
        return json.dumps(self.config, separators=(",", ":")).encode()


def setting_component(setting: Setting) -> str:
    """The HA platform of a setting other than the LED's."""
    return _COMPONENTS[setting.kind]


def rule_keys(names: list[str]) -> dict[str, str]:
    """Each rule's topic level and unique id part (its name made topic- and id-safe) -> name.

    Names are unique, their safe forms need not be ("Porch light" and "porch-light"): a later
    one gets a number.
    """
    keys: dict[str, str] = {}
    for name in names:
        cleaned = "".join(c if c.isascii() and c.isalnum() else "_" for c in name.lower())
        base = "_".join(part for part in cleaned.split("_") if part) or "rule"
        key, n = base, 1
        while key in keys:
            n += 1
            key = f"{base}_{n}"
        keys[key] = name
    return keys


class _Builder:
    """Common parts of every config for one device."""

    def __init__(
        self, topics: Topics, target: str, device: dict[str, Any], availability: list[str]
    ) -> None:
        self.topics = topics
        self.target = target  # the topic level: a doorbell's slug, or BRIDGE
        self.device = device
        self.availability = availability
        self.id_base = device["identifiers"][0]
        self.entity_base = target.replace("-", "_")
        self.entities: list[Entity] = []

    def add(self, component: str, key: str, name: str, **config: Any) -> None:
        unique = f"{self.id_base}_{key}"
        availability = config.pop("availability", self.availability)
        body: dict[str, Any] = {
            "name": name,
            "unique_id": unique,
            "default_entity_id": f"{component}.{self.entity_base}_{key}",
            "device": self.device,
            "origin": {"name": "skybell-bridge", "sw_version": _version()},
            "availability": [{"topic": t} for t in availability],
            "availability_mode": "all",
            **config,
        }
        object_id = unique.removeprefix(self.topics.instance + "_")
        self.entities.append(Entity(component, key, self.topics.config(component, object_id), body))

    def state(self, key: str) -> str:
        return self.topics.state(self.target, key)

    def command(self, key: str) -> str:
        return self.topics.command(self.target, key)


def _bridge_identifier(topics: Topics) -> str:
    return f"{topics.instance}_{BRIDGE}"


def doorbell_entities(topics: Topics, bell: Doorbell) -> list[Entity]:
    """Every entity of one doorbell."""
    device = {
        "identifiers": [f"{topics.instance}_{bell.device_id}"],
        "name": bell.name or bell.slug,
        "manufacturer": "SkyBell",
        "model": bell.model or "doorbell",
        "sw_version": bell.firmware or None,
        "serial_number": bell.serial or None,
        "via_device": _bridge_identifier(topics),
    }
    device = {k: v for k, v in device.items() if v is not None}
    b = _Builder(
        topics, bell.slug, device, [topics.status, topics.state(bell.slug, "availability")]
    )
    b.add(
        "event",
        "doorbell",
        "Doorbell",
        state_topic=b.state("doorbell"),
        device_class="doorbell",
        event_types=["press"],
    )
    b.add("binary_sensor", "ding", "Ding", state_topic=b.state("ding"), icon="mdi:doorbell")
    b.add("binary_sensor", "motion", "Motion", state_topic=b.state("motion"), device_class="motion")
    b.add(
        "binary_sensor",
        "online",
        "Online",
        state_topic=b.state("online"),
        device_class="connectivity",
        entity_category="diagnostic",
        # Only the bridge's status: an offline doorbell is "off" here, not "unavailable".
        availability=[topics.status],
    )
    b.add("camera", "snapshot", "Snapshot", topic=b.state("snapshot"))
    b.add(
        "button",
        "take_snapshot",
        "Take snapshot",
        command_topic=b.command("take_snapshot"),
        icon="mdi:camera",
    )
    if bell.has_battery:
        b.add(
            "sensor",
            "battery",
            "Battery",
            state_topic=b.state("battery"),
            device_class="battery",
            unit_of_measurement="%",
            state_class="measurement",
            entity_category="diagnostic",
        )
    b.add(
        "sensor",
        "wifi_signal",
        "Wi-Fi signal",
        state_topic=b.state("wifi_signal"),
        device_class="signal_strength",
        unit_of_measurement="dBm",
        state_class="measurement",
        entity_category="diagnostic",
    )
    b.add(
        "sensor",
        "last_event",
        "Last event",
        state_topic=b.state("last_event"),
        device_class="timestamp",
        json_attributes_topic=b.state("last_event/attributes"),
    )
    b.add(
        "sensor",
        "live_stream",
        "Live stream",
        state_topic=b.state("live_stream"),
        device_class="enum",
        options=["idle", "starting", "live", "reconnecting", "error"],
        icon="mdi:video",
    )
    _controls(b)
    b.add(
        "switch",
        "keep_live",
        "Keep live",
        state_topic=b.state("keep_live"),
        command_topic=b.command("keep_live"),
        json_attributes_topic=b.state("keep_live/attributes"),
        icon="mdi:video-wireless",
    )
    b.add(
        "button",
        "reboot",
        "Reboot",
        command_topic=b.command("reboot"),
        device_class="restart",
        entity_category="config",
    )
    return b.entities


def _controls(b: _Builder) -> None:
    """The settings table as entities: the LED a light, every other setting one control."""
    b.add(
        "light",
        "led",
        SETTINGS["led"].label,
        schema="json",
        state_topic=b.state("led"),
        command_topic=b.command("led"),
        supported_color_modes=["rgb"],
        brightness=False,
        icon="mdi:led-on",
    )
    for setting in SETTINGS.values():
        if setting.key in LIGHT_SETTINGS:
            continue
        component = setting_component(setting)
        extra: dict[str, Any] = {}
        if component == "number":
            extra = {"min": setting.minimum, "max": setting.maximum, "step": 1, "mode": "box"}
        elif component == "select":
            extra = {"options": list(setting.options)}
        if setting.key not in _PRIMARY:
            extra["entity_category"] = "config"
        b.add(
            component,
            setting.key,
            setting.label,
            state_topic=b.state(setting.key),
            command_topic=b.command(setting.key),
            **extra,
        )


def bridge_entities(topics: Topics, *, rules: list[str], switchbot: bool, s3: bool) -> list[Entity]:
    """The bridge's own device: its figures, and a switch per rule."""
    device = {
        "identifiers": [_bridge_identifier(topics)],
        "name": "SkyBell Bridge",
        "manufacturer": "skybell-bridge",
        "model": "skybell-bridge",
        "sw_version": _version(),
    }
    b = _Builder(topics, BRIDGE, device, [topics.status])
    figures = [
        ("streams_live", "Streams live", "mdi:video", True),
        ("clips_stored", "Clips stored", "mdi:filmstrip-box-multiple", True),
        ("switchbot_calls_left", "SwitchBot calls left today", "mdi:counter", switchbot),
        ("s3_queue", "S3 upload queue", "mdi:cloud-upload", s3),
    ]
    for key, name, icon, wanted in figures:
        if wanted:
            b.add(
                "sensor",
                key,
                name,
                state_topic=b.state(key),
                state_class="measurement",
                icon=icon,
                entity_category="diagnostic",
            )
    for key, rule in rule_keys(rules).items():
        b.add(
            "switch",
            f"rule_{key}",
            f"Rule {rule}",
            state_topic=b.state(f"rule/{key}"),
            command_topic=b.command(f"rule/{key}"),
            icon="mdi:robot",
            entity_category="config",
        )
    return b.entities
