"""One bridge's share of the account's doorbells (``skybell.devices``), when several split them.

Several bridges can serve one account, each with its own list of doorbells (names, stream
names or ids). The share is applied where the device list comes from, ``SkyBellClient.devices``,
so the hub, the event directory, MQTT, metrics and the archive all see the same doorbells. It
also remembers the account's other doorbells (ids and LAN addresses), so events from them are
ignored quietly instead of being mistaken for doorbells missing from the account.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from bridge.skybell.models import Device, slugify

__all__ = ["DeviceShare"]

_LOGGER = logging.getLogger(__name__)


class DeviceShare:
    """The doorbells listed in ``skybell.devices``, matched by id, name or stream name."""

    def __init__(self, wanted: Iterable[str]) -> None:
        self.wanted = tuple(wanted)
        self._keys = set(self.wanted) | {slugify(w) for w in self.wanted}
        self.foreign_ids: frozenset[str] = frozenset()
        self.foreign_ips: frozenset[str] = frozenset()
        self._warned: set[str] = set()

    def owns(self, device: Device) -> bool:
        """True when this device is one of the share's."""
        return bool({device.id, device.name, device.slug} & self._keys)

    def select(self, devices: Iterable[Device]) -> list[Device]:
        """The share's devices among the account's; a listed one not found is warned of once."""
        devices = list(devices)
        mine = [d for d in devices if self.owns(d)]
        others = [d for d in devices if not self.owns(d)]
        self.foreign_ids = frozenset(d.id for d in others)
        self.foreign_ips = frozenset(d.ip_address for d in others if d.ip_address)
        for name in self.wanted:
            found = any(name in (d.id, d.name, d.slug) or slugify(name) == d.slug for d in mine)
            if not found and name not in self._warned:
                # A warning, not a config error: the account's list changes (a doorbell being
                # re-paired), and the rest of the share should keep working meanwhile.
                self._warned.add(name)
                _LOGGER.warning(
                    "skybell.devices lists %r, which is no doorbell on the account "
                    "(the account's doorbells: %s)",
                    name,
                    ", ".join(d.name for d in devices) or "none",
                )
        return mine

    def foreign(self, device_id: str) -> bool:
        """True for a doorbell of the account that is another bridge's, not this one's."""
        return device_id in self.foreign_ids and device_id not in self.wanted
