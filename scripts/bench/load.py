"""Load benchmark: N simulated doorbells, each watched by 2 RTSP readers, 1 LL-HLS reader,
1 WHEP (WebRTC) viewer and 1 MJPEG viewer, against `skybell-bridge serve`.

Three kinds of process, as in outputs.py: the simulator (cloud, KVS and every doorbell's H.264
encoder), the bridge, and this script (which plays every viewer). Each N gets a fresh simulator
and bridge, so RSS is the bridge's at that load. For each N it prints:
- the bridge's CPU as % of one core and its RSS;
- the simulator's and this script's CPU, and the machine's idle share, because all three share
  the same cores: when the machine is saturated a "fell behind" may be the doorbell's or the
  viewers' fault, not the bridge's;
- for every viewer, frames received against frames the doorbell sent over the same window
  (the simulator's ``GET /_sim/doorbells/{id}/media`` ``frames_sent``); a viewer keeps up when
  it received at least ``--keep-up`` of them;
and at the end the largest N where every viewer kept up (bisecting between the largest N that
held and the smallest that did not, unless ``--no-search``).

The viewers are light on purpose (no decoding), so the load generator costs as little CPU as it
can: RTSP readers count RTP marker bits, the LL-HLS reader demuxes each part and counts video
samples, the MJPEG viewer counts JPEG parts, the WHEP viewer is an aiortc peer in passthrough
mode counting encoded frames.

The simulated doorbells encode at image_quality 0 (854x480, 800 kbps) by default, because every
doorbell's libx264 encoder runs on the same 2 cores as the bridge.

Run: .venv/bin/python scripts/bench/load.py [--doorbells 1,5,10] [--seconds 30] [--quality 0]
     [--fps 15] [--keyframes on_request|gop]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import re
import struct
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import av

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from common import KEYFRAME_MODES, KEYFRAMES_ENV  # noqa: E402
from outputs import cpu_seconds, free_port, hls_media_playlists, mjpeg_reader  # noqa: E402

from bridge.media import aiortc_patch  # noqa: E402
from bridge.sim.cloud import API_PREFIX, DEFAULT_API_KEY  # noqa: E402
from bridge.sim.media_settings import resolution_for  # noqa: E402

_PART = re.compile(r'#EXT-X-PART:.*?URI="([^"]+)"')
_MAP = re.compile(r'#EXT-X-MAP:URI="([^"]+)"')


def rss_mb(pid: int) -> float:
    """Resident set size of a process in MB (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def machine_jiffies() -> tuple[int, int]:
    """(idle, total) jiffies over all cores, from /proc/stat."""
    with open("/proc/stat") as fh:
        values = [int(v) for v in fh.readline().split()[1:]]
    return values[3] + values[4], sum(values)


@dataclass
class Viewer:
    """One simulated viewer: what it is, which doorbell, and how many frames it got."""

    kind: str
    stream: str
    frames: int = 0
    error: str | None = None
    marks: list[int] = field(default_factory=list)


class LoadRig:
    """The simulator with N doorbells and the bridge, as subprocesses."""

    def __init__(self, doorbells: int, quality: int, fps: int) -> None:
        self.doorbells, self.quality, self.fps = doorbells, quality, fps
        self.sim_port, self.http_port, self.rtsp_port = free_port(), free_port(), free_port()
        self.sim_url = f"http://127.0.0.1:{self.sim_port}"
        self.base = f"http://127.0.0.1:{self.http_port}/"
        self.procs: list[subprocess.Popen[str]] = []

    def start(self) -> None:
        sim = subprocess.Popen(
            [sys.executable, "-m", "bridge", "sim", "--port", str(self.sim_port),
             "--doorbells", str(self.doorbells), "--quality", str(self.quality),
             "--fps", str(self.fps)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        self.procs.append(sim)
        assert sim.stdout is not None
        sim.stdout.readline()  # it prints once it listens
        self.sim_pid = sim.pid
        env = {k: v for k, v in os.environ.items() if not k.startswith("SKYBELL_BRIDGE_")}
        env |= {
            "SKYBELL_BRIDGE_SKYBELL_API_URL": self.sim_url + API_PREFIX,
            "SKYBELL_BRIDGE_SKYBELL_API_KEY": DEFAULT_API_KEY,
            "SKYBELL_BRIDGE_SERVER_PORT": str(self.http_port),
            "SKYBELL_BRIDGE_SERVER_RTSP_PORT": str(self.rtsp_port),
            "SKYBELL_BRIDGE_STREAMS_ICE_HOST_ADDRESSES": "127.0.0.1",
            "SKYBELL_BRIDGE_WEBRTC_ICE_HOST_ADDRESSES": "127.0.0.1",  # viewers too
            "SKYBELL_BRIDGE_LOG_LEVEL": "warning",
        }
        bridge = subprocess.Popen(
            [sys.executable, "-m", "bridge", "serve"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        self.procs.append(bridge)
        assert bridge.stdout is not None
        bridge.stdout.readline()  # "skybell-bridge: N doorbell(s)" once both listeners are up
        self.pid = bridge.pid

    def close(self) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)

    async def streams(self, http: aiohttp.ClientSession) -> dict[str, str]:
        """Stream name → device id, as the bridge lists them."""
        async with http.get(self.base + "api/streams") as resp:
            body = await resp.json()
        return {name: info["id"] for name, info in body.items()}

    async def doorbell(self, http: aiohttp.ClientSession, device_id: str) -> tuple[int, int]:
        """(frames sent, keyframe requests received) so far by the doorbell, over every peer it
        had (the bridge is its only one)."""
        async with http.get(f"{self.sim_url}/_sim/doorbells/{device_id}/media") as resp:
            stats = (await resp.json())["stats"]
        return int(stats["frames_sent"]), int(stats["keyframe_requests"])

    async def reconnects(self, http: aiohttp.ClientSession) -> int:
        """Live-session reconnects so far, summed over the bridge's streams."""
        async with http.get(self.base + "api/streams") as resp:
            body = await resp.json()
        return sum(int(info.get("reconnects", 0)) for info in body.values())


# -- viewers --------------------------------------------------------------------------------------


async def rtsp_reader(url: str, viewer: Viewer) -> None:
    """A minimal RTSP client over TCP (interleaved) that counts complete pictures (RTP markers)."""
    host, port = url.split("/")[2].split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    cseq = 0

    async def request(method: str, target: str, *headers: str) -> dict[str, str]:
        nonlocal cseq
        cseq += 1
        lines = [f"{method} {target} RTSP/1.0", f"CSeq: {cseq}", *headers, "", ""]
        writer.write("\r\n".join(lines).encode())
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        if " 200 " not in head.split("\r\n", 1)[0]:
            raise RuntimeError(f"{method}: {head.splitlines()[0]}")
        fields = {
            k.strip().lower(): v.strip()
            for k, _, v in (ln.partition(":") for ln in head.split("\r\n")[1:] if ln)
        }
        await reader.readexactly(int(fields.get("content-length", "0")))
        return fields

    try:
        await request("DESCRIBE", url, "Accept: application/sdp")
        setup = await request("SETUP", url + "/trackID=0", "Transport: RTP/AVP/TCP;interleaved=0-1")
        await request("PLAY", url, f"Session: {setup['session'].split(';')[0]}")
        while True:
            magic, channel, size = struct.unpack("!cBH", await reader.readexactly(4))
            data = await reader.readexactly(size)
            if magic == b"$" and channel == 0 and data[1] & 0x80:
                viewer.frames += 1
    finally:
        writer.close()


async def llhls_reader(http: aiohttp.ClientSession, playlist_url: str, viewer: Viewer) -> None:
    """Follow an LL-HLS playlist by blocking reload and parts; count video samples per part."""
    seen: set[str] = set()
    init: bytes | None = None
    query = ""
    base = playlist_url.split("?")[0].rsplit("/", 1)[0] + "/"
    while True:
        async with http.get(playlist_url + query) as resp:
            resp.raise_for_status()
            text = await resp.text()
        if init is None and (m := _MAP.search(text)):
            async with http.get(_join(base, m.group(1))) as resp:
                init = await resp.read()
        uris = _PART.findall(text)
        fresh = [u for u in uris if u not in seen]
        if not seen:
            fresh = fresh[-1:]  # join at the live edge, as players do
            seen.update(uris)
        for uri in fresh:
            seen.add(uri)
            async with http.get(_join(base, uri)) as resp:
                data = await resp.read()
            if init is not None:
                viewer.frames += _video_samples(init + data)
        msn, part = _next_part(text)
        sep = "&" if "?" in playlist_url else "?"
        query = f"{sep}_HLS_msn={msn}&_HLS_part={part}"


def _join(base: str, uri: str) -> str:
    if uri.startswith("http"):
        return uri
    if uri.startswith("/"):
        return base.split("/api/")[0] + uri
    return base + uri


def _next_part(playlist: str) -> tuple[int, int]:
    """The (msn, part) just after the last part listed."""
    m = re.search(r"#EXT-X-MEDIA-SEQUENCE:(\d+)", playlist)
    msn = int(m.group(1)) if m else 0
    segments = parts = 0
    for line in playlist.splitlines():
        if line.startswith("#EXT-X-PART:"):
            parts += 1
        elif line and not line.startswith("#"):
            segments += 1
            parts = 0
    return msn + segments, parts


def _video_samples(fmp4: bytes) -> int:
    """Video samples in an fMP4 fragment (demuxed, not decoded)."""
    count = 0
    try:
        with av.open(io.BytesIO(fmp4), format="mp4") as container:
            for packet in container.demux(video=0):
                if packet.size:
                    count += 1
    except av.error.FFmpegError:
        pass
    return count


async def mjpeg_viewer(http: aiohttp.ClientSession, url: str, viewer: Viewer) -> None:
    """Count the JPEGs of a multipart MJPEG stream."""

    def on_jpeg(_: bytes) -> None:
        viewer.frames += 1

    await mjpeg_reader(http, url, on_jpeg)


async def whep_viewer(base: str, stream: str, viewer: Viewer) -> None:
    """A browser-like aiortc peer in passthrough mode: counts encoded frames, decodes nothing."""
    from aiortc import RTCPeerConnection, RTCSessionDescription

    pc = RTCPeerConnection()
    video = pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")
    aiortc_patch.enable_passthrough(video.receiver)
    await pc.setLocalDescription(await pc.createOffer())
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                base + f"api/webrtc?src={stream}",
                data=pc.localDescription.sdp,
                headers={"Content-Type": "application/sdp"},
            ) as resp,
        ):
            resp.raise_for_status()
            answer = await resp.text()
        await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        track = video.receiver.track
        while True:
            await asyncio.wait_for(track.recv(), 15)
            viewer.frames += 1
    finally:
        await pc.close()


async def guarded(viewer: Viewer, coro: Awaitable[None]) -> None:
    """Run a viewer; a viewer that dies is recorded, not raised (it failed to keep up)."""
    try:
        await coro
        viewer.error = "ended"
    except asyncio.CancelledError:
        raise
    except Exception as err:  # any failure is this viewer's result
        viewer.error = f"{type(err).__name__}: {err}"[:120]


# -- one N ----------------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What one N measured."""

    doorbells: int
    bridge_cpu: float
    bridge_rss: float
    sim_cpu: float
    own_cpu: float
    machine_idle: float
    kept_up: bool
    worst: str


async def run_n(n: int, args: argparse.Namespace, say: Callable[[str], None]) -> Outcome:
    """Start a simulator with ``n`` doorbells and a bridge, load them, and measure."""
    rig = LoadRig(n, args.quality, args.fps)
    rig.start()
    tasks: list[asyncio.Task[None]] = []
    try:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            streams = await rig.streams(http)
            names = list(streams)[:n]
            viewers: list[Viewer] = []
            for name in names:
                rtsp = f"rtsp://127.0.0.1:{rig.rtsp_port}/{name}"
                ll_url, _ = await hls_media_playlists(
                    http, rig.base + f"api/stream.m3u8?src={name}"
                )
                mjpeg = rig.base + f"api/stream.mjpeg?src={name}&fps={args.fps}"
                made: list[tuple[str, Callable[[Viewer], Awaitable[None]]]] = [
                    ("rtsp", lambda v, u=rtsp: rtsp_reader(u, v)),
                    ("rtsp", lambda v, u=rtsp: rtsp_reader(u, v)),
                    ("ll-hls", lambda v, u=ll_url: llhls_reader(http, u, v)),
                    ("whep", lambda v, s=name: whep_viewer(rig.base, s, v)),
                    ("mjpeg", lambda v, u=mjpeg: mjpeg_viewer(http, u, v)),
                ]
                for kind, start in made:
                    viewer = Viewer(kind, name)
                    viewers.append(viewer)
                    tasks.append(asyncio.create_task(guarded(viewer, start(viewer))))
            # Every stream starts its live call, fills its first LL-HLS parts, and the MJPEG
            # decoders warm up before anything is counted.
            await asyncio.sleep(args.settle + n * 0.5)

            async def mark() -> tuple[
                list[tuple[int, int]], float, float, float, tuple[int, int], float
            ]:
                sent = [await rig.doorbell(http, streams[name]) for name in names]
                for v in viewers:
                    v.marks.append(v.frames)
                return (
                    sent,
                    cpu_seconds(rig.pid),
                    cpu_seconds(rig.sim_pid),
                    time.process_time(),
                    machine_jiffies(),
                    time.monotonic(),
                )

            r0 = await rig.reconnects(http)
            s0, b0, m0, o0, j0, t0 = await mark()
            await asyncio.sleep(args.seconds)
            s1, b1, m1, o1, j1, t1 = await mark()
            reconnects = await rig.reconnects(http) - r0
            wall = t1 - t0
            rss = rss_mb(rig.pid)
            sent = {name: s1[i][0] - s0[i][0] for i, name in enumerate(names)}
            requests = sum(s1[i][1] - s0[i][1] for i in range(len(names)))
            worst_ratio, worst = 2.0, ""
            lines: list[str] = []
            for v in viewers:
                got = v.marks[1] - v.marks[0]
                ratio = got / sent[v.stream] if sent[v.stream] else 0.0
                if v.error is not None:
                    ratio = 0.0
                if ratio < worst_ratio:
                    worst_ratio = ratio
                    worst = f"{v.kind} on {v.stream}: {got}/{sent[v.stream]}" + (
                        f" ({v.error})" if v.error else ""
                    )
                if ratio < args.keep_up or args.verbose:
                    lines.append(f"    {v.kind:6} {v.stream}: {got}/{sent[v.stream]} frames" + (
                        f" ({v.error})" if v.error else ""
                    ))  # fmt: skip
            idle = (j1[0] - j0[0]) / max(1, j1[1] - j0[1]) * 100
            outcome = Outcome(
                n,
                (b1 - b0) / wall * 100,
                rss,
                (m1 - m0) / wall * 100,
                (o1 - o0) / wall * 100,
                idle,
                worst_ratio >= args.keep_up,
                worst,
            )
            sent_rate = sum(sent.values()) / len(sent) / wall
            say(
                f"N={n}: bridge CPU {outcome.bridge_cpu:.1f} % of one core, RSS "
                f"{rss:.0f} MB; {len(viewers)} viewers, "
                f"{'every viewer kept up' if outcome.kept_up else 'NOT every viewer kept up'} "
                f"(worst {worst}, {worst_ratio * 100:.0f} %); doorbells sent {sent_rate:.1f} fps "
                f"each; simulator CPU {outcome.sim_cpu:.0f} %, viewers (this script) "
                f"{outcome.own_cpu:.0f} %, machine idle {idle:.0f} % over {wall:.0f} s; "
                f"{reconnects} reconnects, {requests} keyframe requests at the doorbells"
            )
            # Every viewer of a doorbell short by the same count means the frames never reached
            # the bridge's fan-out: lost on the doorbell -> bridge path (RTP over loopback UDP
            # when the machine is saturated), not dropped for a slow viewer.
            for line in lines:
                say(line)
            return outcome
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        rig.close()


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--doorbells", default="1,5,10", help="comma-separated N to try")
    parser.add_argument("--seconds", type=float, default=30.0, help="window per N")
    parser.add_argument("--settle", type=float, default=6.0, help="seconds before counting")
    parser.add_argument("--quality", type=int, choices=range(4), default=0, help="image_quality")
    parser.add_argument("--fps", type=int, default=15, help="the doorbells' frame rate")
    parser.add_argument(
        "--keyframes",
        choices=KEYFRAME_MODES,
        default="on_request",
        help="the doorbells: keyframes only when asked (as libwebrtc) or every 2 s (a camera)",
    )
    parser.add_argument(
        "--keep-up", type=float, default=0.95, help="share of frames a viewer must receive"
    )
    parser.add_argument(
        "--no-search",
        dest="search",
        action="store_false",
        help="do not bisect between the largest N that held and the smallest that did not",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="print every viewer")
    args = parser.parse_args()
    try:
        counts = sorted({int(x) for x in args.doorbells.split(",") if x.strip()})
    except ValueError:
        parser.error(f"--doorbells must be comma-separated whole numbers, not {args.doorbells!r}")
    if not counts or counts[0] < 1:
        parser.error("--doorbells needs at least one N of 1 or more")
    if not 0 < args.keep_up <= 1:
        parser.error("--keep-up must be above 0 and at most 1")
    aiortc_patch.restrict_host_candidates(["127.0.0.1"])
    os.environ[KEYFRAMES_ENV] = args.keyframes  # each N's simulator inherits it
    width, height, bitrate = resolution_for(args.quality)
    print(
        f"doorbells encode {width}x{height} at {args.fps} fps, {bitrate // 1000} kbps "
        f"(image_quality {args.quality}), keyframes {args.keyframes}; their encoders run in the simulator on the same "
        f"{os.cpu_count()} cores; a viewer keeps up with >= {args.keep_up * 100:.0f} % of the "
        f"frames sent",
        flush=True,
    )

    def say(line: str) -> None:
        print(line, flush=True)

    results = {n: (await run_n(n, args, say)).kept_up for n in counts}
    # Between the largest N that held and the smallest that did not, bisect (--search).
    while args.search:
        held = [n for n, ok in results.items() if ok]
        failed = [n for n, ok in results.items() if not ok]
        low = max(held, default=0)
        high = min((n for n in failed if n > low), default=None)
        if high is None or high - low <= 1:
            break
        mid = (low + high) // 2 if low else max(1, high // 2)
        results[mid] = (await run_n(mid, args, say)).kept_up
    sustained = 0
    for n in sorted(results):
        if not results[n]:
            break
        sustained = n
    tried = ",".join(str(n) for n in sorted(results))
    if sustained:
        say(
            f"largest N sustained with every viewer keeping up: {sustained} doorbells "
            f"({sustained * 5} viewers; tried {tried})"
        )
    else:
        say(f"largest N sustained with every viewer keeping up: none (tried {tried})")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    asyncio.run(main())
