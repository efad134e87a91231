"""Holding a doorbell's LED at a colour for a while, then putting the owner's colour back.

Rules set the LED for N seconds (``{ led = "#FF0000", seconds = 30 }``). What a person expects
afterwards is the colour *they* chose, whatever happened in between, so:

- the colour to restore is read once, before the first of overlapping holds on a doorbell;
  a second hold that starts while the first is on does not take the first's red as "previous";
- overlapping holds end together at the latest of their ends (the last restore wins), and then
  the original colour comes back;
- at shutdown every LED still held is restored before the bridge exits (a restart must not
  leave the porch red).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from bridge.skybell.client import SkyBellClient
from bridge.skybell.settings import apply_settings, extract_settings
from bridge.tasks import TaskSet

__all__ = ["LedHolds"]

_LOGGER = logging.getLogger(__name__)
_CLOSE_TIMEOUT = 10.0  # per doorbell: the cloud may be slow, the bridge must still stop


@dataclass
class _Hold:
    original: str  # the colour before the first hold
    until: float  # monotonic time the latest hold ends
    task: asyncio.Task[None] | None = None


class LedHolds:
    """Timed LED colours per doorbell, restored afterwards and at ``close()``."""

    def __init__(
        self, client: SkyBellClient, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._client = client
        self._clock = clock
        self._holds: dict[str, _Hold] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._tasks = TaskSet()
        self._closed = False

    def holding(self, device_id: str) -> str | None:
        """The colour that will be restored on ``device_id``, or None when nothing is held."""
        hold = self._holds.get(device_id)
        return hold.original if hold is not None else None

    async def hold(self, device_id: str, colour: str, seconds: float) -> str:
        """Show ``colour`` for ``seconds``; returns the colour that will come back after."""
        if self._closed:
            raise RuntimeError("the bridge is stopping")
        async with self._lock(device_id):
            hold = self._holds.get(device_id)
            if hold is None:
                current = extract_settings(await self._client.device(device_id)).get("led_color")
                original = current if isinstance(current, str) else None
                if original is None:
                    raise ValueError("the doorbell reports no LED colour to restore afterwards")
                hold = _Hold(original, 0.0)
            await apply_settings(self._client, device_id, {"led_color": colour})
            self._holds[device_id] = hold
            hold.until = max(hold.until, self._clock() + seconds)
            if hold.task is None:
                hold.task = self._tasks.spawn(self._restore_later(device_id), f"led {device_id}")
            return hold.original

    async def _restore_later(self, device_id: str) -> None:
        while True:
            hold = self._holds.get(device_id)
            if hold is None:
                return
            left = hold.until - self._clock()
            if left > 0:
                await asyncio.sleep(left)
                continue
            async with self._lock(device_id):
                # A hold that started while we waited for the lock moved the end: wait more.
                if hold.until > self._clock():
                    continue
                await self._restore_locked(device_id)
                return

    async def _restore(self, device_id: str) -> None:
        async with self._lock(device_id):
            await self._restore_locked(device_id)

    async def _restore_locked(self, device_id: str) -> None:
        hold = self._holds.pop(device_id, None)
        if hold is None:
            return
        try:
            await apply_settings(self._client, device_id, {"led_color": hold.original})
            _LOGGER.info("LED of %s back to %s", device_id, hold.original)
        except Exception as err:  # the cloud or the doorbell away: say so, once
            _LOGGER.warning(
                "could not put the LED of %s back to %s: %s", device_id, hold.original, err
            )

    def _lock(self, device_id: str) -> asyncio.Lock:
        return self._locks.setdefault(device_id, asyncio.Lock())

    async def close(self) -> None:
        """Restore every LED still held (each within a time limit); safe to call twice."""
        self._closed = True
        await self._tasks.cancel_all()
        for device_id in list(self._holds):
            try:
                async with asyncio.timeout(_CLOSE_TIMEOUT):
                    await self._restore(device_id)
            except TimeoutError:
                _LOGGER.warning(
                    "the LED of %s was not restored: the cloud did not answer", device_id
                )
