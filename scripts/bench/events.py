"""Events benchmark: press a simulated doorbell, time until the SwitchBot scene request arrives.

Everything runs in this one process on 127.0.0.1 (the simulated SkyBell cloud and doorbells, the
bridge's event service and webhook route, the rules engine, the simulated SwitchBot), so the
press time (``PressRecord.monotonic``) and the scene's arrival (``Executed.received_at``) share
one monotonic clock: the figure is the bridge's own work plus loopback HTTP/UDP.

Two paths, each measured alone:
- webhook: the cloud's webhook call → /api/skybell/webhook → bus → rule → scene (UDP, polling off);
- UDP: the doorbell's broadcast → UDP listener → bus → rule → scene (no webhook trigger, polling off).

Prints p50/p95/max of press → event on the bus, event → scene request, and press → scene.
Targets: UDP ≤ 50 ms p95, webhook ≤ 100 ms p95.

Run: .venv/bin/python scripts/bench/events.py [--presses 100] [--gap 0.5]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bridge.automation import SwitchBotClient  # noqa: E402
from bridge.automation.engine import RuleEngine  # noqa: E402
from bridge.automation.rules import parse_rules  # noqa: E402
from bridge.events import EventOptions  # noqa: E402
from bridge.redact import Secret  # noqa: E402
from bridge.routes import events as event_routes  # noqa: E402
from bridge.sim.cloud import API_PREFIX, DEFAULT_API_KEY  # noqa: E402
from bridge.sim.switchbot import DEFAULT_SECRET, DEFAULT_TOKEN, SimSwitchBot  # noqa: E402
from bridge.sim.world import SimWorld  # noqa: E402
from bridge.skybell import SkyBellClient  # noqa: E402
from bridge.skybell.triggers import WEBHOOK_PATH, add_webhook_triggers  # noqa: E402

HOOK_SECRET = "bench-hook-secret-41d9"  # noqa: S105 - a throwaway for the local sim
WARMUP = 3  # presses not counted: the first ones open the keep-alive connections
RULES = [
    {
        "name": "porch light",
        "on": ["doorbell"],
        "devices": ["front-door"],
        "do": [{"scene": "Porch light on"}],
    }
]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


async def run_path(path: str, presses: int, gap: float, folder: Path) -> dict[str, list[float]]:
    """Press ``presses`` times through one path; latencies in milliseconds."""
    world = SimWorld()
    await world.start()
    bot = SimSwitchBot()
    bot_runner, bot_url = await serve(bot.app())
    async with aiohttp.ClientSession() as http:
        client = SkyBellClient(
            http, base_url=world.base_url + API_PREFIX, api_key=Secret(DEFAULT_API_KEY)
        )
        devices = await client.devices()
        options = EventOptions(
            webhook_secret=Secret(HOOK_SECRET),
            udp_enabled=path == "udp",
            udp_host="127.0.0.1",
            udp_port=0,
            poll_enabled=False,
            dedup_window=0.2,  # presses are `gap` apart: separate presses must stay separate
        )
        app = web.Application()
        event_routes.setup(
            app, options, client, devices=devices, log_path=folder / f"{path}.sqlite3"
        )
        bridge_runner, bridge_url = await serve(app)  # starts the event service
        service = app[event_routes.EVENTS]
        if path == "webhook":
            await add_webhook_triggers(
                client, devices, bridge_url + WEBHOOK_PATH, secret=Secret(HOOK_SECRET)
            )
        else:
            assert service.udp is not None
            world.presser.udp_target = ("127.0.0.1", service.udp.port)
        switchbot = SwitchBotClient(
            http, token=Secret(DEFAULT_TOKEN), secret=Secret(DEFAULT_SECRET), base_url=bot_url
        )
        engine = RuleEngine(
            parse_rules(RULES),
            switchbot=switchbot,
            record=None,
            warm=None,
            http=http,
            log=service.log,
        )
        await engine.start()  # resolves the scene name, so a press costs one API call
        engine.attach(service.bus)
        seen = service.bus.queue("bench")
        out: dict[str, list[float]] = {"press→event": [], "event→scene": [], "press→scene": []}
        try:
            for i in range(presses + WARMUP):
                began = time.monotonic()
                record = await world.press("Front Door")
                item = await asyncio.wait_for(seen.get(), 5)
                if item is None or item[1].source != path:
                    raise RuntimeError(f"expected an event from {path}, got {item}")
                ran = (await bot.wait_executed(i + 1, timeout=5))[i]
                if i >= WARMUP:
                    event = item[1]
                    out["press→event"].append((event.received - record.monotonic) * 1000)
                    out["event→scene"].append((ran.received_at - event.received) * 1000)
                    out["press→scene"].append((ran.received_at - record.monotonic) * 1000)
                await asyncio.sleep(max(0.0, gap - (time.monotonic() - began)))
            await engine.wait_idle()
            assert len(bot.executed) == presses + WARMUP, "a press ran the scene twice or never"
        finally:
            await engine.close()
            await bridge_runner.cleanup()
            await bot_runner.cleanup()
            await world.close()
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presses", type=int, default=100)
    parser.add_argument("--gap", type=float, default=0.5, help="seconds between presses")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    targets = {"udp": 50.0, "webhook": 100.0}
    with tempfile.TemporaryDirectory() as tmp:
        for path in ("webhook", "udp"):
            figures = await run_path(path, args.presses, args.gap, Path(tmp))
            print(f"{path} path, {args.presses} presses {args.gap:g} s apart (ms):")
            for name, values in figures.items():
                print(
                    f"  {name:12s} p50 {pct(values, 0.5):6.2f}  p95 {pct(values, 0.95):6.2f}"
                    f"  max {max(values):6.2f}"
                )
            p95 = pct(figures["press→scene"], 0.95)
            verdict = "met" if p95 <= targets[path] else "MISSED"
            print(f"  target press→scene p95 ≤ {targets[path]:g} ms: {verdict}")


if __name__ == "__main__":
    asyncio.run(main())
