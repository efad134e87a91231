"""Outputs benchmark: one simulated doorbell at 720p15, 2 Mbps, served by `skybell-bridge serve`.

Three processes, so each figure is the bridge's own: the simulator, the bridge, and this script
(which plays every client). Prints:
- the bridge's CPU as % of one core: ingest alone, then with 1 and 10 RTSP clients, 20 HLS
  viewers, 1 and 20 MJPEG viewers, and 3 WebRTC viewers;
- latency per output against the doorbell's burned-in capture clock (RTSP, WebRTC, MJPEG,
  LL-HLS, HLS, a publish target), and the same clock read straight off a direct ingest as the baseline, so
  "added" is what the bridge and the output's packaging cost on top;
- time from a frame.jpeg request to its response, with the stream cold and warm;
- with nginx-rtmp installed, the CPU per publish target (a push to RTMP) and the latency a
  viewer of the media server sees, read back from nginx.

Run: .venv/bin/python scripts/bench/outputs.py [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import re
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import av

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bridge.media import aiortc_patch  # noqa: E402
from bridge.media.hub import Hub  # noqa: E402
from bridge.media.live import open_live_call  # noqa: E402
from bridge.redact import Secret  # noqa: E402
from bridge.sim.cloud import API_PREFIX, DEFAULT_API_KEY  # noqa: E402
from bridge.sim.picture import read_stamp  # noqa: E402
from bridge.skybell import SkyBellClient  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")
STREAM = "front-door"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stat(pid: int | str) -> list[str]:
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its children: the bridge's publish muxers are child
    processes, live ones counted directly and ended ones through the parent's reaped total."""
    total = 0.0
    family = {pid}
    for entry in sorted(os.listdir("/proc"), key=lambda e: int(e) if e.isdigit() else 0):
        if not entry.isdigit():
            continue
        try:
            fields = _stat(entry)
        except OSError:
            continue  # ended meanwhile: counted in its parent's reaped total
        if int(entry) in family or int(fields[1]) in family:
            family.add(int(entry))
            total += int(fields[11]) + int(fields[12])
            if int(entry) == pid:
                total += int(fields[13]) + int(fields[14])
    return total / TICKS


def stamp_latency_ms(image: Any) -> float | None:
    """Now minus the capture time burned into a simulated-doorbell picture."""
    try:
        _, capture_ms = read_stamp(image)
    except ValueError:
        return None
    return time.time() * 1000 - capture_ms


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


class Rig:
    """The simulator and the bridge as subprocesses, and HTTP helpers against the bridge."""

    def __init__(self, **env: str) -> None:
        self.extra_env = env  # more SKYBELL_BRIDGE_* settings for the bridge
        self.sim_port, self.http_port, self.rtsp_port = free_port(), free_port(), free_port()
        self.sim_url = f"http://127.0.0.1:{self.sim_port}"
        self.base = f"http://127.0.0.1:{self.http_port}/"
        self.rtsp = f"rtsp://127.0.0.1:{self.rtsp_port}/{STREAM}"
        self.procs: list[subprocess.Popen[str]] = []

    def start(self) -> None:
        sim = subprocess.Popen(
            [sys.executable, "-m", "bridge", "sim", "--port", str(self.sim_port),
             "--quality", "1", "--fps", "15", "--bitrate", "2000000"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        self.procs.append(sim)
        assert sim.stdout is not None
        sim.stdout.readline()  # it prints once it listens
        env = {k: v for k, v in os.environ.items() if not k.startswith("SKYBELL_BRIDGE_")}
        env |= {
            "SKYBELL_BRIDGE_SKYBELL_API_URL": self.sim_url + API_PREFIX,
            "SKYBELL_BRIDGE_SKYBELL_API_KEY": DEFAULT_API_KEY,
            "SKYBELL_BRIDGE_SERVER_PORT": str(self.http_port),
            "SKYBELL_BRIDGE_SERVER_RTSP_PORT": str(self.rtsp_port),
            "SKYBELL_BRIDGE_STREAMS_ICE_HOST_ADDRESSES": "127.0.0.1",
            "SKYBELL_BRIDGE_WEBRTC_ICE_HOST_ADDRESSES": "127.0.0.1",  # viewers too
            "SKYBELL_BRIDGE_STREAMS_IDLE_TIMEOUT": "3",
            "SKYBELL_BRIDGE_HLS_IDLE_TIMEOUT": "5",
            "SKYBELL_BRIDGE_LOG_LEVEL": "warning",
            **self.extra_env,
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

    async def json(self, http: aiohttp.ClientSession, method: str, path: str) -> Any:
        async with http.request(method, self.base + path) as resp:
            return await resp.json(content_type=None)

    async def wait_state(self, http: aiohttp.ClientSession, state: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            body = await self.json(http, "GET", f"api/streams?src={STREAM}")
            if body["state"] == state:
                return
            await asyncio.sleep(0.1)
        raise TimeoutError(f"stream never became {state}")

    async def cpu_percent(self, seconds: float) -> float:
        c0, t0 = cpu_seconds(self.pid), time.monotonic()
        await asyncio.sleep(seconds)
        return (cpu_seconds(self.pid) - c0) / (time.monotonic() - t0) * 100


# -- clients ------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def running(*coros: Awaitable[Any]) -> AsyncIterator[None]:
    """Run client coroutines in the background for the body's duration."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        await asyncio.sleep(2.0)  # let them connect and settle before anything is measured
        for task in tasks:
            if task.done():
                task.result()  # a client that died early is a benchmark error
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def ffmpeg_rtsp_copy(url: str) -> None:
    """An NVR-like RTSP client: ffmpeg copying the stream to nowhere."""
    proc = await asyncio.create_subprocess_exec(
        "ffmpeg", "-nostdin", "-v", "error", "-rtsp_transport", "tcp", "-i", url,
        "-c", "copy", "-f", "null", "-",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


NGINX_CONF = """
load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;
daemon off;
master_process off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 64; }}
rtmp {{ server {{ listen 127.0.0.1:{port}; application live {{ live on; record off; }} }} }}
"""


@contextlib.contextmanager
def nginx_rtmp() -> Iterator[str | None]:
    """nginx with libnginx-mod-rtmp on a free loopback port: the base of its RTMP URLs (None
    when it is not installed)."""
    if not os.path.exists("/usr/lib/nginx/modules/ngx_rtmp_module.so"):
        yield None
        return
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        conf = Path(tmp) / "nginx.conf"
        conf.write_text(NGINX_CONF.format(tmp=tmp, port=port))
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        proc = subprocess.Popen(
            [nginx, "-e", f"{tmp}/error.log", "-p", tmp, "-c", str(conf)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                with socket.socket() as s, contextlib.suppress(OSError):
                    s.connect(("127.0.0.1", port))
                    break
                time.sleep(0.05)
            yield f"rtmp://127.0.0.1:{port}/live"
        finally:
            proc.terminate()
            proc.wait(10)


async def publish_target(http: aiohttp.ClientSession, rig: Rig, dst: str) -> None:
    """A push from the bridge to ``dst`` (go2rtc's ad-hoc API), until cancelled."""
    query = {"src": STREAM, "dst": dst}
    async with http.post(rig.base + "api/streams", params=query) as resp:
        assert resp.status == 200, await resp.text()
    try:
        await asyncio.Event().wait()
    finally:
        async with http.delete(rig.base + "api/streams", params=query) as resp:
            await resp.read()


def rtmp_latency(url: str, seconds: float) -> list[float]:
    """Capture-to-decode latency of the pictures a viewer of the media server gets."""
    out: list[float] = []
    options = {"fflags": "nobuffer", "rw_timeout": "10000000"}
    with av.open(url, options=options) as container:
        end = time.monotonic() + seconds
        for frame in container.decode(video=0):
            value = stamp_latency_ms(frame.to_ndarray(format="gray"))
            if value is not None:
                out.append(value)
            if time.monotonic() >= end:
                break
    return out


async def mjpeg_reader(
    http: aiohttp.ClientSession, url: str, on_jpeg: Callable[[bytes], None] | None = None
) -> None:
    """Read a multipart MJPEG stream, handing each JPEG to ``on_jpeg``."""
    async with http.get(url) as resp:
        resp.raise_for_status()
        boundary = resp.content_type and resp.headers["Content-Type"].split("boundary=")[1]
        reader = aiohttp.MultipartReader(
            {"Content-Type": f"multipart/x-mixed-replace; boundary={boundary}"}, resp.content
        )
        while True:
            part = await reader.next()
            if part is None:
                return
            assert isinstance(part, aiohttp.BodyPartReader)
            data = await part.read()
            if on_jpeg is not None:
                on_jpeg(bytes(data))


def decode_jpeg(data: bytes) -> Any:
    with av.open(io.BytesIO(data), format="mjpeg") as container:
        for frame in container.decode(video=0):
            return frame.to_ndarray(format="gray")
    return None


async def rtsp_latency(url: str, seconds: float) -> list[float]:
    """A minimal RTSP client (TCP interleaved) that decodes each picture the moment its RTP
    marker arrives, as an NVR's depacketizer can; FFmpeg's own RTSP input holds every picture
    until the next one starts (its parser), which is the client's latency, not the bridge's."""
    host, port = url.split("/")[2].split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    cseq = 0

    async def request(method: str, target: str, *headers: str) -> dict[str, str]:
        nonlocal cseq
        cseq += 1
        lines = [f"{method} {target} RTSP/1.0", f"CSeq: {cseq}", *headers, "", ""]
        writer.write("\r\n".join(lines).encode())
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        fields = dict(
            (k.strip().lower(), v.strip())
            for k, _, v in (ln.partition(":") for ln in head.split("\r\n")[1:] if ln)
        )
        await reader.readexactly(int(fields.get("content-length", "0")))
        return fields

    out: list[float] = []
    try:
        await request("DESCRIBE", url, "Accept: application/sdp")
        setup = await request("SETUP", url + "/trackID=0", "Transport: RTP/AVP/TCP;interleaved=0-1")
        session = setup["session"].split(";")[0]
        await request("PLAY", url, f"Session: {session}")
        decoder = av.CodecContext.create("h264", "r")
        decoder.thread_type = "SLICE"
        nals: list[bytes] = []
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            magic, channel, size = struct.unpack("!cBH", await reader.readexactly(4))
            data = await reader.readexactly(size)
            if magic != b"$" or channel != 0:
                continue
            csrc = data[0] & 0x0F
            payload, marker = data[12 + 4 * csrc :], data[1] & 0x80
            kind = payload[0] & 0x1F
            if kind == 28:  # FU-A
                if payload[1] & 0x80:
                    nals.append(bytes([payload[0] & 0xE0 | payload[1] & 0x1F]))
                nals[-1] += payload[2:]
            elif kind == 24:  # STAP-A
                i = 1
                while i + 2 <= len(payload):
                    (n,) = struct.unpack("!H", payload[i : i + 2])
                    nals.append(payload[i + 2 : i + 2 + n])
                    i += 2 + n
            else:
                nals.append(payload)
            if marker:
                au = b"".join(b"\x00\x00\x00\x01" + n for n in nals)
                nals = []
                for frame in decoder.decode(av.Packet(au)):
                    value = stamp_latency_ms(frame.to_ndarray(format="gray"))
                    if value is not None:
                        out.append(value)
    finally:
        writer.close()
    return out


async def webrtc_viewer(
    base: str, seconds: float | None, latencies: list[float] | None, decode: bool
) -> None:
    """A browser-like aiortc peer; decodes (and reads stamps) only when asked."""
    from aiortc import RTCPeerConnection, RTCSessionDescription

    pc = RTCPeerConnection()
    video = pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")
    # aiortc's own receiver holds each frame until the next one starts (one frame interval of
    # the client's latency); the passthrough receiver releases on the RTP marker, as a browser
    # does, and the picture is decoded here without frame threading.
    aiortc_patch.enable_passthrough(video.receiver)
    decoder = av.CodecContext.create("h264", "r")
    decoder.thread_type = "SLICE"
    await pc.setLocalDescription(await pc.createOffer())
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                base + f"api/webrtc?src={STREAM}",
                data=pc.localDescription.sdp,
                headers={"Content-Type": "application/sdp"},
            ) as resp,
        ):
            resp.raise_for_status()
            answer = await resp.text()
        await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        end = None if seconds is None else time.monotonic() + seconds
        track = video.receiver.track
        while end is None or time.monotonic() < end:
            packet = await asyncio.wait_for(track.recv(), 10)
            if not decode or latencies is None:
                continue
            for frame in decoder.decode(av.Packet(packet.data)):  # type: ignore[attr-defined]
                value = stamp_latency_ms(frame.to_ndarray(format="gray"))
                if value is not None:
                    latencies.append(value)
    finally:
        await pc.close()


async def baseline_latency(rig: Rig, seconds: float) -> list[float]:
    """Capture → packet at a direct ingest of the other doorbell: what any output starts from."""
    out: list[float] = []
    async with aiohttp.ClientSession() as http:
        client = SkyBellClient(
            http, base_url=rig.sim_url + API_PREFIX, api_key=Secret(DEFAULT_API_KEY)
        )
        other = next(d for d in await client.devices() if d.slug != STREAM)

        async def connect() -> Any:
            return await open_live_call(client, http, other.id)

        stream = Hub(idle_timeout=0.1).add(other.id, other.slug, connect)
        decoder = av.CodecContext.create("h264", "r")
        with stream.subscribe("bench") as sub:
            end = None
            async for packet in sub:
                if packet.kind != "video":
                    continue
                end = end or time.monotonic() + seconds
                for frame in decoder.decode(av.Packet(packet.data)):
                    value = stamp_latency_ms(frame.to_ndarray(format="gray"))
                    if value is not None:
                        out.append(value)
                if time.monotonic() > end:
                    break
        await stream.stop()
    return out


# -- HLS ----------------------------------------------------------------------------------------

_PART = re.compile(r'#EXT-X-PART:.*?URI="([^"]+)"')


async def hls_viewer(
    http: aiohttp.ClientSession,
    playlist_url: str,
    low_latency: bool,
    latencies: list[float] | None = None,
) -> None:
    """Follow a live playlist like a player: LL-HLS by blocking reload and parts, or plain HLS
    by polling and fetching whole segments. Decodes (reading stamps) only when ``latencies``
    is given."""
    seen: set[str] = set()
    init: bytes | None = None
    decoder = av.CodecContext.create("h264", "r") if latencies is not None else None
    query = ""
    while True:
        async with http.get(playlist_url + query) as resp:
            resp.raise_for_status()
            text = await resp.text()
        base = playlist_url.split("?")[0].rsplit("/", 1)[0] + "/"
        if init is None:
            m = re.search(r'#EXT-X-MAP:URI="([^"]+)"', text)
            if m:
                async with http.get(_join(base, m.group(1))) as resp:
                    init = await resp.read()
        if low_latency:
            uris = _PART.findall(text)
        else:
            uris = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
        fresh = [u for u in uris if u not in seen]
        if not seen:
            fresh = fresh[-1:]  # join at the live edge, as players do
            seen.update(uris)
        for uri in fresh:
            seen.add(uri)
            async with http.get(_join(base, uri)) as resp:
                data = await resp.read()
            if decoder is not None and latencies is not None and init is not None:
                arrived = time.time() * 1000
                for value in _stamps_in(init + data, arrived):
                    latencies.append(value)
        if low_latency:
            msn, part = _next_part(text)
            sep = "&" if "?" in playlist_url else "?"
            query = f"{sep}_HLS_msn={msn}&_HLS_part={part}"
        else:
            target = re.search(r"#EXT-X-TARGETDURATION:(\d+)", text)
            await asyncio.sleep(int(target.group(1)) / 2 if target else 1.0)


def _join(base: str, uri: str) -> str:
    if uri.startswith("http"):
        return uri
    if uri.startswith("/"):
        return base.split("/api/")[0] + uri
    return base + uri


def _next_part(playlist: str) -> tuple[int, int]:
    """The (msn, part) just after the last part listed."""
    msn = int(re.search(r"#EXT-X-MEDIA-SEQUENCE:(\d+)", playlist).group(1))  # type: ignore[union-attr]
    segments = 0
    parts_in_current = 0
    for line in playlist.splitlines():
        if line.startswith("#EXT-X-PART:"):
            parts_in_current += 1
        elif line and not line.startswith("#"):
            segments += 1
            parts_in_current = 0
    return msn + segments, parts_in_current


def _stamps_in(fmp4: bytes, arrived_ms: float) -> list[float]:
    """Latency of each picture in an fMP4 fragment: arrival minus its burned-in capture time."""
    out = []
    try:
        with av.open(io.BytesIO(fmp4), format="mp4") as container:
            for frame in container.decode(video=0):
                with contextlib.suppress(ValueError):
                    _, capture_ms = read_stamp(frame.to_ndarray(format="gray"))
                    out.append(arrived_ms - capture_ms)
    except av.error.FFmpegError:
        pass
    return out


# -- the run ------------------------------------------------------------------------------------


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="window per CPU figure")
    args = parser.parse_args()
    win = args.seconds
    aiortc_patch.restrict_host_candidates(["127.0.0.1"])
    rig = Rig()
    rig.start()
    results: list[str] = []
    # Publish targets need a real receiver: nginx-rtmp when installed (scripts/bootstrap --test).
    stack = contextlib.ExitStack()
    rtmp_base = stack.enter_context(nginx_rtmp())

    def report(line: str) -> None:
        print(line, flush=True)
        results.append(line)

    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as http:
            hls_url = rig.base + f"api/stream.m3u8?src={STREAM}"
            ll_url, plain_url = await hls_media_playlists(http, hls_url)
            mjpeg_url = rig.base + f"api/stream.mjpeg?src={STREAM}&fps=15"  # the target's rate

            # frame.jpeg, cold: nothing is running.
            t0 = time.monotonic()
            async with http.get(rig.base + f"api/frame.jpeg?src={STREAM}") as resp:
                await resp.read()
                cold_source = resp.headers.get("X-Snapshot-Source", "?")
            cold = time.monotonic() - t0

            await rig.json(http, "POST", f"api/streams/warm?src={STREAM}&seconds=3600")
            await rig.wait_state(http, "live", 30)
            await asyncio.sleep(3)
            warm_times = []
            for _ in range(10):
                await asyncio.sleep(0.5)
                t0 = time.monotonic()
                async with http.get(rig.base + f"api/frame.jpeg?src={STREAM}") as resp:
                    await resp.read()
                warm_times.append(time.monotonic() - t0)
            await asyncio.sleep(4)  # let the snapshot decoder go idle again

            ingest = await rig.cpu_percent(win)
            report(f"CPU, ingest alone: {ingest:.1f} % of one core")

            async def cpu_with(label: str, *clients: Awaitable[Any], per: int = 0) -> float:
                async with running(*clients):
                    value = await rig.cpu_percent(win)
                extra = f" ({(value - ingest) / per:.2f} % per client above ingest)" if per else ""
                report(f"CPU, {label}: {value:.1f} %{extra}")
                await asyncio.sleep(7)  # each output's idle teardown before the next
                return value

            one_rtsp = await cpu_with("1 RTSP client", ffmpeg_rtsp_copy(rig.rtsp), per=1)
            ten_rtsp = await cpu_with(
                "10 RTSP clients", *(ffmpeg_rtsp_copy(rig.rtsp) for _ in range(10)), per=10
            )
            # The first client also starts the stream's one AAC encoder; the next nine show
            # what each further client costs.
            report(f"  RTSP cost per further client: {(ten_rtsp - one_rtsp) / 9:.2f} %")
            one_hls = await cpu_with("1 LL-HLS viewer", hls_viewer(http, ll_url, True), per=1)
            twenty_hls = await cpu_with(
                "20 LL-HLS viewers", *(hls_viewer(http, ll_url, True) for _ in range(20)), per=20
            )
            report(
                f"  LL-HLS cost per further viewer (HTTP serving): {(twenty_hls - one_hls) / 19:.2f} %"
            )
            await cpu_with("1 MJPEG viewer", mjpeg_reader(http, mjpeg_url), per=1)
            await cpu_with(
                "20 MJPEG viewers", *(mjpeg_reader(http, mjpeg_url) for _ in range(20)), per=20
            )
            await cpu_with(
                "3 WebRTC viewers",
                *(webrtc_viewer(rig.base, None, None, decode=False) for _ in range(3)),
                per=3,
            )

            if rtmp_base is not None:
                one_push = await cpu_with(
                    "1 publish target (RTMP to nginx)",
                    publish_target(http, rig, f"{rtmp_base}/cpu0"),
                    per=1,
                )
                five_push = await cpu_with(
                    "5 publish targets (RTMP to nginx)",
                    *(publish_target(http, rig, f"{rtmp_base}/cpu{i}") for i in range(5)),
                    per=5,
                )
                # Each target has its own muxer, thread and AAC encoder (nothing is shared).
                report(f"  publish cost per further target: {(five_push - one_push) / 4:.2f} %")

            # Latency, one output at a time so they do not disturb one another.
            base_lat = await baseline_latency(rig, win)
            b50 = statistics.median(base_lat)
            report(
                f"latency baseline (capture -> direct ingest, incl. simulator encode): "
                f"p50 {b50:.0f} ms"
            )

            def lat(label: str, values: list[float], skip: int = 30) -> None:
                # A joining RTSP/WebRTC/MJPEG client is first handed the cached GOP (a picture
                # at once, up to a GOP old): that burst is a feature, not latency, so its first
                # 2 s are left out. HLS players join at the live edge and keep everything.
                values = values[skip:]
                if not values:
                    report(f"latency {label}: no pictures read")
                    return
                p50 = statistics.median(values)
                report(
                    f"latency {label}: p50 {p50:.0f} ms, p95 {pct(values, 0.95):.0f} ms "
                    f"(added p50 {p50 - b50:.0f} ms, n={len(values)})"
                )

            lat("RTSP", await rtsp_latency(rig.rtsp, win))
            await asyncio.sleep(4)
            rtc: list[float] = []
            await webrtc_viewer(rig.base, win, rtc, decode=True)
            lat("WebRTC", rtc)
            await asyncio.sleep(4)
            mj: list[float] = []

            def on_jpeg(data: bytes) -> None:
                arrived = time.time() * 1000
                image = decode_jpeg(data)
                if image is not None:
                    with contextlib.suppress(ValueError):
                        mj.append(arrived - read_stamp(image)[1])

            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(mjpeg_reader(http, mjpeg_url, on_jpeg), win)
            lat("MJPEG", mj)
            if rtmp_base is not None:
                dst = f"{rtmp_base}/latency"
                async with running(publish_target(http, rig, dst)):
                    values = await asyncio.to_thread(rtmp_latency, dst, win)
                lat("publish (RTMP via nginx, read back)", values)
                await asyncio.sleep(4)
            for label, url, low in (("LL-HLS", ll_url, True), ("HLS", plain_url, False)):
                values: list[float] = []
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(hls_viewer(http, url, low, values), win)
                lat(label, values, skip=0)

            report(
                f"frame.jpeg: cold {cold * 1000:.0f} ms (source {cold_source}), warm median "
                f"{statistics.median(warm_times) * 1000:.0f} ms (max {max(warm_times) * 1000:.0f} ms)"
            )
    finally:
        rig.close()
        stack.close()


async def hls_media_playlists(http: aiohttp.ClientSession, url: str) -> tuple[str, str]:
    """The LL-HLS and plain HLS media playlist URLs behind the go2rtc-style entry point."""
    async with http.get(url) as resp:
        text = await resp.text()
    base = url.split("?")[0].rsplit("/", 1)[0] + "/"
    if "#EXT-X-STREAM-INF" in text:
        uri = next(ln for ln in text.splitlines() if ln and not ln.startswith("#"))
        ll = _join(base, uri)
    else:
        ll = url
    sep = "&" if "?" in ll else "?"
    return ll, ll + f"{sep}ll=0"


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    asyncio.run(main())
