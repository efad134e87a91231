"""``skybell-bridge talk DEVICE --file msg.wav``: play a file to the visitor via the running bridge.

The running bridge holds the doorbell's live call, so this only POSTs the file to its
``/api/talk`` (URL and password from the settings, as ``events tail`` does) and waits for the
answer, which comes once the audio has been played. ``--file -`` reads the audio from stdin.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

from bridge.commands.common import bridge_auth_headers, bridge_url
from bridge.config import Settings
from bridge.errors import BridgeError, UnknownDevice

__all__ = ["add_parsers"]

# The bridge refuses more anyway (talk.max_seconds); this keeps a runaway pipe out of memory.
_MAX_BYTES = 256 << 20


def _read_audio(name: str) -> bytes:
    if name == "-":
        data = sys.stdin.buffer.read(_MAX_BYTES + 1)
    else:
        try:
            with Path(name).open("rb") as fh:
                data = fh.read(_MAX_BYTES + 1)
        except OSError as err:
            raise BridgeError(f"cannot read {name}: {err.strerror or err}") from None
    if len(data) > _MAX_BYTES:
        raise BridgeError(f"{name}: more than {_MAX_BYTES >> 20} MiB of audio")
    if not data:
        raise BridgeError(f"{name}: no audio (the file is empty)")
    return data


def _message(text: str) -> tuple[str, dict[str, Any]]:
    try:
        body = json.loads(text)
    except ValueError:
        return text.strip()[:200], {}
    if isinstance(body, dict):
        return str(body.get("error", text.strip()[:200])), body
    return text.strip()[:200], {}


async def cmd_talk(settings: Settings, args: argparse.Namespace) -> int:
    """Play an audio file to the visitor at DEVICE through the running bridge."""
    data = await asyncio.to_thread(_read_audio, args.file)
    base = (args.url or bridge_url(settings)).rstrip("/")
    url = f"{base}/api/talk?src={quote(args.device, safe='')}"
    # No total timeout: the answer comes when the message has been played, however long it is.
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=None)
    headers = {"Content-Type": "application/octet-stream", **bridge_auth_headers(settings)}
    async with aiohttp.ClientSession(timeout=timeout) as http:
        try:
            async with http.post(url, data=io.BytesIO(data), headers=headers) as resp:
                text = await resp.text()
                if resp.status == 404:
                    message, body = _message(text)
                    known = body.get("streams")
                    if isinstance(known, list):
                        raise UnknownDevice(args.device, [str(k) for k in known])
                    raise BridgeError(f"{url}: {message}")
                if resp.status != 200:
                    message, _ = _message(text)
                    raise BridgeError(f"talk refused (HTTP {resp.status}): {message}")
        except aiohttp.ClientConnectionError as err:
            raise BridgeError(f"cannot reach the bridge at {base}: {err}") from None
    _, body = _message(text)
    played = body.get("played_seconds", 0)
    print(f"played {played:.1f} s to {body.get('stream', args.device)} ({body.get('codec', '?')})")
    return 0


def add_parsers(sub: Any) -> None:
    """Add ``talk``."""
    p = sub.add_parser(
        "talk",
        help="play an audio file to the visitor (through the running bridge)",
        description="Play an audio file (WAV, Ogg/Opus, MP3, M4A...) through the doorbell's "
        "speaker, waking its live call if needed. Needs the bridge running (`serve`).",
    )
    p.add_argument("device", metavar="DEVICE", help="stream name or device id (e.g. front-door)")
    p.add_argument("--file", "-f", required=True, help="the audio file; - reads stdin")
    p.add_argument("--url", help="the bridge's base URL (default: from the config)")
    p.set_defaults(func=cmd_talk)
