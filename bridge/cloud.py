"""Opening the SkyBell cloud: the real one when credentials are configured, else the simulator.

A new user with no configuration sees the bridge work at once against the built-in simulator;
one line on stderr says so, so nobody mistakes simulated doorbells for real ones.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp

from bridge.config import Settings
from bridge.redact import Secret
from bridge.sim.cloud import API_PREFIX, DEFAULT_API_KEY
from bridge.sim.world import SimWorld
from bridge.skybell import SkyBellClient

__all__ = ["Cloud", "open_cloud"]

_LOGGER = logging.getLogger(__name__)


@dataclass
class Cloud:
    """A ready client, and the simulator behind it when there is one."""

    client: SkyBellClient
    session: aiohttp.ClientSession
    sim: SimWorld | None = None


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@asynccontextmanager
async def open_cloud(
    settings: Settings, notice: Callable[[str], None] = _stderr
) -> AsyncIterator[Cloud]:
    """Yield a client for the configured cloud, or for an in-process simulator."""
    sb = settings.skybell
    async with aiohttp.ClientSession() as session:
        if settings.has_credentials:
            client = SkyBellClient(
                session,
                base_url=sb.api_url,
                api_key=sb.api_key,
                email=sb.email,
                password=sb.password,
                app_version=sb.app_version,
                timeout=sb.timeout,
            )
            yield Cloud(client=client, session=session)
            return
        sim = SimWorld()
        # The simulator's own chatter is not news for someone using the bridge.
        sim_log = logging.getLogger("bridge.sim")
        if sim_log.getEffectiveLevel() > logging.DEBUG:
            sim_log.setLevel(logging.WARNING)
        url = await sim.start()
        notice(
            f"No SkyBell credentials configured: using the built-in simulator at {url}{API_PREFIX}"
        )
        try:
            client = SkyBellClient(
                session, base_url=url + API_PREFIX, api_key=Secret(DEFAULT_API_KEY)
            )
            yield Cloud(client=client, session=session, sim=sim)
        finally:
            await sim.close()
