"""Opening the clouds: SkyBell (the real one when credentials are configured, else the
simulator) and SwitchBot (configured, else the simulator's when SkyBell is simulated too).

A new user with no configuration sees the bridge work at once against the built-in simulator;
one line on stderr says so, so nobody mistakes simulated doorbells for real ones.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import aiohttp

from bridge.automation import CallBudget, SwitchBotClient
from bridge.config import Settings
from bridge.redact import Secret
from bridge.skybell import SkyBellClient
from bridge.skybell.share import DeviceShare

if TYPE_CHECKING:
    # Imported where the simulator starts: with credentials configured it is never loaded.
    from bridge.sim.world import SimWorld

__all__ = ["Cloud", "open_cloud"]

_LOGGER = logging.getLogger(__name__)


@dataclass
class Cloud:
    """Ready clients, and the simulator behind them when there is one."""

    client: SkyBellClient
    session: aiohttp.ClientSession
    sim: SimWorld | None = None
    switchbot: SwitchBotClient | None = None


def _switchbot(
    settings: Settings, http: aiohttp.ClientSession, sim: SimWorld | None
) -> SwitchBotClient | None:
    sw = settings.switchbot
    budget_path = sw.budget_path or settings.storage.clips_dir / "switchbot-budget.json"
    budget = CallBudget(sw.daily_limit, path=budget_path)
    if sw.token is not None and sw.secret is not None:
        return SwitchBotClient(
            http, token=sw.token, secret=sw.secret, base_url=sw.api_url, budget=budget
        )
    if sim is None:
        return None
    from bridge.sim.switchbot import DEFAULT_SECRET as SWITCHBOT_SECRET
    from bridge.sim.switchbot import DEFAULT_TOKEN as SWITCHBOT_TOKEN
    from bridge.sim.world import SWITCHBOT_PREFIX

    # Simulated doorbells drive a simulated SwitchBot, so rules can be tried end to end.
    return SwitchBotClient(
        http,
        token=Secret(SWITCHBOT_TOKEN),
        secret=Secret(SWITCHBOT_SECRET),
        base_url=sim.base_url + SWITCHBOT_PREFIX,
        budget=CallBudget(sw.daily_limit),
    )


def _share(settings: Settings) -> DeviceShare | None:
    """``skybell.devices``: the commands (``triggers add``) see only this bridge's doorbells."""
    wanted = settings.skybell.devices
    return DeviceShare(wanted) if wanted else None


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
            client.share = _share(settings)
            yield Cloud(client, session, None, _switchbot(settings, session, None))
            return
        from bridge.sim.cloud import API_PREFIX, DEFAULT_API_KEY
        from bridge.sim.world import SimWorld

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
            client.share = _share(settings)
            yield Cloud(client, session, sim, _switchbot(settings, session, sim))
        finally:
            await sim.close()
