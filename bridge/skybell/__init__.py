"""The SkyBell cloud: client, auth, typed models, and the table of API paths.

Exports are imported on first use (``bridge.lazy``), so the models load without the client.
"""

from typing import TYPE_CHECKING

from bridge.lazy import lazy_exports

if TYPE_CHECKING:
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

__getattr__ = lazy_exports(
    __name__,
    {
        "bridge.skybell.client": ("SkyBellClient",),
        "bridge.skybell.models": (
            "Activity",
            "Device",
            "IceServer",
            "LiveCall",
            "Snapshot",
            "Trigger",
            "User",
            "find_device",
            "slugify",
        ),
    },
)
