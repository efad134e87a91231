"""``skybell-bridge sim``: run the simulated SkyBell cloud, KVS signaling and doorbells, press a
running simulator's doorbell (``skybell-bridge sim press DEVICE``), or make its SwitchBot send a
webhook event (``skybell-bridge sim switchbot motion``) to the URL registered with it."""

from __future__ import annotations

import argparse
import uuid
from typing import Any

import aiohttp

from bridge.commands.common import until_stopped
from bridge.config import Settings
from bridge.errors import BridgeError

__all__ = ["add_parsers"]


async def cmd_sim(settings: Settings, args: argparse.Namespace) -> int:
    """Run the simulated SkyBell cloud until interrupted (or press a running one's doorbell)."""
    if args.action and args.action[0] == "switchbot":
        return await cmd_sim_switchbot(settings, args)
    if args.action:
        return await cmd_sim_press(settings, args)
    # The simulator is imported only when it runs: the bridge itself never needs it.
    from bridge.sim.cloud import (
        API_PREFIX,
        DEFAULT_API_KEY,
        DEFAULT_EMAIL,
        DEFAULT_PASSWORD,
        SimCloud,
        SimDevice,
        default_devices,
    )
    from bridge.sim.world import SimWorld

    devices = default_devices()
    for n in range(len(devices), args.doorbells):
        devices.append(
            SimDevice(id=str(uuid.uuid4()), name=f"Doorbell {n + 1}", serial=f"SIM{n:07d}")
        )
    sim = SimWorld(SimCloud(devices=devices[: args.doorbells]))
    for bell in sim.doorbells.values():
        bell.configure(fps=args.fps, bitrate=args.bitrate)
        bell.device.settings["image_quality"] = args.quality
    base = await sim.start(args.host, args.port)
    print(f"simulated SkyBell cloud at {base}{API_PREFIX}", flush=True)
    print(f"  API key: {DEFAULT_API_KEY}", flush=True)
    print(f"  or login: {DEFAULT_EMAIL} / {DEFAULT_PASSWORD}", flush=True)
    print(f"  fault switches: {base}/_sim/faults", flush=True)
    try:
        await until_stopped()
    finally:
        await sim.close()
    return 0


async def cmd_sim_press(settings: Settings, args: argparse.Namespace) -> int:
    """Press a doorbell of a running simulator (``skybell-bridge sim``) over its HTTP API."""
    if len(args.action) < 2 or args.action[0] != "press":
        raise BridgeError("usage: skybell-bridge sim press DEVICE [doorbell|motion]")
    device = args.action[1]
    event = args.action[2] if len(args.action) > 2 else "doorbell"
    url = args.url.rstrip("/") + "/_sim/press"
    params = {"device": device, "event": event}
    async with aiohttp.ClientSession() as http:
        try:
            async with http.post(url, params=params) as resp:
                body = await resp.json(content_type=None)
        except aiohttp.ClientConnectionError as err:
            raise BridgeError(f"no simulator at {args.url}: {err}") from None
    if resp.status != 200:
        raise BridgeError(f"the simulator refused: {body.get('error', resp.status)}")
    print(f"pressed {body.get('device', device)} ({event}), activity {body.get('activity_id')}")
    return 0


async def cmd_sim_switchbot(settings: Settings, args: argparse.Namespace) -> int:
    """Make a running simulator's SwitchBot post an event to its registered webhooks."""
    from bridge.sim.switchbot_events import SIM_EVENTS
    from bridge.sim.world import SWITCHBOT_PREFIX

    if len(args.action) < 2:
        raise BridgeError(
            f"usage: skybell-bridge sim switchbot EVENT [DEVICE]; EVENT: {', '.join(SIM_EVENTS)}"
        )
    body = {"event": args.action[1], "device": args.action[2] if len(args.action) > 2 else None}
    url = args.url.rstrip("/") + SWITCHBOT_PREFIX + "/_sim/event"
    async with aiohttp.ClientSession() as http:
        try:
            async with http.post(url, json=body) as resp:
                answer = await resp.json(content_type=None)
        except aiohttp.ClientConnectionError as err:
            raise BridgeError(f"no simulator at {args.url}: {err}") from None
    if resp.status != 200 or not isinstance(answer, dict):
        why = answer.get("error", resp.status) if isinstance(answer, dict) else resp.status
        raise BridgeError(f"the simulator refused: {why}")
    sent = answer.get("sent") or []
    if not sent:
        print("no webhook is registered with the simulated SwitchBot (switchbot webhook add)")
        return 1
    for item in sent:
        print(f"sent {args.action[1]} to {item.get('url')}: {item.get('status')}")
    return 0 if all(item.get("status") == 200 for item in sent) else 1


def add_parsers(sub: Any) -> None:
    """Add ``sim`` (run it, or ``sim press``)."""
    p = sub.add_parser(
        "sim",
        help="run the simulated SkyBell cloud, signaling and doorbells; "
        "'sim press DEVICE [motion]' presses a running simulator's doorbell; "
        "'sim switchbot EVENT [DEVICE]' makes its SwitchBot send a webhook event",
    )
    p.add_argument(
        "action",
        nargs="*",
        metavar="press DEVICE | switchbot EVENT",
        help="press a doorbell, or send a SwitchBot event (motion, open, close, unlocked, ...)",
    )
    p.add_argument(
        "--url", default="http://127.0.0.1:8080", help="the simulator, for press and switchbot"
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--doorbells", type=int, default=2, help="how many simulated doorbells")
    p.add_argument("--quality", type=int, choices=range(4), default=1, help="image_quality 0-3")
    p.add_argument("--fps", type=int, default=15)
    p.add_argument("--bitrate", type=int, default=None, help="bits/s (default: the quality's)")
    p.set_defaults(func=cmd_sim)
