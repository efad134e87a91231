"""The SkyBell cloud: client, auth, typed models, and the table of API paths."""

from bridge.skybell.client import SkyBellClient
from bridge.skybell.models import (
    Activity,
    Device,
    IceServer,
    LiveCall,
    Snapshot,
    Trigger,
    User,
    find_device,
    slugify,
)

__all__ = [
    "Activity",
    "Device",
    "IceServer",
    "LiveCall",
    "SkyBellClient",
    "Snapshot",
    "Trigger",
    "User",
    "find_device",
    "slugify",
]
