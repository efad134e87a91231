"""What several commands share: printing tables, choosing devices, waiting for a stop signal."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import signal
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import aiohttp

from bridge.config import Settings
from bridge.skybell import Device, find_device

__all__ = [
    "Command",
    "bridge_auth_headers",
    "bridge_url",
    "choose_devices",
    "on_simulator",
    "print_table",
    "until_stopped",
]

Command = Callable[[Settings, argparse.Namespace], Coroutine[Any, Any, int]]

# The simulated doorbells answer on loopback only (bridge.sim.doorbell.LOOPBACK).
_SIM_HOSTS = "127.0.0.1"


def bridge_url(settings: Settings) -> str:
    """The running bridge's base URL from the settings (a wildcard host is reached on loopback)."""
    srv = settings.server
    host = "127.0.0.1" if srv.host in ("0.0.0.0", "::", "") else srv.host
    return f"http://{host}:{srv.port}/"


def bridge_auth_headers(settings: Settings) -> dict[str, str]:
    """Basic auth for the running bridge, when it has a password."""
    srv = settings.server
    if srv.password is None:
        return {}
    return {"Authorization": aiohttp.encode_basic_auth(srv.username, srv.password.reveal())}


def print_table(rows: Sequence[Sequence[str]]) -> None:
    """Left-aligned columns, the first row as the header."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def choose_devices(devices: list[Device], names: Sequence[str]) -> list[Device]:
    """The named devices (name, stream name or id), or all of them when none are named."""
    return [find_device(devices, n) for n in names] if names else devices


def on_simulator(settings: Settings) -> Settings:
    """Settings for a run against the in-process simulator: the doorbell side on loopback too.

    The simulated doorbells offer 127.0.0.1 only, so the bridge's doorbell-side peer does the
    same unless ``streams.ice_host_addresses`` says otherwise. Browser-facing peers are left
    alone: a phone on the LAN may watch the simulator.
    """
    if settings.streams.ice_host_addresses:
        return settings
    streams = dataclasses.replace(settings.streams, ice_host_addresses=_SIM_HOSTS)
    return dataclasses.replace(settings, streams=streams)


async def until_stopped() -> None:
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
