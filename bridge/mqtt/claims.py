"""Doorbell claims: two bridge instances serving one doorbell is a config error, found over MQTT.

With ``bridge.instance`` set, each bridge publishes a retained ``<mqtt.topic>/claims/<device id>``
holding its instance id for every doorbell of its share, and subscribes to ``.../claims/+``.
Whichever of two claimers connects second sees the first's retained claim; the first sees the
second's live one: so both log the conflict, naming the doorbell and both instances.

An orderly stop clears the claims still ours (not one another instance wrote over). A crash
leaves them retained, which is harmless: the same instance claims them again when it restarts,
and only a different instance claiming the doorbell is a conflict. The will cannot clear them
(MQTT has one will per connection, and it marks the bridge offline).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

__all__ = ["Claims"]

_LOGGER = logging.getLogger(__name__)

Publish = Callable[[str, bytes], None]  # (topic, payload) sent retained


class Claims:
    """This instance's claims, and the doorbells another instance claims too."""

    def __init__(self, root: str, instance: str, devices: Mapping[str, str]) -> None:
        self.prefix = f"{root}/claims/"
        self.subscription = self.prefix + "+"
        self.instance = instance
        self._names = dict(devices)  # device id -> display name, for the log
        self._last: dict[str, bytes] = {}  # device id -> last claim seen on the broker
        self.conflicts: dict[str, set[str]] = {}  # device id -> the other instances
        self._released = False

    def claim_all(self, publish: Publish) -> None:
        """Claim every doorbell of this instance (retained: later instances see it)."""
        for device_id in self._names:
            publish(self.prefix + device_id, self.instance.encode())

    def release(self, publish: Publish) -> None:
        """Clear the claims that are still ours, on an orderly stop."""
        mine = self.instance.encode()
        self._released = True  # our own clears come back: they must not be claimed again
        for device_id in self._names:
            if self._last.get(device_id, mine) == mine:
                publish(self.prefix + device_id, b"")

    def seen(self, topic: str, payload: bytes, publish: Publish) -> bool:
        """Take a message on a claim topic (True), or say it is none (False)."""
        if not topic.startswith(self.prefix):
            return False
        device_id = topic[len(self.prefix) :]
        if device_id not in self._names or self._released:
            return True  # another instance's doorbell, claimed once: as it should be
        self._last[device_id] = payload
        if not payload:
            # The other claimer stopped and cleared the topic: claim it again, so a third
            # instance still finds a claim here.
            publish(topic, self.instance.encode())
            return True
        other = payload.decode("utf-8", "replace")
        if other != self.instance and other not in self.conflicts.setdefault(device_id, set()):
            self.conflicts[device_id].add(other)
            _LOGGER.error(
                "doorbell %s (%s) is claimed by two bridge instances, %r and %r: list it in "
                "one instance's skybell.devices only",
                self._names[device_id],
                device_id,
                self.instance,
                other,
            )
        if not self.conflicts.get(device_id):
            self.conflicts.pop(device_id, None)
        return True
