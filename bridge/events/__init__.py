"""Doorbell events: the dedup bus, the SQLite event log, and the service that runs the sources."""

from bridge.events.bus import EventBus, EventQueue, Published, Subscription
from bridge.events.log import EventLog, EventPage
from bridge.events.service import EventOptions, EventService
from bridge.skybell.events import Event

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
