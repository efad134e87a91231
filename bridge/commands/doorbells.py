"""``skybell-bridge devices`` and ``skybell-bridge snapshot``: the account's doorbells."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from bridge.cloud import open_cloud
from bridge.commands.common import print_table
from bridge.config import Settings
from bridge.skybell import find_device

__all__ = ["add_parsers"]


async def cmd_devices(settings: Settings, args: argparse.Namespace) -> int:
    """Print a table of the account's doorbells."""
    async with open_cloud(settings) as cloud:
        devices = await cloud.client.devices()
    rows = [("NAME", "STREAM", "ID", "MODEL", "FIRMWARE", "ONLINE", "IP")]
    rows += [
        (
            d.name,
            d.slug,
            d.id,
            d.model,
            d.firmware,
            "yes" if d.online else "no",
            d.ip_address or "-",
        )
        for d in devices
    ]
    print_table(rows)
    return 0


async def cmd_snapshot(settings: Settings, args: argparse.Namespace) -> int:
    """Save a still picture from one doorbell."""
    async with open_cloud(settings) as cloud:
        device = find_device(await cloud.client.devices(), args.device)
        snap = await cloud.client.snapshot(device.id)
    out = Path(args.output)
    await asyncio.to_thread(out.write_bytes, snap.jpeg)
    print(f"saved {len(snap.jpeg)} bytes from {device.name} to {out}")
    return 0


def add_parsers(sub: Any) -> None:
    """Add ``devices`` and ``snapshot``."""
    p = sub.add_parser("devices", help="list the doorbells on the account")
    p.set_defaults(func=cmd_devices)

    p = sub.add_parser("snapshot", help="save a JPEG snapshot from a doorbell")
    p.add_argument("device", metavar="DEVICE", help="device name, stream name or id")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="where to write the JPEG")
    p.set_defaults(func=cmd_snapshot)
