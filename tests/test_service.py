"""``Bridge``: one composition root whose parts start in order and close in reverse.

The order is the app's (``bridge.app``); these tests pin what a user sees of it: on close a
clip being recorded is finished before the doorbell's live call ends, and nothing the bridge
started is left running.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.web_protocol import RequestHandler

from bridge.sim.cloud import SimDevice
from bridge.sim.world import SimWorld

from .serve_util import FRONT, BridgeFactory


def clip_states(clips_dir: Path) -> list[str]:
    """Every clip's state, straight from the index file (as another process would read it)."""
    with sqlite3.connect(f"file:{clips_dir / 'index.sqlite3'}?mode=ro", uri=True) as db:
        return [row[0] for row in db.execute("SELECT state FROM clips ORDER BY id")]


def _bridge_tasks(before: set[asyncio.Task[Any]], http_port: int) -> list[str]:
    """Tasks made since ``before`` by the bridge, still running: not the simulator's, nor the
    simulated cloud's HTTP handlers (the test's client keeps its connections to it open)."""
    out = []
    for task in asyncio.all_tasks() - before:
        coro = task.get_coro()
        code = getattr(coro, "cr_code", None)
        where = code.co_filename if code is not None else ""
        if task is asyncio.current_task() or task.done() or "/bridge/sim/" in where:
            continue
        handler = getattr(getattr(coro, "cr_frame", None), "f_locals", {}).get("self")
        transport = handler.transport if isinstance(handler, RequestHandler) else None
        if transport is not None and transport.get_extra_info("sockname")[1] != http_port:
            continue  # a connection to another server of this process
        out.append(f"{task.get_name()} {getattr(code, 'co_qualname', '?')} {where}")
    return out


@pytest.mark.slow
async def test_close_finishes_the_clip_then_ends_the_live_call_and_leaves_nothing_running(
    make_bridge: BridgeFactory, world: SimWorld, tmp_path: Path
) -> None:
    before = asyncio.all_tasks()
    bridge = await make_bridge()
    http_port = int(bridge.http_url.rstrip("/").rsplit(":", 1)[1])
    clips_dir = tmp_path / "clips"
    at_hangup: list[list[str]] = []
    hang_up = world.cloud.on_live_stop

    async def on_live_stop(device: SimDevice) -> None:
        at_hangup.append(clip_states(clips_dir))  # what the index said when the call ended
        if hang_up is not None:
            await hang_up(device)

    world.cloud.on_live_stop = on_live_stop
    async with aiohttp.ClientSession() as http:
        async with http.post(bridge.http_url + "api/record?src=front-door") as resp:
            assert resp.status == 202
        for _ in range(300):  # the clip's row appears with its first keyframe
            if clip_states(clips_dir) == ["recording"]:
                break
            await asyncio.sleep(0.1)
    assert clip_states(clips_dir) == ["recording"]
    assert world.cloud.live_sessions[FRONT] == 1

    await bridge.close()
    assert at_hangup == [["done"]], "the clip is finished before the live call ends"
    assert world.cloud.live_sessions[FRONT] == 0
    assert _bridge_tasks(before, http_port) == []
    await bridge.close()  # idempotent
