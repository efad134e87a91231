"""``skybell-bridge live``: record one live session to MP4 by remuxing, and report how it went."""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING, Any

from bridge.cloud import open_cloud
from bridge.commands.common import on_simulator
from bridge.config import Settings
from bridge.errors import BridgeError
from bridge.skybell import find_device

if TYPE_CHECKING:
    from bridge.media.live import CloudLiveCall

__all__ = ["add_parsers"]


async def cmd_live(settings: Settings, args: argparse.Namespace) -> int:
    """Record a live session to MP4 by remuxing, and report how it went."""
    # Here, not at the top: aiortc and PyAV take a while to import, and only this command
    # (and serve) need them.
    from bridge.media.aiortc_patch import parse_host_addresses
    from bridge.media.capture import capture
    from bridge.media.hub import Hub
    from bridge.media.live import open_live_call
    from bridge.media.mp4 import Mp4Writer

    async with open_cloud(settings) as cloud:
        if cloud.sim is not None:
            settings = on_simulator(settings)
        hosts = parse_host_addresses(settings.streams.ice_host_addresses)
        device = find_device(await cloud.client.devices(), args.device)
        sessions: list[CloudLiveCall] = []

        async def connect() -> CloudLiveCall:
            session = await open_live_call(
                cloud.client, cloud.session, device.id, ice_host_addresses=hosts
            )
            sessions.append(session)
            return session

        hub = Hub(idle_timeout=1.0)
        stream = hub.add(device.id, device.slug, connect)
        writer = Mp4Writer(args.output)
        started = time.monotonic()
        try:
            with stream.subscribe("cli") as sub:
                # Muxing one packet is tens of microseconds: fine on the loop.
                first_key = await capture(
                    sub, writer.write, duration=args.duration, limit=args.duration + args.timeout
                )
            if first_key is None:
                raise BridgeError(f"no live video from {device.name} within {args.timeout:g} s")
        finally:
            writer.close()
            await hub.close()
    ttff = first_key - (sessions[0].call_at if sessions else started)
    seconds = max(writer.duration, 1e-6)
    print(
        f"saved {args.output}: {writer.frames} frames in {seconds:.1f} s ({writer.frames / seconds:.1f} fps)"
    )
    print(f"time to first frame: {ttff:.3f} s after the live-call response")
    print(f"video: {writer.video_codec} {writer.width}x{writer.height} (copied, not re-encoded)")
    print(f"audio: {writer.audio_codec or 'none'}")
    print(f"reconnects: {stream.reconnects}")
    return 0


def add_parsers(sub: Any) -> None:
    """Add ``live``."""
    p = sub.add_parser("live", help="record a live session to MP4 (no re-encode)")
    p.add_argument("device", metavar="DEVICE", help="device name, stream name or id")
    p.add_argument("--duration", type=float, default=10.0, help="seconds to record (default 10)")
    p.add_argument("--timeout", type=float, default=20.0, help="seconds to wait for video")
    p.add_argument("-o", "--output", required=True, metavar="FILE.mp4")
    p.set_defaults(func=cmd_live)
