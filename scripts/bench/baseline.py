"""Stock-aiortc baseline against the bridge, side by side, on the same simulated doorbell.

The baseline is what a Python user would write instead of the bridge: the same cloud live call
and KVS signaling, then a plain ``RTCPeerConnection`` (aiortc decodes every frame), a
``MediaRelay`` fanning the decoded video out to two viewers, and a ``MediaRecorder`` writing HLS
(which re-encodes with libx264 and AAC). It runs in its own process (this script with
``--stock-worker``), then the bridge's ``serve`` process gets the same three outputs (two RTSP
readers, ffmpeg ``-c copy``, and one LL-HLS viewer), and both processes are measured the same
way from /proc. Doorbell: the simulator at 720p15, 2 Mbps (as outputs.py and ingest.py).

Prints, stock vs bridge, with the ratio:
- CPU per output stream (process CPU / 3 outputs), % of one core;
- time to first picture from a cold request (stock: before the live call to the first decoded
  frame; bridge: an RTSP client's connect on an idle stream to its first decoded picture);
- capture → picture latency on the burned-in clock (stock: decoded frames at a relay viewer;
  bridge: an RTSP client decoding each picture at its RTP marker), p50;
- RSS.

Then the issue's "must not regress" figures for the bridge, each against its reference with
OK / REGRESSED (a reference x 1.5 plus a small absolute slack counts as noise on a shared
2-core machine): ingest CPU and time to first frame (scripts/bench/ingest.py, run as is),
each further RTSP client, each further LL-HLS viewer and LL-HLS added latency p50 (outputs.py's
method, against the same ``serve`` process).

Run: .venv/bin/python scripts/bench/baseline.py [--seconds 20] [--skip-regress]
     [--keyframes on_request|gop]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import statistics
import struct
import sys
import tempfile
import time
from collections.abc import Awaitable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import av

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from common import KEYFRAME_MODES, KEYFRAMES_ENV  # noqa: E402
from outputs import (  # noqa: E402
    STREAM,
    Rig,
    baseline_latency,
    cpu_seconds,
    ffmpeg_rtsp_copy,
    hls_media_playlists,
    hls_viewer,
    rtsp_latency,
    running,
    stamp_latency_ms,
)

from bridge.media import aiortc_patch  # noqa: E402
from bridge.redact import Secret  # noqa: E402
from bridge.sim.cloud import API_PREFIX, DEFAULT_API_KEY  # noqa: E402
from bridge.skybell import SkyBellClient  # noqa: E402

OUTPUTS = 3  # two RTSP-like viewers and one HLS output, on both sides
# The figures (720p15, 2 Mbps), and how far above each a run may land before it counts
# as a regression rather than noise: (reference, factor, absolute slack, unit).
REFERENCE = {
    "ingest CPU": (4.2, 1.5, 1.0, "%"),
    "each further RTSP client": (0.21, 1.5, 0.15, "%"),
    "each further LL-HLS viewer": (0.07, 1.5, 0.15, "%"),
    "LL-HLS added latency p50": (161.0, 1.25, 30.0, "ms"),
    "time to first frame": (63.0, 1.5, 30.0, "ms"),
}


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


# -- the stock-aiortc side (its own process) ------------------------------------------------------


class StockConnection:
    """A live call, KVS signaling, and a stock ``RTCPeerConnection`` receiving from the doorbell."""

    def __init__(self, client: SkyBellClient, http: aiohttp.ClientSession, device_id: str) -> None:
        self.client, self.http, self.device_id = client, http, device_id

    async def open(self) -> None:
        """Start the call and negotiate; ``self.video``/``self.audio`` are the decoded tracks."""
        from aiortc import RTCPeerConnection, RTCSessionDescription
        from aiortc.sdp import candidate_from_sdp

        from bridge.kvs import KvsViewer, choose_signed_url

        call = await self.client.start_live_call(self.device_id)
        self.viewer = KvsViewer(self.http)
        signed = call.signed_wss.reveal() if call.signed_wss else None
        url = choose_signed_url(
            signed,
            call.wss_endpoint,
            call.channel_arn,
            call.client_id,
            call.region,
            call.credentials,
            datetime.now(UTC),
        )
        await self.viewer.connect(url)
        self.pc = RTCPeerConnection()
        video = self.pc.addTransceiver("video", direction="recvonly")
        audio = self.pc.addTransceiver("audio", direction="recvonly")
        await self.pc.setLocalDescription(await self.pc.createOffer())
        await self.viewer.send_offer(self.pc.localDescription.sdp)
        answer = await self.viewer.wait_answer(10)
        await self.pc.setRemoteDescription(RTCSessionDescription(answer.sdp, "answer"))
        for cand in answer.candidates:
            ice = candidate_from_sdp(cand.candidate.removeprefix("candidate:"))
            ice.sdpMid, ice.sdpMLineIndex = cand.sdp_mid, cand.sdp_mline_index
            await self.pc.addIceCandidate(ice)
        self.video, self.audio = video.receiver.track, audio.receiver.track

    async def close(self) -> None:
        """Close the peer and the signaling, and end the live call."""
        await self.pc.close()
        await self.viewer.close()
        with contextlib.suppress(Exception):
            await self.client.stop_live_call(self.device_id)


def emit(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


async def stock_worker(args: argparse.Namespace) -> None:
    """The baseline: TTFF runs, then the relay + recorder session until told to stop on stdin."""
    from aiortc.contrib.media import MediaRecorder, MediaRelay

    # Only so the peer gathers loopback candidates (the rule of this machine); frames are still
    # decoded by aiortc's own decoder (the bridge's patch decodes anything not in passthrough).
    aiortc_patch.restrict_host_candidates(["127.0.0.1"])
    async with aiohttp.ClientSession() as http:
        client = SkyBellClient(
            http, base_url=args.sim_url + API_PREFIX, api_key=Secret(DEFAULT_API_KEY)
        )
        ttff: list[float] = []
        for _ in range(args.ttff_runs):
            conn = StockConnection(client, http, args.device)
            t0 = time.monotonic()
            await conn.open()
            await asyncio.wait_for(conn.video.recv(), 20)
            ttff.append((time.monotonic() - t0) * 1000)
            await conn.close()
            await asyncio.sleep(1)
        emit(ttff_ms=ttff)

        conn = StockConnection(client, http, args.device)
        await conn.open()
        relay = MediaRelay()
        hls_dir = Path(args.hls_dir)
        recorder = MediaRecorder(
            str(hls_dir / "stream.m3u8"),
            format="hls",
            options={"hls_time": "1", "hls_list_size": "6", "hls_flags": "delete_segments"},
        )
        recorder.addTrack(relay.subscribe(conn.video))
        recorder.addTrack(relay.subscribe(conn.audio))
        await recorder.start()
        latencies: list[float] = []
        frames = [0, 0]

        async def watch(i: int) -> None:
            track = relay.subscribe(conn.video)
            while True:
                frame = await track.recv()
                frames[i] += 1
                # Reading the clock is the benchmark's cost: every 5th frame keeps it small.
                if i == 0 and frames[i] % 5 == 0:
                    value = stamp_latency_ms(frame.to_ndarray(format="gray"))
                    if value is not None:
                        latencies.append(value)

        tasks = [asyncio.create_task(watch(i)) for i in range(2)]
        await asyncio.sleep(3)
        emit(ready=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await recorder.stop()
        # libx264's default GOP (250 frames) sets the segment length, not hls_time.
        segments = await asyncio.to_thread(lambda: len(list(hls_dir.glob("*.ts"))))
        await conn.close()
        emit(latency_ms=latencies, frames=frames, hls_segments=segments)


async def run_stock(rig: Rig, device_id: str, seconds: float) -> dict[str, Any]:
    """Run the stock worker as its own process and measure it as the bridge is measured."""
    with tempfile.TemporaryDirectory() as hls_dir:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--stock-worker", "--sim-url", rig.sim_url,
            "--device", device_id, "--hls-dir", hls_dir,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        assert proc.stdout is not None
        assert proc.stdin is not None
        out: dict[str, Any] = {}
        try:
            while "ready" not in out:
                line = await asyncio.wait_for(proc.stdout.readline(), 120)
                if not line:
                    raise RuntimeError("the stock-aiortc worker died")
                out |= json.loads(line)
            c0, t0 = cpu_seconds(proc.pid), time.monotonic()
            await asyncio.sleep(seconds)
            out["cpu"] = (cpu_seconds(proc.pid) - c0) / (time.monotonic() - t0) * 100
            out["rss"] = rss_mb(proc.pid)
            proc.stdin.write(b"stop\n")
            await proc.stdin.drain()
            line = await asyncio.wait_for(proc.stdout.readline(), 30)
            out |= json.loads(line)
            await asyncio.wait_for(proc.wait(), 30)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    return out


# -- the bridge side ------------------------------------------------------------------------------


async def first_picture_ms(url: str) -> float:
    """Cold RTSP request (TCP connect) → first picture decoded at its RTP marker."""
    host, port = url.split("/")[2].split(":")
    t0 = time.monotonic()
    reader, writer = await asyncio.open_connection(host, int(port))
    session = ""
    try:
        for cseq, (method, target, header) in enumerate(
            (
                ("DESCRIBE", url, "Accept: application/sdp"),
                ("SETUP", url + "/trackID=0", "Transport: RTP/AVP/TCP;interleaved=0-1"),
                ("PLAY", url, ""),
            ),
            1,
        ):
            if method == "PLAY":
                header = f"Session: {session}"
            writer.write(f"{method} {target} RTSP/1.0\r\nCSeq: {cseq}\r\n{header}\r\n\r\n".encode())
            head = (await reader.readuntil(b"\r\n\r\n")).decode()
            fields = {
                k.strip().lower(): v.strip()
                for k, _, v in (ln.partition(":") for ln in head.split("\r\n")[1:] if ln)
            }
            await reader.readexactly(int(fields.get("content-length", "0")))
            session = fields.get("session", "").split(";")[0]
        decoder = av.CodecContext.create("h264", "r")
        nals: list[bytes] = []
        while True:
            magic, channel, size = struct.unpack("!cBH", await reader.readexactly(4))
            data = await reader.readexactly(size)
            if magic != b"$" or channel != 0:
                continue
            payload = data[12 + 4 * (data[0] & 0x0F) :]
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
            if data[1] & 0x80:
                au = b"".join(b"\x00\x00\x00\x01" + n for n in nals)
                nals = []
                if decoder.decode(av.Packet(au)):
                    return (time.monotonic() - t0) * 1000
    finally:
        writer.close()


def ratio(stock: float, bridge: float) -> str:
    return f"{stock / bridge:.1f}x" if bridge > 0 else "n/a"


def verdict(name: str, value: float) -> str:
    ref, factor, slack, unit = REFERENCE[name]
    limit = ref * factor + slack
    word = "OK" if value <= limit else "REGRESSED"
    plus = "+" if unit == "%" and name.startswith("each") else ""
    digits = 2 if unit == "%" else 0
    return (
        f"{name}: {plus}{value:.{digits}f} {unit} vs {plus}{ref:g} {unit} -> {word} "
        f"(noise band up to {limit:.{digits}f} {unit})"
    )


async def regress_from_ingest(seconds: float, keyframes: str) -> dict[str, float]:
    """Ingest CPU and time to first frame as scripts/bench/ingest.py measures them."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(HERE / "ingest.py"), "--mode", keyframes,
        "--seconds", str(seconds), "--starts", "10", "--rss-minutes", "0", "--joins", "2",
        "--streams", "2",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    text = (await proc.communicate())[0].decode()
    out: dict[str, float] = {}
    if m := re.search(r"^ingest CPU: ([\d.]+) %", text, re.M):
        out["ingest CPU"] = float(m.group(1))
    if m := re.search(r"^time to first frame: median (\d+) ms", text, re.M):
        out["time to first frame"] = float(m.group(1))
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="window per CPU figure")
    parser.add_argument("--ttff-runs", type=int, default=3, help="cold starts per side")
    parser.add_argument("--skip-regress", action="store_true", help="only stock vs bridge")
    parser.add_argument(
        "--keyframes",
        choices=KEYFRAME_MODES,
        default="on_request",
        help="the doorbell: keyframes only when asked (as libwebrtc) or every 2 s (a camera)",
    )
    parser.add_argument("--stock-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--sim-url", help=argparse.SUPPRESS)
    parser.add_argument("--device", help=argparse.SUPPRESS)
    parser.add_argument("--hls-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stock_worker:
        await stock_worker(args)
        return
    if args.seconds < 5 or args.ttff_runs < 1:
        parser.error("--seconds must be at least 5 and --ttff-runs at least 1")
    win = args.seconds
    aiortc_patch.restrict_host_candidates(["127.0.0.1"])
    os.environ[KEYFRAMES_ENV] = args.keyframes  # the simulator inherits it
    print("load average at start: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()), flush=True)
    print(f"doorbell keyframes: {args.keyframes}", flush=True)
    rig = Rig()
    rig.start()
    regress: dict[str, float] = {}
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as http:
            device_id = (await rig.json(http, "GET", f"api/streams?src={STREAM}"))["id"]
            print("stock aiortc: running (decode, MediaRelay x2, MediaRecorder HLS)", flush=True)
            stock = await run_stock(rig, device_id, win)

            print("bridge: running (2 RTSP readers, 1 LL-HLS viewer)", flush=True)
            ttff = []
            for _ in range(args.ttff_runs):
                await rig.wait_state(http, "idle", 30)
                ttff.append(await first_picture_ms(rig.rtsp))
            ll_url, _ = await hls_media_playlists(http, rig.base + f"api/stream.m3u8?src={STREAM}")
            clients: list[Awaitable[Any]] = [
                ffmpeg_rtsp_copy(rig.rtsp),
                ffmpeg_rtsp_copy(rig.rtsp),
                hls_viewer(http, ll_url, True),
            ]
            async with running(*clients):
                await asyncio.sleep(2)
                bridge_cpu = await rig.cpu_percent(win)
                bridge_rss = rss_mb(rig.pid)
                # A third RTSP client reads the clock after the CPU window, in the same session.
                lat = (await rtsp_latency(rig.rtsp, min(win, 15)))[30:]
            s_lat = statistics.median(stock["latency_ms"]) if stock["latency_ms"] else 0.0
            b_lat = statistics.median(lat) if lat else 0.0
            s_ttff, b_ttff = statistics.median(stock["ttff_ms"]), statistics.median(ttff)
            s_cpu, b_cpu = stock["cpu"] / OUTPUTS, bridge_cpu / OUTPUTS
            print(
                f"stock aiortc: {stock['cpu']:.1f} % of one core, relay viewers got "
                f"{stock['frames']} frames, {stock['hls_segments']} HLS segments on disk",
                flush=True,
            )
            rows = [
                ("CPU per output stream", f"{s_cpu:.1f} %", f"{b_cpu:.1f} %", ratio(s_cpu, b_cpu)),
                (
                    "time to first picture (cold)",
                    f"{s_ttff:.0f} ms",
                    f"{b_ttff:.0f} ms",
                    ratio(s_ttff, b_ttff),
                ),
                (
                    "capture -> picture latency p50",
                    f"{s_lat:.0f} ms",
                    f"{b_lat:.0f} ms",
                    ratio(s_lat, b_lat),
                ),
                ("RSS", f"{stock['rss']:.0f} MB", f"{bridge_rss:.0f} MB", ratio(stock["rss"], bridge_rss)),
            ]  # fmt: skip
            print(f"{'':32} {'stock aiortc':>13} {'bridge':>10} {'stock/bridge':>13}")
            for label, s, b, r in rows:
                print(f"{label:32} {s:>13} {b:>10} {r:>13}", flush=True)
            print(
                f"  (ttff n={len(ttff)} per side; latency n={len(stock['latency_ms'])} stock, "
                f"{len(lat)} bridge; the stock viewers get decoded frames, which a Python user "
                f"would still have to re-encode to serve RTSP: not counted)",
                flush=True,
            )
            if not args.skip_regress:
                await asyncio.sleep(6)  # every output's idle teardown
                regress |= await outputs_figures(rig, http, ll_url, win)
    finally:
        rig.close()
    if not args.skip_regress:
        regress |= await regress_from_ingest(win, args.keyframes)
        print("must not regress (720p15, 2 Mbps):")
        for name in REFERENCE:
            if name in regress:
                print(f"  {verdict(name, regress[name])}", flush=True)
            else:
                print(f"  {name}: not measured", flush=True)


async def outputs_figures(
    rig: Rig, http: aiohttp.ClientSession, ll_url: str, win: float
) -> dict[str, float]:
    """outputs.py's per-client costs and LL-HLS latency, against the same serve process."""
    await rig.json(http, "POST", f"api/streams/warm?src={STREAM}&seconds=3600")
    await rig.wait_state(http, "live", 30)
    await asyncio.sleep(3)
    ingest = await rig.cpu_percent(win)

    async def cpu_with(*clients: Awaitable[Any]) -> float:
        async with running(*clients):
            value = await rig.cpu_percent(win)
        await asyncio.sleep(7)  # each output's idle teardown before the next
        return value

    one_rtsp = await cpu_with(ffmpeg_rtsp_copy(rig.rtsp))
    ten_rtsp = await cpu_with(*(ffmpeg_rtsp_copy(rig.rtsp) for _ in range(10)))
    one_hls = await cpu_with(hls_viewer(http, ll_url, True))
    twenty_hls = await cpu_with(*(hls_viewer(http, ll_url, True) for _ in range(20)))
    base = statistics.median(await baseline_latency(rig, win))
    values: list[float] = []
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(hls_viewer(http, ll_url, True, values), win)
    print(
        f"serve, warm: ingest alone {ingest:.1f} %, 1 RTSP {one_rtsp:.1f} %, 10 RTSP "
        f"{ten_rtsp:.1f} %, 1 LL-HLS {one_hls:.1f} %, 20 LL-HLS {twenty_hls:.1f} %",
        flush=True,
    )
    out = {
        "each further RTSP client": (ten_rtsp - one_rtsp) / 9,
        "each further LL-HLS viewer": (twenty_hls - one_hls) / 19,
    }
    if values:
        out["LL-HLS added latency p50"] = statistics.median(values) - base
    return out


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    asyncio.run(main())
