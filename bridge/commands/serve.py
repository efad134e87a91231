"""``skybell-bridge serve``: run the bridge until SIGTERM or Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import secrets
from typing import TYPE_CHECKING, Any

from bridge.cloud import open_cloud
from bridge.commands.common import on_simulator, until_stopped
from bridge.config import Settings
from bridge.preflight import check_exposure, check_storage
from bridge.redact import Secret

if TYPE_CHECKING:
    from bridge.service import Bridge
    from bridge.sim.world import SimWorld

__all__ = ["add_parsers"]

# "bridge", not __name__: the warning below reads as the bridge's own, as it always has.
_LOGGER = logging.getLogger("bridge")


async def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    """Run the bridge until interrupted."""
    from bridge.heap import tune_heap
    from bridge.limits import raise_nofile_limit
    from bridge.service import Bridge

    # Before the first worker thread: a thread that has its own malloc arena keeps it.
    tune_heap()
    # Every client connection, UDP port and cloud socket is a descriptor: take all we may.
    raise_nofile_limit()
    # Before the cloud is contacted: a refusal here is about this machine, not the account.
    exposed = check_exposure(settings.server)
    await asyncio.to_thread(check_storage, settings)
    async with open_cloud(settings) as cloud:
        if cloud.sim is not None:
            settings = on_simulator(settings)
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
            await until_stopped()
            print("skybell-bridge: stopping", flush=True)
        finally:
            await bridge.close()
    return 0


async def _wire_simulator(sim: SimWorld, bridge: Bridge, settings: Settings) -> None:
    """Point the simulator's webhooks and UDP broadcasts at this bridge."""
    from bridge.skybell.triggers import add_webhook_triggers, webhook_url

    ev = settings.events
    assert ev.webhook_secret is not None
    await add_webhook_triggers(
        bridge.client,
        await bridge.client.devices(),
        webhook_url(bridge.http_url),
        secret=ev.webhook_secret,
        header_name=ev.webhook_header,
    )
    if ev.udp_enabled:
        sim.presser.udp_target = ("127.0.0.1", ev.udp_port)


def add_parsers(sub: Any) -> None:
    """Add ``serve``."""
    p = sub.add_parser("serve", help="run the bridge")
    p.set_defaults(func=cmd_serve)
