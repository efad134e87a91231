"""``skybell-bridge triggers add|list|remove``: the bridge's webhook registered with SkyBell."""

from __future__ import annotations

import argparse
from typing import Any

from bridge.cloud import open_cloud
from bridge.commands.common import choose_devices, print_table
from bridge.config import Settings
from bridge.errors import ConfigError
from bridge.skybell.triggers import (
    DEFAULT_EVENTS,
    TRIGGER_EVENTS,
    add_webhook_triggers,
    list_triggers,
    remove_triggers,
    webhook_url,
)

__all__ = ["add_parsers"]


async def cmd_add(settings: Settings, args: argparse.Namespace) -> int:
    """Register the bridge's webhook with SkyBell for the chosen events and devices."""
    ev = settings.events
    if ev.webhook_secret is None:
        raise ConfigError(
            "events.webhook_secret", "set a secret first; SkyBell sends it with every call"
        )
    events = [e.strip() for e in args.events.split(",") if e.strip()]
    async with open_cloud(settings) as cloud:
        devices = choose_devices(await cloud.client.devices(), args.device)
        made = await add_webhook_triggers(
            cloud.client,
            devices,
            webhook_url(args.url),
            secret=ev.webhook_secret,
            header_name=ev.webhook_header,
            events=events,
            method=args.method,
        )
    for trigger in made:
        print(f"added {trigger.id} on {trigger.device_id}: {', '.join(trigger.events)}")
    return 0


async def cmd_list(settings: Settings, args: argparse.Namespace) -> int:
    """Print every trigger of the chosen devices."""
    async with open_cloud(settings) as cloud:
        devices = choose_devices(await cloud.client.devices(), args.device)
        found = await list_triggers(cloud.client, devices)
    rows = [("DEVICE", "ID", "TYPE", "EVENTS", "URL")]
    rows += [(d.slug, t.id, t.type, ",".join(t.events), t.url or "-") for d, t in found]
    print_table(rows)
    return 0


async def cmd_remove(settings: Settings, args: argparse.Namespace) -> int:
    """Delete triggers by id, by URL, or every webhook trigger."""
    async with open_cloud(settings) as cloud:
        devices = await cloud.client.devices()
        try:
            gone = await remove_triggers(
                cloud.client,
                devices,
                trigger_ids=args.ids,
                url=args.url,
                all_webhooks=args.all_webhooks,
            )
        except ValueError as err:
            raise ConfigError("triggers remove", str(err)) from None
    print(f"removed {len(gone)} trigger(s)")
    return 0


def add_parsers(sub: Any) -> None:
    """Add ``triggers`` and its subcommands."""
    p = sub.add_parser("triggers", help="register the bridge's webhook with SkyBell")
    tsub = p.add_subparsers(dest="triggers_command", required=True, metavar="ACTION")
    a = tsub.add_parser("add", help="send SkyBell events to this bridge's webhook")
    a.add_argument("--url", required=True, help="the bridge's public base URL, e.g. https://host")
    a.add_argument(
        "--events",
        default=",".join(DEFAULT_EVENTS),
        help=f"comma-separated, from {', '.join(TRIGGER_EVENTS)} (default %(default)s)",
    )
    a.add_argument("--method", choices=("post", "get"), default="post")
    a.add_argument("device", nargs="*", metavar="DEVICE", help="default: every doorbell")
    a.set_defaults(func=cmd_add)
    ls = tsub.add_parser("list", help="list the triggers")
    ls.add_argument("device", nargs="*", metavar="DEVICE")
    ls.set_defaults(func=cmd_list)
    r = tsub.add_parser("remove", help="remove triggers")
    r.add_argument("ids", nargs="*", metavar="ID")
    r.add_argument("--url", help="remove the triggers calling this URL")
    r.add_argument("--all-webhooks", action="store_true", help="remove every webhook trigger")
    r.set_defaults(func=cmd_remove)
