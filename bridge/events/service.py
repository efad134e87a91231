"""Everything behind the event feed, owned in one place: devices, bus, log, UDP and polling.

The webhook receiver (``bridge.routes.events``) publishes into ``service.bus`` too; rules subscribe
to it. ``start()`` and ``close()`` bring the parts up and down in order: the log before anything
can publish, and on the way down the sources first, then the bus (which lets the log write what
is queued), then the log.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import TypedDict

from bridge.events.bus import BusStats, EventBus, Published, Subscription
from bridge.events.log import EventLog
from bridge.events.options import EventOptions
from bridge.skybell.client import SkyBellClient
from bridge.skybell.directory import DeviceDirectory
from bridge.skybell.models import Device
from bridge.skybell.payloads import Event
from bridge.skybell.poller import ActivityPoller
from bridge.skybell.udp import TOKENS, UdpCounts, UdpListener

__all__ = ["EventService", "EventStats", "PollStats", "UdpStats"]

_LOGGER = logging.getLogger(__name__)


class UdpStats(UdpCounts):
    """The UDP listener: its port and what it received."""

    port: int


class PollStats(TypedDict):
    """The activity poller."""

    available: bool  # the last poll worked
    failures: int  # polls failed in a row
    published: int


class _EventSources(TypedDict, total=False):
    # total=False, not NotRequired: Python 3.11 cannot see NotRequired at run time under
    # postponed annotations (tests/test_api_shapes.py reads __optional_keys__).
    udp: UdpStats  # only with events.udp_enabled
    poll: PollStats  # only while the cloud is polled


class EventStats(_EventSources):
    """The body of ``GET /api/events/stats``: the bus and the sources that run."""

    bus: BusStats


def _udp_tokens(options: EventOptions) -> dict[str, str]:
    """The UDP token table with any configured overrides."""
    tokens = dict(TOKENS)
    for kind, token in (
        ("doorbell", options.udp_button_token),
        ("motion", options.udp_motion_token),
    ):
        if token:
            tokens = {t: k for t, k in tokens.items() if k != kind}
            tokens[token] = kind
    return tokens


class EventService:
    """Owns the device directory, the bus, the log and the UDP and polling sources."""

    def __init__(
        self,
        client: SkyBellClient | None,
        devices: Iterable[Device],
        options: EventOptions | None = None,
        *,
        log_path: Path | None = None,
    ) -> None:
        self.options = options = options or EventOptions()
        self.directory = DeviceDirectory(
            devices,
            refresh=client.devices if client is not None else None,
            share=client.share if client is not None else None,
        )
        self.bus = EventBus(window=options.dedup_window)
        self.log: EventLog | None = None
        if log_path is not None:
            self.log = EventLog(
                log_path,
                max_age=options.log_max_age_days * 86400,
                max_rows=options.log_max_rows,
            )
        self.udp: UdpListener | None = None
        if options.udp_enabled:
            self.udp = UdpListener(
                self.directory,
                self.publish,
                host=options.udp_host,
                port=options.udp_port,
                tokens=_udp_tokens(options),
            )
        self.poller: ActivityPoller | None = None
        if options.poll_enabled and client is not None:
            self.poller = ActivityPoller(
                client,
                self.directory,
                self.publish,
                interval=options.poll_interval,
                max_backoff=options.poll_max_backoff,
                backfill=options.poll_backfill,
            )
        self._log_sub: Subscription | None = None
        self._started = False
        self._closed = False

    def publish(self, event: Event) -> Published:
        """Hand an event to the bus (dedup, log, subscribers)."""
        return self.bus.publish(event)

    def stats(self) -> EventStats:
        """Counters of the bus and the sources, for ``/api/events/stats``."""
        out: EventStats = {"bus": self.bus.stats()}
        if self.udp is not None:
            out["udp"] = {"port": self.udp.port, **self.udp.counts}
        if self.poller is not None:
            out["poll"] = {
                "available": self.poller.available,
                "failures": self.poller.failures,
                "published": self.poller.published,
            }
        return out

    async def start(self) -> None:
        """Open the log, then start listening and polling; safe to call twice."""
        if self._started:
            return
        self._started = True
        if self.log is not None:
            await self.log.open()
            self._log_sub = self.bus.subscribe(
                "event-log", self.log.add, on_update=self.log.update, max_queue=4096
            )
        if self.udp is not None:
            await self.udp.start()
        if self.poller is not None:
            self.poller.start()

    async def close(self) -> None:
        """Stop the sources, drain the bus into the log, close the log; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self.poller is not None:
            await self.poller.close()
        if self.udp is not None:
            await self.udp.close()
        await self.bus.close()
        if self.log is not None:
            await self.log.close()
