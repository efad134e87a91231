"""Doorbell events: the dedup bus, the SQLite event log, and the service that runs the sources.

Exports are imported on first use (``bridge.lazy``), so ``bridge.events.options`` loads alone.
"""

from typing import TYPE_CHECKING

from bridge.lazy import lazy_exports

if TYPE_CHECKING:
    from bridge.events.bus import EventBus, EventQueue, Published, Subscription
    from bridge.events.log import EventLog, EventPage
    from bridge.events.options import EventOptions
    from bridge.events.service import EventService
    from bridge.skybell.payloads import Event

__all__ = [
    "Event",
    "EventBus",
    "EventLog",
    "EventOptions",
    "EventPage",
    "EventQueue",
    "EventService",
    "Published",
    "Subscription",
]

__getattr__ = lazy_exports(
    __name__,
    {
        "bridge.events.bus": ("EventBus", "EventQueue", "Published", "Subscription"),
        "bridge.events.log": ("EventLog", "EventPage"),
        "bridge.events.options": ("EventOptions",),
        "bridge.events.service": ("EventService",),
        "bridge.skybell.payloads": ("Event",),
    },
)
