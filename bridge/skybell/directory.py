"""The account's doorbells by id and by LAN address, refreshed from the cloud when one is missing.

Event sources name a device by id (webhook, polling) or only by the sender's IP (local UDP). A
doorbell added to the account, or given a new DHCP lease, after the bridge started is found by
asking the cloud again; asking is rate-limited so a stream of junk cannot hammer the cloud.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping

from bridge.errors import CloudError
from bridge.skybell.models import Device
from bridge.skybell.share import DeviceShare

__all__ = ["DeviceDirectory"]

_LOGGER = logging.getLogger(__name__)


class DeviceDirectory:
    """Devices by id and by IP address, with a rate-limited refresh."""

    def __init__(
        self,
        devices: Iterable[Device],
        *,
        refresh: Callable[[], Awaitable[list[Device]]] | None = None,
        min_refresh_interval: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        share: DeviceShare | None = None,
    ) -> None:
        # With skybell.devices, the account's other doorbells are another bridge's: their
        # events are skipped quietly, not reported as doorbells missing from the account.
        self.share = share
        self._refresh = refresh
        self._min_interval = min_refresh_interval
        self._clock = clock
        self._last_refresh: float | None = None
        self._lock = asyncio.Lock()
        self.by_id: Mapping[str, Device] = {}
        self.by_ip: Mapping[str, Device] = {}
        self.replace(devices)

    def replace(self, devices: Iterable[Device]) -> None:
        """Use this device list from now on."""
        devices = list(devices)
        self.by_id = {d.id: d for d in devices}
        self.by_ip = {d.ip_address: d for d in devices if d.ip_address}

    @property
    def devices(self) -> list[Device]:
        """Every known device."""
        return list(self.by_id.values())

    async def refresh(self) -> bool:
        """Ask the cloud for the device list unless asked recently; True if the list was reloaded."""
        if self._refresh is None:
            return False
        async with self._lock:
            now = self._clock()
            if self._last_refresh is not None and now - self._last_refresh < self._min_interval:
                return False
            self._last_refresh = now
            try:
                devices = await self._refresh()
            except CloudError as err:
                _LOGGER.warning("cannot refresh the device list: %s", err)
                return False
            self.replace(devices)
            return True

    def foreign_id(self, device_id: str) -> bool:
        """True for a doorbell of the account that belongs to another bridge instance."""
        return self.share is not None and self.share.foreign(device_id)

    def foreign_ip(self, address: str) -> bool:
        """True for the LAN address of another bridge instance's doorbell."""
        return self.share is not None and address in self.share.foreign_ips

    async def find_id(self, device_id: str) -> Device | None:
        """The device with this id, refreshing once if it is not known."""
        device = self.by_id.get(device_id)
        if device is None and await self.refresh():
            device = self.by_id.get(device_id)
        return device

    async def find_ip(self, address: str) -> Device | None:
        """The device at this LAN address, refreshing once if none is known there."""
        device = self.by_ip.get(address)
        if device is None and await self.refresh():
            device = self.by_ip.get(address)
        return device
