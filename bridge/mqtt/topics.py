"""Every MQTT topic of the bridge, in one place (the README lists them).

State and command topics live under ``mqtt.topic`` (``skybell``):

- ``skybell/bridge/status``: ``online``/``offline``, retained; ``offline`` is the will message.
- ``skybell/bridge/error``: one JSON object per refused command, never retained.
- ``skybell/bridge/<key>``: the bridge's own figures; ``skybell/bridge/rule/<rule>`` and
  ``.../set``: a rule's switch.
- ``skybell/<doorbell>/<key>``: a doorbell's states, and ``.../<key>/set`` its commands;
  ``<doorbell>`` is the stream name (``front-door``).

Discovery configs are ``<discovery_prefix>/<component>/<instance>/<object id>/config``: the
instance id as HA's node id keeps two bridges apart and lets one bridge find (and clear) every
config it ever announced with one wildcard.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["BRIDGE", "Command", "Topics"]

BRIDGE = "bridge"  # the topic level of the bridge's own entities, where a doorbell has its name


class Command(NamedTuple):
    """A command topic taken apart: whose (a doorbell's name, or ``bridge``) and what."""

    target: str  # the doorbell's topic name or id, or BRIDGE
    key: str  # the control; for a rule, "rule/<slug>"


class Topics:
    """The topic layout for one base topic, discovery prefix and instance id."""

    def __init__(self, base: str, discovery_prefix: str, instance: str) -> None:
        self.base = base
        self.prefix = discovery_prefix
        self.instance = instance
        self.status = f"{base}/{BRIDGE}/status"
        self.error = f"{base}/{BRIDGE}/error"
        self.ha_status = f"{discovery_prefix}/status"  # Home Assistant's birth message

    def state(self, target: str, key: str) -> str:
        """A retained state (or an event) of a doorbell, or of ``BRIDGE``."""
        return f"{self.base}/{target}/{key}"

    def command(self, target: str, key: str) -> str:
        """Where a control of a doorbell (or of ``BRIDGE``) takes commands."""
        return f"{self.base}/{target}/{key}/set"

    def config(self, component: str, object_id: str) -> str:
        """The discovery topic of one entity."""
        return f"{self.prefix}/{component}/{self.instance}/{object_id}/config"

    @property
    def subscriptions(self) -> list[str]:
        """Every command topic, and Home Assistant's birth message."""
        return [
            f"{self.base}/+/+/set",
            f"{self.base}/{BRIDGE}/rule/+/set",
            self.ha_status,
        ]

    @property
    def owned(self) -> list[str]:
        """The discovery configs only this bridge instance publishes."""
        return [f"{self.prefix}/+/{self.instance}/+/config"]

    def parse_command(self, topic: str) -> Command | None:
        """The target and control of a command topic; None for any other topic."""
        head = self.base + "/"
        if not topic.startswith(head) or not topic.endswith("/set"):
            return None
        levels = topic[len(head) : -len("/set")].split("/")
        if len(levels) == 2:
            return Command(levels[0], levels[1])
        if len(levels) == 3 and levels[0] == BRIDGE and levels[1] == "rule":
            return Command(BRIDGE, f"rule/{levels[2]}")
        return None
