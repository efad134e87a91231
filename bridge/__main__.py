"""The ``skybell-bridge`` command line: parse arguments, build Settings, run one command.

Exit codes: 0 success, 1 a cloud or runtime failure, 2 bad configuration, usage or device name.
Errors print one line; a traceback is a bug.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import secrets
import signal
import sys
import time
import uuid
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bridge.cloud import open_cloud
from bridge.commands import clips, events, switchbot, triggers
from bridge.config import ENV_CONFIG, Settings, load_settings
from bridge.errors import BridgeError, CloudError, ConfigError, UnknownDevice
from bridge.logs import setup_logging
from bridge.preflight import check_exposure, check_storage
from bridge.redact import Secret
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
from bridge.skybell import find_device

if TYPE_CHECKING:
    from bridge.service import Bridge

_LOGGER = logging.getLogger("bridge")

Command = Callable[[Settings, argparse.Namespace], Coroutine[Any, Any, int]]


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
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
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


async def cmd_live(settings: Settings, args: argparse.Namespace) -> int:
    """Record a live session to MP4 by remuxing, and report how it went."""
    from bridge.media.hub import Hub
    from bridge.media.live import LiveSession, open_live_session
    from bridge.media.mp4 import Mp4Writer

    async with open_cloud(settings) as cloud:
        device = find_device(await cloud.client.devices(), args.device)
        sessions: list[LiveSession] = []

        async def connect() -> LiveSession:
            session = await open_live_session(cloud.client, cloud.session, device.id)
            sessions.append(session)
            return session

        hub = Hub(idle_timeout=1.0)
        stream = hub.add(device.id, device.slug, connect)
        writer = Mp4Writer(args.output)
        started = time.monotonic()
        first_key: float | None = None
        try:
            with stream.subscribe("cli") as sub:
                deadline = started + args.duration + args.timeout
                while True:
                    remaining = deadline - time.monotonic()
                    if first_key is not None and time.monotonic() - first_key >= args.duration:
                        break
                    if remaining <= 0:
                        raise BridgeError(
                            f"no live video from {device.name} within {args.timeout:g} s"
                        )
                    try:
                        packet = await asyncio.wait_for(sub.get(), remaining)
                    except TimeoutError:
                        continue
                    if first_key is None and packet.kind == "video":
                        first_key = time.monotonic()
                    # Muxing one packet is tens of microseconds: fine on the loop.
                    writer.write(packet)
        finally:
            writer.close()
            await hub.close()
    assert first_key is not None
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


async def cmd_sim(settings: Settings, args: argparse.Namespace) -> int:
    """Run the simulated SkyBell cloud until interrupted (or press a running one's doorbell)."""
    if args.action:
        return await events.cmd_sim_press(settings, args)
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
        await _until_stopped()
    finally:
        await sim.close()
    return 0


async def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    """Run the bridge until interrupted."""
    from bridge.limits import raise_nofile_limit
    from bridge.service import Bridge

    # Every client connection, UDP port and cloud socket is a descriptor: take all we may.
    raise_nofile_limit()
    # Before the cloud is contacted: a refusal here is about this machine, not the account.
    exposed = check_exposure(settings.server)
    await asyncio.to_thread(check_storage, settings)
    async with open_cloud(settings) as cloud:
        if cloud.sim is not None and settings.events.webhook_secret is None:
            # The simulated cloud calls our webhook like the real one would: give it a secret
            # for this run, so the whole event path works with no configuration.
            events = dataclasses.replace(
                settings.events, webhook_secret=Secret(secrets.token_urlsafe(24))
            )
            settings = dataclasses.replace(settings, events=events)
        bridge = Bridge(settings, cloud.client, cloud.session, cloud.switchbot)
        try:
            await bridge.start()
            if cloud.sim is not None:
                await _wire_simulator(cloud.sim, bridge, settings)
            names = ", ".join(bridge.devices) or "none"
            print(f"skybell-bridge: {len(bridge.devices)} doorbell(s): {names}", flush=True)
            # The addresses really bound (0.0.0.0 says "every interface"), not a friendly guess.
            web_urls = ", ".join(f"http://{a}/" for a in bridge.http_bound)
            rtsp_urls = ", ".join(f"rtsp://{a}/NAME" for a in bridge.rtsp_bound)
            print(f"  web and API  {web_urls}", flush=True)
            print(f"  RTSP         {rtsp_urls}", flush=True)
            if cloud.sim is not None:
                print(
                    f'  press a simulated doorbell: skybell-bridge sim press "Front Door" '
                    f"--url {cloud.sim.base_url}",
                    flush=True,
                )
            if exposed:
                _LOGGER.warning(
                    "no server.password, yet %s listen beyond this machine "
                    "(server.allow_lan_without_password): anyone on the network can watch "
                    "the doorbells and delete clips",
                    " and ".join(exposed),
                )
            elif not settings.server.password:
                print("no server.password set: listening on this machine only", flush=True)
            await _until_stopped()
            print("skybell-bridge: stopping", flush=True)
        finally:
            await bridge.close()
    return 0


async def _until_stopped() -> None:
    """Wait for SIGTERM (docker stop, systemd) or SIGINT (Ctrl-C).

    Python's default SIGTERM ends the process on the spot: clips would stop mid-fragment and
    the cloud live calls would stay open until SkyBell times them out. Handled here, both
    signals take the same orderly way out as Ctrl-C.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


async def _wire_simulator(sim: SimWorld, bridge: Bridge, settings: Settings) -> None:
    """Point the simulator's webhooks and UDP broadcasts at this bridge."""
    from bridge.skybell.triggers import add_webhook_triggers, webhook_url

    ev = settings.events
    assert ev.webhook_secret is not None
    assert bridge.parts is not None
    await add_webhook_triggers(
        bridge.client,
        bridge.parts.devices,
        webhook_url(bridge.http_url),
        secret=ev.webhook_secret,
        header_name=ev.webhook_header,
    )
    if ev.udp_enabled:
        sim.presser.udp_target = ("127.0.0.1", ev.udp_port)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="skybell-bridge",
        description="Bridge SkyBell doorbells to RTSP, HLS, MJPEG and WebRTC. With no SkyBell "
        "credentials configured, it runs against a built-in simulator.",
    )
    parser.add_argument("--config", help=f"TOML settings file (default: ${ENV_CONFIG})")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("devices", help="list the doorbells on the account")
    p.set_defaults(func=cmd_devices)

    p = sub.add_parser("snapshot", help="save a JPEG snapshot from a doorbell")
    p.add_argument("device", metavar="DEVICE", help="device name, stream name or id")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="where to write the JPEG")
    p.set_defaults(func=cmd_snapshot)

    p = sub.add_parser("live", help="record a live session to MP4 (no re-encode)")
    p.add_argument("device", metavar="DEVICE", help="device name, stream name or id")
    p.add_argument("--duration", type=float, default=10.0, help="seconds to record (default 10)")
    p.add_argument("--timeout", type=float, default=20.0, help="seconds to wait for video")
    p.add_argument("-o", "--output", required=True, metavar="FILE.mp4")
    p.set_defaults(func=cmd_live)

    p = sub.add_parser(
        "sim",
        help="run the simulated SkyBell cloud, signaling and doorbells; "
        "'sim press DEVICE [motion]' presses a running simulator's doorbell",
    )
    p.add_argument("action", nargs="*", metavar="press DEVICE", help="press a doorbell")
    p.add_argument("--url", default="http://127.0.0.1:8080", help="the simulator, for press")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--doorbells", type=int, default=2, help="how many simulated doorbells")
    p.add_argument("--quality", type=int, choices=range(4), default=1, help="image_quality 0-3")
    p.add_argument("--fps", type=int, default=15)
    p.add_argument("--bitrate", type=int, default=None, help="bits/s (default: the quality's)")
    p.set_defaults(func=cmd_sim)

    p = sub.add_parser("serve", help="run the bridge")
    p.set_defaults(func=cmd_serve)
    clips.add_parsers(sub)
    events.add_parsers(sub)
    triggers.add_parsers(sub)
    switchbot.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``skybell-bridge`` console script."""
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(args.config)
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        return 2
    setup_logging(settings.log.format, "debug" if args.verbose else settings.log.level)
    func: Command = args.func
    try:
        with contextlib.suppress(KeyboardInterrupt):
            return asyncio.run(func(settings, args))
        return 130
    except UnknownDevice as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        return 2
    except CloudError as err:
        print(f"error: SkyBell cloud: {err}", file=sys.stderr)
        return 1
    except (BridgeError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
