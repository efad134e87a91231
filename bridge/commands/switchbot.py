"""``skybell-bridge scenes``, ``switchbot devices`` and ``switchbot webhook ...``."""

from __future__ import annotations

import argparse
from typing import Any

from bridge.cloud import open_cloud
from bridge.commands.common import print_table
from bridge.commands.switchbot_webhook import add_webhook_parsers
from bridge.config import Settings
from bridge.errors import ConfigError

__all__ = ["add_parsers"]

_NOT_CONFIGURED = "set switchbot.token and switchbot.secret (the SwitchBot app, Developer Options)"


async def cmd_scenes(settings: Settings, args: argparse.Namespace) -> int:
    """Print the SwitchBot account's manual scenes."""
    async with open_cloud(settings) as cloud:
        if cloud.switchbot is None:
            raise ConfigError("switchbot.token", _NOT_CONFIGURED)
        scenes = await cloud.switchbot.scenes()
    print_table([("ID", "NAME"), *((s.id, s.name) for s in scenes)])
    return 0


async def cmd_devices(settings: Settings, args: argparse.Namespace) -> int:
    """Print the SwitchBot account's devices and infrared remotes."""
    async with open_cloud(settings) as cloud:
        if cloud.switchbot is None:
            raise ConfigError("switchbot.token", _NOT_CONFIGURED)
        devices = await cloud.switchbot.devices()
    rows = [("ID", "NAME", "TYPE", "HUB", "KIND")]
    rows += [
        (d.id, d.name, d.type, d.hub_id or "-", "infrared" if d.remote else "device")
        for d in devices
    ]
    print_table(rows)
    return 0


def add_parsers(sub: Any) -> None:
    """Add ``scenes`` and ``switchbot devices``."""
    p = sub.add_parser("scenes", help="list SwitchBot scenes")
    p.set_defaults(func=cmd_scenes)
    p = sub.add_parser("switchbot", help="SwitchBot account")
    ssub = p.add_subparsers(dest="switchbot_command", required=True, metavar="ACTION")
    d = ssub.add_parser("devices", help="list SwitchBot devices and remotes")
    d.set_defaults(func=cmd_devices)
    add_webhook_parsers(ssub)
