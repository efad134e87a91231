"""Ingest benchmark: one simulated doorbell at 720p15, 2 Mbps, measured from the bridge's side.

The simulator (cloud, KVS, doorbells and their H.264 encoders) runs in a separate process, so the
CPU and memory figures are the bridge's alone. It runs once per doorbell keyframe mode
(``--mode``): ``on_request`` (libwebrtc: one IDR at the start, then only on PLI/FIR) and ``gop``
(a camera's fixed interval). For each mode it prints:
- time to first frame (live-call response → first keyframe at a hub subscriber), median of N;
- the same with a dead STUN and a dead TURN server in the live call's ICE list;
- ingest CPU as % of one core;
- added latency (last RTP packet of a frame → hub subscriber), p50/p95, and the burned-in
  clock's capture → hub latency (includes the simulator's encoding and pacing);
- extra RSS per stream;
- a late joiner's time to picture (subscribe → first keyframe delivered) once the cached GOP
  is older than the hub's keyframe_interval, p50/p95 over spaced joins, and how many were
  served from the cache instead;
- keyframe requests (PLI + FIR) per joining viewer, for the spaced joins and for a burst of
  viewers joining at once, as the hub counts them and as the doorbell counts them;
and, in on_request mode, the RSS of a session after 1 minute and after ``--rss-minutes``
(a session with no pre-roll wanted gets one GOP for its whole life; the ring must stay bounded).

Run: .venv/bin/python scripts/bench/ingest.py [--seconds 60] [--starts 10] [--mode both]
     [--rss-minutes 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import resource
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import av

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bridge.media import aiortc_patch  # noqa: E402
from bridge.media.buffers import Subscriber  # noqa: E402
from bridge.media.hub import Hub, Stream  # noqa: E402
from bridge.media.live import CloudLiveCall, open_live_call  # noqa: E402
from bridge.redact import Secret  # noqa: E402
from bridge.sim.cloud import API_PREFIX, DEFAULT_API_KEY  # noqa: E402
from bridge.sim.picture import read_stamp  # noqa: E402
from bridge.skybell import SkyBellClient  # noqa: E402

# Picks the simulated doorbells' keyframe mode (bridge/sim/doorbell.py reads it once per doorbell).
KEYFRAMES_ENV = "SKYBELL_BRIDGE_SIM_KEYFRAMES"
MODES = ("on_request", "gop")
# The doorbell's own counters (GET /_sim/doorbells/{id}/media, summed over its viewers).
SIM_COUNTERS = (
    "pli_received",
    "fir_received",
    "nack_received",
    "keyframes_sent",
    "keyframe_requests_ignored",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int | str = "self") -> float:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (p95 of 20 samples is the 19th, not the maximum)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(len(ordered) * q) - 1)]


def start_sim(port: int, doorbells: int, mode: str) -> subprocess.Popen[str]:
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
        env={**os.environ, KEYFRAMES_ENV: mode},
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
        self.base = base
        self.client = SkyBellClient(
            http, base_url=base + API_PREFIX, api_key=Secret(DEFAULT_API_KEY)
        )
        self.http = http
        self.sessions: list[CloudLiveCall] = []

    def stream(self, device_id: str, name: str) -> Stream:
        async def connect() -> CloudLiveCall:
            session = await open_live_call(self.client, self.http, device_id)
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

    async def sim_media(self, device_id: str, change: dict[str, Any] | None = None) -> Any:
        """The doorbell's settings and counters from the control API (None without one)."""
        url = f"{self.base}/_sim/doorbells/{device_id}/media"
        try:
            async with self.http.request(
                "POST" if change else "GET", url, json=change, timeout=aiohttp.ClientTimeout(5)
            ) as resp:
                return await resp.json() if resp.status == 200 else None
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return None

    async def sim_counters(self, device_id: str) -> dict[str, int] | None:
        """The doorbell's own PLI/FIR/NACK counters (None when the simulator has no such API)."""
        body = await self.sim_media(device_id)
        if not isinstance(body, dict) or not isinstance(body.get("stats"), dict):
            return None
        return {k: int(body["stats"].get(k, 0)) for k in SIM_COUNTERS}


async def first_keyframe(sub: Subscriber, timeout: float = 20.0) -> None:
    while True:
        packet = await asyncio.wait_for(sub.get(), timeout)
        if packet.kind == "video" and packet.keyframe:
            return


async def drain(sub: Subscriber, keyframes: list[int] | None = None) -> None:
    async for packet in sub:
        if keyframes is not None and packet.kind == "video" and packet.keyframe:
            keyframes[0] += 1


async def existing_figures(bench: Bench, args: argparse.Namespace, dead: str) -> None:
    """TTFF, CPU, latency and RSS per stream (the figures this script has always printed)."""
    devices = await bench.client.devices()
    front = devices[0].id
    await bench.ttff(front)  # warm-up: imports, codec tables
    plain = [await bench.ttff(front) for _ in range(args.starts)]
    set_extra_ice(
        bench.base,
        [
            {"urls": f"stun:{dead}"},
            {"urls": [f"turn:{dead}?transport=udp"], "username": "u", "credential": "c"},
        ],
    )
    dead_runs = [await bench.ttff(front) for _ in range(args.starts)]
    set_extra_ice(bench.base, [])
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
    print(
        f"ingest CPU: {cpu / wall * 100:.1f} % of one core over {wall:.0f} s "
        f"({frames / wall:.1f} fps received)"
    )
    print(
        f"added latency (last RTP packet -> hub subscriber): p50 {pct(added, 0.5) * 1000:.2f} ms, "
        f"p95 {pct(added, 0.95) * 1000:.2f} ms"
    )
    if glass:
        print(
            f"burned-in clock -> hub (incl. simulator encode + pacing): p50 {pct(glass, 0.5):.0f} ms"
        )

    # Memory: RSS with N streams against one stream, each given time to fill its ring.
    streams = [bench.stream(d.id, d.slug) for d in devices[: args.streams]]
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


class Counts:
    """PLI/FIR as the hub sent them and as the doorbell received them, between two reads."""

    def __init__(self, bench: Bench, stream: Stream) -> None:
        self.bench, self.stream = bench, stream
        self.hub: dict[str, Any] = {}
        self.sim: dict[str, int] | None = None

    async def mark(self) -> None:
        self.hub = dict(self.stream.stats()["keyframe_requests"])
        self.sim = await self.bench.sim_counters(self.stream.device_id)

    async def report(self, label: str, viewers: int) -> str:
        await asyncio.sleep(0.5)  # let the last RTCP reach the doorbell
        hub = self.stream.stats()["keyframe_requests"]
        pli, fir = (hub[k] - self.hub[k] for k in ("pli", "fir"))
        text = (
            f"keyframe requests per joining viewer, {label}: {(pli + fir) / viewers:.2f} "
            f"(hub sent PLI {pli}, FIR {fir}, coalesced {hub['coalesced'] - self.hub['coalesced']}, "
            f"answered {hub['answered'] - self.hub['answered']}, for {viewers} viewers"
        )
        sim = await self.bench.sim_counters(self.stream.device_id)
        if sim is not None and self.sim is not None:
            got = {k: sim.get(k, 0) - self.sim.get(k, 0) for k in SIM_COUNTERS}
            text += (
                f"; doorbell got PLI {got['pli_received']}, FIR {got['fir_received']}, "
                f"NACK {got['nack_received']} = "
                f"{(got['pli_received'] + got['fir_received']) / viewers:.2f} per viewer, "
                f"sent {got['keyframes_sent']} keyframes, "
                f"ignored {got['keyframe_requests_ignored']} requests)"
            )
        else:
            text += "; the simulator has no /_sim/doorbells/{id}/media counters)"
        return text


async def keyframe_figures(bench: Bench, args: argparse.Namespace) -> None:
    """Late joiners once the cached GOP is stale: time to picture, and requests per viewer."""
    front = (await bench.client.devices())[0].id
    stream = bench.stream(front, "front-door")
    # The hub hands a new subscriber the cached GOP up to this age, else it asks for a keyframe.
    stale = stream.keyframe_interval + 0.5
    holder = stream.subscribe("holder")  # keeps the session up between joiners
    await first_keyframe(holder)
    reader = asyncio.create_task(drain(holder))
    try:
        await asyncio.sleep(stale)
        counts = Counts(bench, stream)
        await counts.mark()
        waits: list[float] = []
        cached = 0
        for _ in range(args.joins):
            t0 = time.monotonic()
            with stream.subscribe("joiner") as sub:
                cached += not sub.waiting_for_keyframe
                await first_keyframe(sub)
                took = time.monotonic() - t0
            waits.append(took)
            # Joiners are spaced so each finds a stale GOP (in on_request mode the previous
            # joiner's keyframe is the newest) and the rate limits do not merge them.
            await asyncio.sleep(max(0.0, args.join_spacing - took))
        print(
            f"late joiner time to picture ({args.joins} joins, {args.join_spacing:g} s apart): "
            f"p50 {pct(waits, 0.5) * 1000:.0f} ms, p95 {pct(waits, 0.95) * 1000:.0f} ms, "
            f"max {max(waits) * 1000:.0f} ms (join #{waits.index(max(waits)) + 1}); "
            f"{cached} served from the cached GOP"
        )
        print(await counts.report("spaced", args.joins))

        await asyncio.sleep(stale)
        await counts.mark()
        t0 = time.monotonic()
        burst = [stream.subscribe("burst") for _ in range(args.joins)]
        cached = sum(not sub.waiting_for_keyframe for sub in burst)

        async def picture(sub: Subscriber) -> float:
            await first_keyframe(sub)
            return time.monotonic() - t0

        burst_waits = await asyncio.gather(*(picture(sub) for sub in burst))
        for sub in burst:
            sub.close()
        print(
            f"burst of {args.joins} joining at once: time to picture p50 "
            f"{pct(burst_waits, 0.5) * 1000:.0f} ms, p95 {pct(burst_waits, 0.95) * 1000:.0f} ms "
            f"({cached} served from the cached GOP)"
        )
        print(await counts.report("all at once", args.joins))
        kr = stream.stats()["keyframe_requests"]
        print(f"hub keyframe answer time p50: {kr['answer_ms_p50']} ms")
    finally:
        reader.cancel()
        holder.close()
        await stream.stop()


async def rss_over_time(bench: Bench, minutes: float, sim_pid: int) -> None:
    """RSS of one session with no pre-roll wanted, after 1 minute and after ``minutes``."""
    front = (await bench.client.devices())[0].id
    stream = bench.stream(front, "front-door")
    keyframes = [0]
    sub = stream.subscribe("viewer")
    reader = asyncio.create_task(drain(sub, keyframes))
    t0 = time.monotonic()
    samples: list[tuple[float, float, int, float]] = []
    try:
        marks = [1.0] + [m for m in range(2, int(minutes) + 1)]
        if minutes not in marks:
            marks.append(minutes)
        for mark in marks:
            await asyncio.sleep(max(0.0, t0 + mark * 60 - time.monotonic()))
            ring = int(stream.stats()["buffer"]["bytes"])
            samples.append((mark, rss_mb(), ring, rss_mb(sim_pid)))
            print(
                f"  after {mark:g} min: RSS {samples[-1][1]:.1f} MB, ring {ring / 1e6:.2f} MB, "
                f"{keyframes[0]} keyframes received, simulator RSS {samples[-1][3]:.0f} MB",
                flush=True,
            )
    finally:
        reader.cancel()
        sub.close()
        stats = stream.stats()
        await stream.stop()
    first, last = samples[0], samples[-1]
    print(
        f"RSS after {last[0]:g} min vs after 1 min (one session, one GOP, no pre-roll): "
        f"{last[1]:.1f} MB vs {first[1]:.1f} MB, difference {last[1] - first[1]:+.1f} MB; "
        f"ring buffer.bytes {last[2]} (was {first[2]}); {keyframes[0]} keyframes in "
        f"{last[0]:g} min; {stats['reconnects']} reconnects; "
        f"simulator RSS {first[3]:.0f} -> {last[3]:.0f} MB"
    )


async def run_mode(mode: str, args: argparse.Namespace) -> None:
    port = free_port()
    sim = start_sim(port, max(2, args.streams), mode)
    base = f"http://127.0.0.1:{port}"
    # A "dead" server: a UDP socket that swallows every request and never answers.
    blackhole = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    blackhole.bind(("127.0.0.1", 0))
    dead = f"127.0.0.1:{blackhole.getsockname()[1]}"
    try:
        async with aiohttp.ClientSession() as http:
            bench = Bench(base, http)
            front = (await bench.client.devices())[0].id
            if mode == "gop" and args.gop_seconds is not None:
                await bench.sim_media(front, {"gop_seconds": args.gop_seconds})
            media = await bench.sim_media(front)
            if isinstance(media, dict):  # what the doorbell really does, not what was asked
                got = media["settings"]
                gop = f", gop_seconds {got['gop_seconds']:g}" if got["keyframes"] == "gop" else ""
                print(f"== doorbell keyframes: {got['keyframes']}{gop} ==", flush=True)
            else:
                print(f"== doorbell keyframes: {mode} (asked; no control API) ==", flush=True)
            if not args.keyframes_only:
                await existing_figures(bench, args, dead)
            await keyframe_figures(bench, args)
            if mode == "on_request" and args.rss_minutes > 0:
                await rss_over_time(bench, args.rss_minutes, sim.pid)
    finally:
        blackhole.close()
        sim.terminate()
        sim.wait(10)


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="CPU/latency window")
    parser.add_argument("--starts", type=int, default=10, help="starts for the TTFF median")
    parser.add_argument("--streams", type=int, default=3, help="streams for the RSS figure")
    parser.add_argument(
        "--mode", choices=(*MODES, "both"), default="both", help="doorbell keyframes"
    )
    parser.add_argument("--joins", type=int, default=20, help="late joiners (and burst size)")
    parser.add_argument(
        "--join-spacing",
        type=float,
        default=2.5,
        help="seconds between late joiners: above the hub's keyframe_interval (2 s), so each "
        "finds a stale GOP, and above the 300 ms rate limits",
    )
    parser.add_argument(
        "--gop-seconds",
        type=float,
        default=None,
        help="keyframe interval in gop mode (default: the simulator's, 2 s)",
    )
    parser.add_argument(
        "--rss-minutes", type=float, default=10.0, help="on_request session length (0: skip)"
    )
    parser.add_argument(
        "--keyframes-only", action="store_true", help="skip TTFF, CPU, latency and RSS per stream"
    )
    args = parser.parse_args()
    if args.rss_minutes and args.rss_minutes < 1:
        parser.error("--rss-minutes must be 0 or at least 1 (the baseline is at 1 minute)")

    aiortc_patch.restrict_host_candidates(["127.0.0.1"])  # the simulator is on loopback
    for mode in MODES if args.mode == "both" else (args.mode,):
        await run_mode(mode, args)
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    asyncio.run(main())
