"""What the rest of the bridge gives MQTT, as one small interface.

The routes module (``bridge.routes.mqtt``) implements it from the app's parts: pictures come
from the snapshot service, settings from ``bridge.skybell.settings``, figures from the clip
store, the S3 uploader and the rule engine. This package depends on the interface alone, so it
imports no protocol package, no aiohttp.web and no config.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, TypedDict

from bridge.media.hub import Stream
from bridge.skybell.models import Device

__all__ = ["Figures", "Parts"]


class Figures(TypedDict):
    """The bridge's own figures; None where the part is not configured."""

    streams_live: int
    clips_stored: int
    switchbot_calls_left: int | None
    s3_queue: int | None


class Parts(Protocol):
    """The bridge's parts, as MQTT uses them."""

    async def snapshot(self, stream: Stream) -> bytes:
        """A JPEG of the stream from the bridge's snapshot path; BridgeError when none."""
        ...

    async def device(self, device_id: str) -> Device:
        """The doorbell's record as the cloud has it now (does not wake the doorbell)."""
        ...

    async def apply_settings(self, device_id: str, partial: Mapping[str, Any]) -> dict[str, Any]:
        """Change settings; returns every user-facing setting as the cloud then confirms."""
        ...

    async def reboot(self, device_id: str) -> None:
        """Ask the doorbell to reboot."""
        ...

    def urls(self, stream: Stream) -> dict[str, str]:
        """Where the stream can be watched: rtsp, hls, webrtc..."""
        ...

    async def figures(self) -> Figures:
        """Streams live, clips stored, SwitchBot calls left, S3 queue."""
        ...

    def rules(self) -> list[tuple[str, bool]]:
        """Every rule's name and whether it is enabled, in configuration order."""
        ...

    def set_rule(self, name: str, enabled: bool) -> bool:
        """Enable or disable a rule; False when there is no such rule."""
        ...
