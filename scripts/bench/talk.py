"""Talk benchmark: mouth-to-doorbell latency of ``POST /api/talk`` on loopback.

The simulator (``skybell-bridge sim``) and the bridge (``serve``) run as separate processes, as
in the other benchmarks. Each round POSTs a short 1 kHz WAV to /api/talk and polls the
simulated doorbell's ``/heard`` until a new sound onset appears; the latency is the onset's
wall-clock time (stamped by the simulator when the first loud packet is decoded) minus the
time the request started. Both stamps come from this machine's one wall clock.

The path measured: the upload, decoding the file in a thread, claiming the doorbell, resampling,
aiortc's Opus encoder, SRTP over loopback, and the doorbell's decoder. Not included: a real
doorbell's jitter buffer and speaker (tens of milliseconds), and the Internet.

Two figures: "warm", with the doorbell's live call already up (the usual case: someone rang and
is being watched), and "cold", where the request itself wakes the doorbell (a live call, KVS
signaling, ICE and DTLS first). Target: warm p95 <= 300 ms.

Run: .venv/bin/python scripts/bench/talk.py [--rounds 20] [--seconds 0.5]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import av
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import free_port, start_serve, start_sim, stop

STREAM = "front-door"
DEVICE = "Front Door"
TARGET_MS = 300.0
PAUSE = 0.5  # silence between rounds: the simulator counts a new onset after 0.3 s


def tone_wav(seconds: float, freq: float = 1000.0, rate: int = 48_000) -> bytes:
    """A mono 16-bit WAV of a sine at half scale."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="wav") as out:
        stream = out.add_stream("pcm_s16le", rate=rate, layout="mono")
        assert isinstance(stream, av.AudioStream)
        t = np.arange(int(seconds * rate)) / rate
        wave = (0.5 * np.sin(2 * np.pi * freq * t) * 32767).astype(np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(wave, format="s16", layout="mono")
        frame.sample_rate = rate
        frame.pts = 0
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    return buf.getvalue()


async def heard(http: aiohttp.ClientSession, sim: str) -> dict[str, Any]:
    """The simulated doorbell's /heard report."""
    async with http.get(f"{sim}/_sim/doorbells/{quote(DEVICE)}/heard") as resp:
        report: dict[str, Any] = await resp.json()
        return report


async def one_round(
    http: aiohttp.ClientSession, base: str, sim: str, body: bytes
) -> tuple[float, float]:
    """(request → onset, request → answer) in milliseconds."""
    onsets = (await heard(http, sim))["onsets"]
    started = time.time()

    async def talk() -> float:
        async with http.post(f"{base}api/talk?src={STREAM}", data=io.BytesIO(body)) as resp:
            text = await resp.text()
            if resp.status != 200:
                raise RuntimeError(f"/api/talk answered {resp.status}: {text}")
        return (time.time() - started) * 1000

    request = asyncio.create_task(talk())
    deadline = time.monotonic() + 30
    while True:
        report = await heard(http, sim)
        if report["onsets"] > onsets:
            break
        if request.done() and request.exception() is not None:
            raise request.exception()  # type: ignore[misc]
        if time.monotonic() > deadline:
            raise RuntimeError(f"the doorbell heard nothing within 30 s: {report}")
        await asyncio.sleep(0.005)
    answered = await request
    return (report["onset_at"] - started) * 1000, answered


def summary(name: str, values: list[float]) -> str:
    """p50/p95/max of a list of milliseconds."""
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return (
        f"{name:<28} n={len(values):<3} p50 {statistics.median(values):7.1f} ms"
        f"  p95 {p95:7.1f} ms  max {ordered[-1]:7.1f} ms"
    )


async def run(args: argparse.Namespace) -> int:
    sim_port, http_port, rtsp_port = free_port(), free_port(), free_port()
    sim = f"http://127.0.0.1:{sim_port}"
    base = f"http://127.0.0.1:{http_port}/"
    body = tone_wav(args.seconds)
    procs = [start_sim(sim_port, quality=0)]
    with tempfile.TemporaryDirectory() as clips:
        try:
            procs.append(
                start_serve(
                    sim,
                    http_port,
                    rtsp_port,
                    storage_clips_dir=clips,
                    record_min_free_mb="0",
                    streams_idle_timeout="600",
                )
            )
            async with aiohttp.ClientSession() as http:
                cold, cold_answer = await one_round(http, base, sim, body)
                await asyncio.sleep(PAUSE)
                warm: list[float] = []
                answers: list[float] = []
                for _ in range(args.rounds):
                    latency, answered = await one_round(http, base, sim, body)
                    warm.append(latency)
                    answers.append(answered - args.seconds * 1000)
                    await asyncio.sleep(PAUSE)
                codec = (await heard(http, sim))["codec"]
        finally:
            stop(procs)
    print(f"talk benchmark: {args.rounds} rounds of a {args.seconds:g} s 1 kHz WAV ({codec})")
    print(f"{'cold (wakes the doorbell)':<28} request → onset {cold:7.1f} ms"
          f"  (answer {cold_answer:7.1f} ms)")  # fmt: skip
    print(summary("warm: request → onset", warm))
    print(summary("warm: answer - audio length", answers))
    p95 = sorted(warm)[min(len(warm) - 1, round(0.95 * (len(warm) - 1)))]
    verdict = "OK" if p95 <= TARGET_MS else "OVER"
    print(f"target: warm p95 <= {TARGET_MS:g} ms: {verdict} ({p95:.1f} ms)")
    return 0 if p95 <= TARGET_MS else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=0.5, help="length of each tone")
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
