"""``skybell-bridge switchbot webhook add|list|remove``: SwitchBot's webhook pointed at the bridge.

SwitchBot posts its events to one URL per account. ``add --url https://PUBLIC`` registers
``https://PUBLIC/api/switchbot/webhook/TOKEN``, where TOKEN is ``switchbot.webhook_token``:
SwitchBot signs nothing, so that random path segment is the credential. With no token
configured, ``add`` makes one, registers it, and prints the line to put in the config (the
bridge cannot write a config file it may only read, nor guess where it is): until the bridge
runs with it, SwitchBot's calls get 404. A URL of ours registered earlier is replaced, not kept
beside the new one. Tokens are shown shortened everywhere: they are secrets.
"""

from __future__ import annotations

import argparse
import secrets
from typing import Any
from urllib.parse import urlsplit

from bridge.automation.switchbot import SwitchBotClient
from bridge.automation.switchbot_events import WEBHOOK_PREFIX, webhook_path
from bridge.cloud import open_cloud
from bridge.commands.common import print_table
from bridge.config import Settings
from bridge.errors import ConfigError
from bridge.redact import Secret

__all__ = ["add_webhook_parsers"]

_NOT_CONFIGURED = "set switchbot.token and switchbot.secret (the SwitchBot app, Developer Options)"


def _shown(url: str) -> str:
    """A webhook URL with our token shortened (it is the receiver's only credential)."""
    head, sep, token = url.partition(WEBHOOK_PREFIX)
    return f"{head}{sep}{token[:4]}…" if sep and token else url


def _ours(url: str, base: str | None = None) -> bool:
    if WEBHOOK_PREFIX not in urlsplit(url).path:
        return False
    return base is None or url.startswith(base.rstrip("/") + WEBHOOK_PREFIX)


def _base(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
        raise ConfigError(
            "--url", "expected the bridge's public https:// address, e.g. https://home.example"
        )
    return url.rstrip("/")


def _client(cloud: Any) -> SwitchBotClient:
    if cloud.switchbot is None:
        raise ConfigError("switchbot.token", _NOT_CONFIGURED)
    client: SwitchBotClient = cloud.switchbot
    return client


async def cmd_webhook_add(settings: Settings, args: argparse.Namespace) -> int:
    """Register the bridge's receiver with SwitchBot (replacing an earlier one of ours)."""
    base = _base(args.url)
    token = settings.switchbot.webhook_token
    made = token is None
    if token is None:
        token = Secret(secrets.token_urlsafe(32))
    url = base + webhook_path(token)
    async with open_cloud(settings) as cloud:
        client = _client(cloud)
        for old in await client.webhook_urls():
            if _ours(old) and old != url:
                await client.delete_webhook(old)
                print(f"removed {_shown(old)}")
        if url not in await client.webhook_urls():
            await client.setup_webhook(url)
    print(f"SwitchBot now posts its events to {_shown(url)}")
    if made:
        print("No switchbot.webhook_token was configured, so one was made. Put it in the config")
        print("and restart the bridge (until then SwitchBot's calls get 404):")
        print("  [switchbot]")
        print(f'  webhook_token = "{token.reveal()}"')
        print(f"  (or SKYBELL_BRIDGE_SWITCHBOT_WEBHOOK_TOKEN={token.reveal()})")
    return 0


async def cmd_webhook_list(settings: Settings, args: argparse.Namespace) -> int:
    """Print the webhooks registered on the SwitchBot account."""
    async with open_cloud(settings) as cloud:
        client = _client(cloud)
        urls = await client.webhook_urls()
        hooks = await client.webhook_details(urls) if urls else []
    rows = [("URL", "ENABLED", "DEVICES", "BRIDGE")]
    rows += [
        (_shown(h.url), "yes" if h.enabled else "no", h.device_list, "yes" if _ours(h.url) else "-")
        for h in hooks
    ]
    print_table(rows)
    return 0


async def cmd_webhook_remove(settings: Settings, args: argparse.Namespace) -> int:
    """Remove the bridge's webhooks (those under ``--url`` only, when given)."""
    base = _base(args.url) if args.url else None
    removed = 0
    async with open_cloud(settings) as cloud:
        client = _client(cloud)
        for url in await client.webhook_urls():
            if _ours(url, base):
                await client.delete_webhook(url)
                print(f"removed {_shown(url)}")
                removed += 1
    if not removed:
        print("no webhook of this bridge is registered with SwitchBot")
    return 0


def add_webhook_parsers(ssub: Any) -> None:
    """Add ``switchbot webhook add|list|remove`` under the ``switchbot`` command."""
    p = ssub.add_parser("webhook", help="SwitchBot events to the bridge (rules' switchbot.*)")
    wsub = p.add_subparsers(dest="webhook_command", required=True, metavar="ACTION")
    a = wsub.add_parser("add", help="register https://PUBLIC/api/switchbot/webhook/TOKEN")
    a.add_argument(
        "--url", required=True, help="the bridge's public address, e.g. https://home.example"
    )
    a.set_defaults(func=cmd_webhook_add)
    ls = wsub.add_parser("list", help="the webhooks registered on the account")
    ls.set_defaults(func=cmd_webhook_list)
    r = wsub.add_parser("remove", help="remove the bridge's webhook")
    r.add_argument("--url", default=None, help="only the one under this public address")
    r.set_defaults(func=cmd_webhook_remove)
