"""Audio for talk tests: a tone as a WAV (or any container PyAV writes), made with numpy."""

from __future__ import annotations

import asyncio
import io
import time
from typing import Any

import aiohttp
import av
import numpy as np


def tone_file(
    freq: float = 1000.0,
    seconds: float = 1.5,
    *,
    rate: int = 44_100,
    amplitude: float = 0.5,
    container: str = "wav",
    codec: str = "pcm_s16le",
    layout: str = "mono",
) -> bytes:
    """A sine tone as a file in memory (44.1 kHz mono 16-bit WAV unless told otherwise)."""
    buf = io.BytesIO()
    with av.open(buf, "w", format=container) as out:
        stream = out.add_stream(codec, rate=rate, layout=layout)
        assert isinstance(stream, av.AudioStream)
        n = int(seconds * rate)
        t = np.arange(n) / rate
        wave = (amplitude * np.sin(2 * np.pi * freq * t) * 32767).astype(np.int16)
        channels = 2 if layout == "stereo" else 1
        step = 1024
        for start in range(0, n, step):
            chunk = wave[start : start + step]
            packed = np.repeat(chunk, channels).reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(packed, format="s16", layout=layout)
            frame.sample_rate = rate
            frame.pts = start
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


async def heard(sim_base: str, device: str) -> dict[str, Any]:
    """The simulated doorbell's ``/heard`` report."""
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{sim_base}/_sim/doorbells/{device}/heard") as resp,
    ):
        assert resp.status == 200
        body: dict[str, Any] = await resp.json()
        return body


async def wait_heard(
    sim_base: str, device: str, check: Any, timeout: float = 10.0
) -> dict[str, Any]:
    """Poll ``/heard`` until ``check(report)`` is true; the last report either way."""
    deadline = time.monotonic() + timeout
    report = await heard(sim_base, device)
    while not check(report) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        report = await heard(sim_base, device)
    return report
