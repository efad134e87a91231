"""Ingest benchmark: one simulated doorbell at 720p15, 2 Mbps, measured from the bridge's side.

The simulator (cloud, KVS, doorbells and their H.264 encoders) runs in a separate process, so the
CPU and memory figures are the bridge's alone. Prints:
- time to first frame (live-call response → first keyframe at a hub subscriber), median of N;
- the same with a dead STUN and a dead TURN server in the live call's ICE list;
- ingest CPU as % of one core;
- added latency (last RTP packet of a frame → hub subscriber), p50/p95, and the burned-in
  clock's capture → hub latency (includes the simulator's encoding and pacing);
- extra RSS per stream.

Run: .venv/bin/python scripts/bench/ingest.py [--seconds 60] [--starts 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import aiohttp
import av

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bridge.media import aiortc_patch  # noqa: E402
from bridge.media.buffers import Subscriber  # noqa: E402
from bridge.media.hub import Hub, Stream  # noqa: E402
from bridge.media.live import LiveSession, open_live_session  # noqa: E402
from bridge.redact import Secret  # noqa: E402
from bridge.sim.cloud import API_PREFIX, DEFAULT_API_KEY  # noqa: E402
from bridge.sim.picture import read_stamp  # noqa: E402
from bridge.skybell import SkyBellClient  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def start_sim(port: int, doorbells: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bridge",
            "sim",
            "--port",
            str(port),
            "--doorbells",
            str(doorbells),
            "--quality",
            "1",
            "--fps",
            "15",
            "--bitrate",
            "2000000",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    proc.stdout.readline()  # "simulated SkyBell cloud at ..." once it listens
    return proc


def set_extra_ice(base: str, ice: list[dict[str, str]]) -> None:
    req = urllib.request.Request(  # noqa: S310 - a loopback URL we built
        base + "/_sim/extra_ice",
        data=json.dumps(ice).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310 - loopback only
        resp.read()


class Bench:
    def __init__(self, base: str, http: aiohttp.ClientSession) -> None:
        self.client = SkyBellClient(
            http, base_url=base + API_PREFIX, api_key=Secret(DEFAULT_API_KEY)
        )
        self.http = http
        self.sessions: list[LiveSession] = []

    def stream(self, device_id: str, name: str) -> Stream:
        async def connect() -> LiveSession:
            session = await open_live_session(self.client, self.http, device_id)
            self.sessions.append(session)
            return session

        return Hub(idle_timeout=0.1).add(device_id, name, connect)

    async def ttff(self, device_id: str) -> float:
        stream = self.stream(device_id, "bench")
        with stream.subscribe("bench") as sub:
            while True:
                packet = await asyncio.wait_for(sub.get(), 20)
                if packet.kind == "video" and packet.keyframe:
                    took = time.monotonic() - self.sessions[-1].call_at
                    break
        await stream.stop()
        return took


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="CPU/latency window")
    parser.add_argument("--starts", type=int, default=10, help="starts for the TTFF median")
    parser.add_argument("--streams", type=int, default=3, help="streams for the RSS figure")
    args = parser.parse_args()

    aiortc_patch.restrict_host_candidates(["127.0.0.1"])  # the simulator is on loopback
    port = free_port()
    sim = start_sim(port, max(2, args.streams))
    base = f"http://127.0.0.1:{port}"
    # A "dead" server: a UDP socket that swallows every request and never answers.
    blackhole = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    blackhole.bind(("127.0.0.1", 0))
    dead = f"127.0.0.1:{blackhole.getsockname()[1]}"
    try:
        async with aiohttp.ClientSession() as http:
            bench = Bench(base, http)
            devices = await bench.client.devices()
            front = devices[0].id

            await bench.ttff(front)  # warm-up: imports, codec tables
            plain = [await bench.ttff(front) for _ in range(args.starts)]
            set_extra_ice(
                base,
                [
                    {"urls": f"stun:{dead}"},
                    {"urls": [f"turn:{dead}?transport=udp"], "username": "u", "credential": "c"},
                ],
            )
            dead_runs = [await bench.ttff(front) for _ in range(args.starts)]
            set_extra_ice(base, [])
            print(
                f"time to first frame: median {statistics.median(plain) * 1000:.0f} ms "
                f"(min {min(plain) * 1000:.0f}, max {max(plain) * 1000:.0f}, n={len(plain)})"
            )
            print(
                f"time to first frame, dead STUN+TURN in the list: median "
                f"{statistics.median(dead_runs) * 1000:.0f} ms (first {dead_runs[0] * 1000:.0f} ms, "
                f"max {max(dead_runs) * 1000:.0f} ms)"
            )

            # CPU and latency over the window, one stream.
            stream = bench.stream(front, "front-door")
            added: list[float] = []
            glass: list[float] = []
            decoder = av.CodecContext.create("h264", "r")
            with stream.subscribe("bench") as sub:
                while True:  # wait for media before starting the clock
                    p = await sub.get()
                    if p.kind == "video":
                        decoder.decode(av.Packet(p.data))  # the keyframe, for the decoder's sake
                        break
                cpu0, wall0 = time.process_time(), time.monotonic()
                frames = 0
                while time.monotonic() - wall0 < args.seconds:
                    p = await sub.get()
                    if p.kind != "video":
                        continue
                    added.append(time.monotonic() - p.arrival)
                    frames += 1
                    # Decoding is the benchmark's own cost (to read the burned-in clock), so
                    # its CPU time is taken back out of the bridge's figure.
                    c0 = time.process_time()
                    for frame in decoder.decode(av.Packet(p.data)):
                        if frames % 15 == 0:
                            _, capture_ms = read_stamp(frame.to_ndarray(format="gray"))
                            glass.append(time.time() * 1000 - capture_ms)
                    cpu0 += time.process_time() - c0
                cpu = time.process_time() - cpu0
                wall = time.monotonic() - wall0
            await stream.stop()
            added.sort()
            glass.sort()
            print(
                f"ingest CPU: {cpu / wall * 100:.1f} % of one core over {wall:.0f} s "
                f"({frames / wall:.1f} fps received)"
            )
            print(
                f"added latency (last RTP packet -> hub subscriber): p50 {added[len(added) // 2] * 1000:.2f} ms, "
                f"p95 {added[int(len(added) * 0.95)] * 1000:.2f} ms"
            )
            if glass:
                print(
                    f"burned-in clock -> hub (incl. simulator encode + pacing): p50 {glass[len(glass) // 2]:.0f} ms"
                )

            # Memory: RSS with N streams against one stream, each given time to fill its ring.
            streams = [bench.stream(d.id, d.slug) for d in devices[: args.streams]]

            async def drain(sub: Subscriber) -> None:
                async for _ in sub:
                    pass

            subs = [streams[0].subscribe("bench")]
            readers = [asyncio.create_task(drain(subs[0]))]
            await asyncio.sleep(12)
            one = rss_mb()
            subs += [s.subscribe("bench") for s in streams[1:]]
            readers += [asyncio.create_task(drain(sub)) for sub in subs[1:]]
            await asyncio.sleep(12)
            loaded = rss_mb()
            for reader in readers:
                reader.cancel()
            live = sum(1 for s in streams if s.state == "live")
            for sub in subs:
                sub.close()
            for s in streams:
                await s.stop()
            extra = (loaded - one) / max(1, len(streams) - 1)
            print(
                f"extra RSS per stream: {extra:.1f} MB ({live} live streams: "
                f"{one:.0f} MB with one, {loaded:.0f} MB with {len(streams)})"
            )
            print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    finally:
        blackhole.close()
        sim.terminate()
        sim.wait(10)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    asyncio.run(main())
