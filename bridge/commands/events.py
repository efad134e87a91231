"""``skybell-bridge events tail``: the running bridge's live event feed."""

from __future__ import annotations

import argparse
import json
from typing import Any

import aiohttp

from bridge.commands.common import bridge_auth_headers, bridge_url
from bridge.config import Settings
from bridge.errors import BridgeError

__all__ = ["add_parsers"]


def _describe(data: dict[str, Any]) -> str:
    actions = "; ".join(
        f"{r.get('action')}: {'ok' if r.get('ok') else 'FAILED'} {r.get('detail', '')}".rstrip()
        for r in data.get("results") or []
    )
    line = f"{data.get('time', '?')}  {data.get('device', '?'):<14} {data.get('type', '?'):<12}"
    line += f" via {','.join(data.get('sources') or [data.get('source', '?')])}"
    return line + (f"  [{actions}]" if actions else "")


async def cmd_tail(settings: Settings, args: argparse.Namespace) -> int:
    """Print the running bridge's events as they happen (its server-sent events feed)."""
    url = (args.url or bridge_url(settings)).rstrip("/") + "/api/events/stream"
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        try:
            async with http.get(url, headers=bridge_auth_headers(settings)) as resp:
                if resp.status != 200:
                    raise BridgeError(f"{url} answered HTTP {resp.status}")
                print(f"following {url} (Ctrl-C to stop)", flush=True)
                async for raw in resp.content:
                    line = raw.decode(errors="replace").rstrip("\n")
                    if line.startswith("data:"):
                        try:
                            data = json.loads(line[5:])
                        except ValueError:
                            continue
                        print(json.dumps(data) if args.json else _describe(data), flush=True)
        except aiohttp.ClientConnectionError as err:
            raise BridgeError(f"cannot reach the bridge at {url}: {err}") from None
    return 0


def add_parsers(sub: Any) -> None:
    """Add ``events tail``."""
    p = sub.add_parser("events", help="doorbell events")
    esub = p.add_subparsers(dest="events_command", required=True, metavar="ACTION")
    t = esub.add_parser("tail", help="follow the running bridge's event feed")
    t.add_argument("--url", help="the bridge's base URL (default: from the config)")
    t.add_argument("--json", action="store_true", help="one JSON object per line")
    t.set_defaults(func=cmd_tail)
