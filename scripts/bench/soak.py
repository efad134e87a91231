"""Soak: `serve` against the simulated doorbell for N minutes, with viewers on and faults rotating.

Three kinds of process: the simulator, the bridge, and this script, which plays every consumer:
an ffmpeg RTSP recorder (`-c copy` to fragmented MP4, as Frigate records), a light RTSP frame
reader (arrival time of each picture, for outages), an LL-HLS reader, an MJPEG viewer, a WHEP
viewer, and a doorbell press every 2 minutes (each records a clip). Every few minutes one fault
from FAULTS is injected through the simulator's control routes (/_sim/...).

Prints as it goes and at the end: the bridge's RSS, open descriptors and threads at 1/60, 10/60,
30/60 and 60/60 of the run (minutes 1, 10, 30, 60 of an hour) with the RSS slope after warm-up;
each fault's outage at the RTSP reader with p95; the recording's span, frames, largest gap and
backwards timestamps; each clip's playability and pre-roll against the burned-in clock; events
lost. A consumer that had to reconnect, a backwards timestamp, an unplayable or missing clip or
a lost event is a failure named with its time, and the exit status is 1. The last line is
``SOAK-SUMMARY {json}`` for tests/test_soak.py.

Run: .venv/bin/python scripts/bench/soak.py [--minutes 60] [--keyframes on_request|gop]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    KEYFRAME_MODES,
    free_port,
    open_fds,
    rss_by_kind,
    rss_mb,
    set_extra_ice,
    start_serve,
    start_sim,
    start_turn,
    stop,
    threads,
    turn_ice,
)
from outputs import hls_media_playlists, hls_viewer, mjpeg_reader
from soak_report import heap_text, kinds_text, report

from bridge.media import aiortc_patch

DEVICE = "Front Door"
STREAM = "front-door"
PRESS_EVERY = 120.0
CLIP_SETTLE = 25.0  # a press needs its post-roll (10 s) and a moment to be indexed


class Soak:
    """The run's state: processes, URLs, the timeline of failures and figures."""

    def __init__(self, args: argparse.Namespace, folder: Path) -> None:
        self.args = args
        self.folder = folder
        self.duration = args.minutes * 60.0
        self.sim_port, self.http_port, self.rtsp_port = free_port(), free_port(), free_port()
        self.udp_port = free_port()
        self.sim = f"http://127.0.0.1:{self.sim_port}"
        self.base = f"http://127.0.0.1:{self.http_port}/"
        self.rtsp = f"rtsp://127.0.0.1:{self.rtsp_port}/{STREAM}"
        self.procs: list[subprocess.Popen[str]] = []
        self.t0 = time.monotonic()
        self.wall0 = time.time()
        self.failures: list[str] = []
        self.frames: list[float] = []  # RTSP picture arrivals (monotonic)
        self.faults: list[tuple[str, float]] = []
        self.presses: list[float] = []  # wall time of each press
        self.counts = {"hls_parts": 0, "hls_503_retries": 0, "mjpeg_jpegs": 0, "whep_frames": 0}
        self.reconnects: dict[str, int] = {}
        self.recordings: list[Path] = []
        # (minute, RSS MB, fds, threads, asyncio tasks, C heap in use MB, C heap free MB,
        #  RSS MB by kind of mapping)
        self.samples: list[
            tuple[float, float, int, int, int, float | None, float | None, dict[str, float]]
        ] = []
        self.device_id = ""
        self.serve_pid = 0

    def now(self) -> float:
        return time.monotonic() - self.t0

    def stamp(self) -> str:
        t = self.now()
        return f"{int(t // 60):02d}:{t % 60:04.1f}"

    def say(self, text: str) -> None:
        print(f"[{self.stamp()}] {text}", flush=True)

    def fail(self, text: str) -> None:
        self.failures.append(f"{self.stamp()} {text}")
        self.say(f"FAILURE: {text}")

    async def sim_post(self, http: aiohttp.ClientSession, path: str, body: Any = None) -> Any:
        async with http.post(self.sim + path, json=body) as resp:
            data = await resp.json(content_type=None)
            if resp.status >= 400:
                raise RuntimeError(f"simulator {path}: {resp.status} {data}")
            return data

    async def api(self, http: aiohttp.ClientSession, path: str) -> Any:
        async with http.get(self.base + path) as resp:
            resp.raise_for_status()
            return await resp.json(content_type=None)


# -- consumers ----------------------------------------------------------------------------------


async def keep(soak: Soak, name: str, run: Callable[[], Awaitable[None]]) -> None:
    """Run a consumer for the whole soak; its ending or failing is a reconnect, a failure."""
    while True:
        try:
            await run()
            why = "its stream ended"
        except asyncio.CancelledError:
            raise
        except Exception as err:
            why = f"{type(err).__name__}: {err}"
        soak.reconnects[name] = soak.reconnects.get(name, 0) + 1
        soak.fail(f"{name} had to reconnect ({why})")
        await asyncio.sleep(1)


async def rtsp_recorder(soak: Soak) -> None:
    """ffmpeg copying RTSP to fragmented MP4 (readable even if killed); must never exit."""
    n = soak.reconnects.get("rtsp recorder", 0)
    out = soak.folder / f"recording-{n}.mp4"
    log = open(soak.folder / f"recorder-{n}.log", "w")  # noqa: SIM115, ASYNC230 - lives with ffmpeg
    proc = await asyncio.create_subprocess_exec(
        "ffmpeg", "-nostdin", "-v", "warning", "-rtsp_transport", "tcp", "-i", soak.rtsp,
        "-c", "copy", "-f", "mp4", "-movflags", "+frag_keyframe+empty_moov+default_base_moof",
        str(out), stdout=asyncio.subprocess.DEVNULL, stderr=log,
    )  # fmt: skip
    soak.recordings.append(out)
    try:
        rc = await proc.wait()
        raise RuntimeError(f"ffmpeg exited with {rc}")
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)  # let it write its last fragment
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        log.close()


async def rtsp_frames(soak: Soak) -> None:
    """A minimal RTSP client (TCP interleaved) noting when each picture's last packet arrives."""
    reader, writer = await asyncio.open_connection("127.0.0.1", soak.rtsp_port)
    cseq = 0

    async def request(method: str, target: str, *headers: str) -> dict[str, str]:
        nonlocal cseq
        cseq += 1
        lines = [f"{method} {target} RTSP/1.0", f"CSeq: {cseq}", *headers, "", ""]
        writer.write("\r\n".join(lines).encode())
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        if " 200 " not in head.split("\r\n")[0] + " ":
            raise RuntimeError(f"{method}: {head.splitlines()[0]}")
        fields = {
            k.strip().lower(): v.strip()
            for k, _, v in (ln.partition(":") for ln in head.split("\r\n")[1:] if ln)
        }
        await reader.readexactly(int(fields.get("content-length", "0")))
        return fields

    try:
        await request("DESCRIBE", soak.rtsp, "Accept: application/sdp")
        setup = await request(
            "SETUP", soak.rtsp + "/trackID=0", "Transport: RTP/AVP/TCP;interleaved=0-1"
        )
        await request("PLAY", soak.rtsp, f"Session: {setup['session'].split(';')[0]}")
        while True:
            magic, channel, size = struct.unpack("!cBH", await reader.readexactly(4))
            data = await reader.readexactly(size)
            if magic == b"$" and channel == 0 and data[1] & 0x80:  # video, RTP marker
                soak.frames.append(time.monotonic())
    finally:
        writer.close()


async def whep_viewer(soak: Soak) -> None:
    """An aiortc WHEP viewer counting pictures (passthrough: no decoding)."""
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
                soak.base + f"api/webrtc?src={STREAM}",
                data=pc.localDescription.sdp,
                headers={"Content-Type": "application/sdp"},
            ) as resp,
        ):
            resp.raise_for_status()
            answer = await resp.text()
        await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        while True:
            # Longer than any outage the faults cause: a silent peer is noticed by the bridge's
            # media timeout, then it reconnects; the viewer's session must survive that.
            await asyncio.wait_for(video.receiver.track.recv(), 60)
            soak.counts["whep_frames"] += 1
    finally:
        await pc.close()


async def mjpeg_viewer(soak: Soak, http: aiohttp.ClientSession) -> None:
    def count(_data: bytes) -> None:
        soak.counts["mjpeg_jpegs"] += 1

    await mjpeg_reader(http, soak.base + f"api/stream.mjpeg?src={STREAM}", count)


async def hls_reader(soak: Soak, http: aiohttp.ClientSession, url: str) -> None:
    """outputs.hls_viewer, counting the parts it fetches (its fetches go through ``http``)."""

    async def on_request(_s: Any, _ctx: Any, params: aiohttp.TraceRequestEndParams) -> None:
        if "/part-" in params.url.path:
            soak.counts["hls_parts"] += 1

    trace = aiohttp.TraceConfig()
    trace.on_request_end.append(on_request)
    async with aiohttp.ClientSession(
        trace_configs=[trace], timeout=aiohttp.ClientTimeout(total=None, sock_read=60)
    ) as own:
        while True:
            try:
                await hls_viewer(own, url, True)
            except aiohttp.ClientResponseError as err:
                # A blocking reload that the next part does not answer within three target
                # durations gets 503 (RFC 8216bis 6.2.5.2), as during an outage; players retry
                # the playlist, and so does this reader (counted, not a reconnect).
                if err.status != 503:
                    raise
                soak.counts["hls_503_retries"] += 1
                await asyncio.sleep(0.5)


# -- faults -------------------------------------------------------------------------------------


async def _media(soak: Soak, http: aiohttp.ClientSession, **changes: Any) -> None:
    await soak.sim_post(http, f"/_sim/doorbells/{soak.device_id}/media", changes)


async def _fault(soak: Soak, http: aiohttp.ClientSession, name: str) -> None:
    await soak.sim_post(http, f"/_sim/doorbells/{soak.device_id}/fault", {"fault": name})


async def _cloud(soak: Soak, http: aiohttp.ClientSession, **faults: Any) -> None:
    await soak.sim_post(http, "/_sim/faults", faults)


async def f_peer_closes(soak: Soak, http: aiohttp.ClientSession, hold: float) -> None:
    await _fault(soak, http, "drop")


async def f_vanishes(soak: Soak, http: aiohttp.ClientSession, hold: float) -> None:
    await _fault(soak, http, "vanish")


async def _armed(soak: Soak, http: aiohttp.ClientSession, name: str) -> None:
    # Signaling closes once media flows, so a signaling fault needs a reconnect to be seen: arm
    # it for the next offer, then drop the peer.
    await _fault(soak, http, name)
    await _fault(soak, http, "drop")


async def f_go_away(soak: Soak, http: aiohttp.ClientSession, hold: float) -> None:
    await _armed(soak, http, "go_away")


async def f_reconnect_ice(soak: Soak, http: aiohttp.ClientSession, hold: float) -> None:
    await _armed(soak, http, "reconnect_ice")


async def f_junk(soak: Soak, http: aiohttp.ClientSession, hold: float) -> None:
    await _armed(soak, http, "junk")


async def f_credentials(soak: Soak, http: aiohttp.ClientSession, hold: float) -> None:
    await _armed(soak, http, "expire_credentials")


async def f_turn_only(soak: Soak, http: aiohttp.ClientSession, hold: float) -> None:
    # The doorbell gathers relay candidates only, so the reconnect after the drop (and any
    # other while it lasts) must go through the TURN server the live call names.
    await _media(soak, http, relay_only=True)
    await _fault(soak, http, "drop")
    await asyncio.sleep(hold)
    await _media(soak, http, relay_only=False)


async def f_599_500(soak: Soak, http: aiohttp.ClientSession, hold: float) -> None:
    # The next live call misses the doorbell (599; the client retries once), the retry meets a
    # failing cloud (500), and the call after that works.
    await _cloud(soak, http, live_call_statuses=[599, 500])
    await _fault(soak, http, "drop")


async def f_loss_2(soak: Soak, http: aiohttp.ClientSession, hold: float) -> None:
    await _media(soak, http, loss_percent=2.0)
    await asyncio.sleep(min(60.0, hold))
    await _media(soak, http, loss_percent=0.0)


async def f_loss_30(soak: Soak, http: aiohttp.ClientSession, hold: float) -> None:
    await _media(soak, http, loss_percent=30.0)
    await asyncio.sleep(3)
    await _media(soak, http, loss_percent=0.0)


async def f_resolution(soak: Soak, http: aiohttp.ClientSession, hold: float) -> None:
    await _media(soak, http, resolution=[640, 360])
    await asyncio.sleep(hold / 2)
    await _media(soak, http, resolution=[854, 480])


Fault = Callable[[Soak, aiohttp.ClientSession, float], Awaitable[None]]
# In the order.
FAULTS: list[tuple[str, Fault, bool]] = [  # (name, action, expect an outage)
    ("peer closes", f_peer_closes, True),
    ("doorbell vanishes", f_vanishes, True),
    ("GO_AWAY before media", f_go_away, True),
    ("RECONNECT_ICE_SERVER", f_reconnect_ice, True),
    ("live call 599 then 500", f_599_500, True),
    ("2% RTP loss", f_loss_2, False),
    ("30% loss burst", f_loss_30, False),
    ("TURN-only paths", f_turn_only, True),
    ("signaling junk", f_junk, True),
    ("AWS credentials expire", f_credentials, True),
    ("resolution change", f_resolution, False),
]


async def run_faults(
    soak: Soak, http: aiohttp.ClientSession, every: float, faults: list[tuple[str, Fault, bool]]
) -> None:
    soak.say(f"faults every {every:.0f} s, rotating: " + ", ".join(f[0] for f in faults))
    i = 0
    await asyncio.sleep(every)
    while soak.now() + every / 2 <= soak.duration:
        name, action, _ = faults[i % len(faults)]
        soak.say(f"fault: {name}")
        soak.faults.append((name, time.monotonic()))
        try:
            await action(soak, http, every * 0.6)
        except Exception as err:
            soak.fail(f"could not inject {name!r}: {err}")
        i += 1
        await asyncio.sleep(max(0.0, soak.faults[-1][1] + every - time.monotonic()))


async def run_presses(soak: Soak, http: aiohttp.ClientSession) -> None:
    await asyncio.sleep(20)  # the stream is up: the first clip has its pre-roll
    while soak.now() + CLIP_SETTLE <= soak.duration:
        began = time.monotonic()
        soak.presses.append(time.time())
        await soak.sim_post(
            http, f"/_sim/press?device={DEVICE}&udp=127.0.0.1:{soak.udp_port}".replace(" ", "%20")
        )
        soak.say(f"press {len(soak.presses)}")
        await asyncio.sleep(max(0.0, began + PRESS_EVERY - time.monotonic()))


async def sample(soak: Soak, http: aiohttp.ClientSession) -> None:
    """The bridge's RSS, descriptors, threads, asyncio tasks and C heap (malloc's in-use and
    free bytes: a leak grows the first, glibc fragmentation the second) every 10 s; printed at
    the checkpoints."""
    marks = [soak.duration * f for f in (1 / 60, 10 / 60, 30 / 60, 1.0)]
    while True:
        pid = soak.serve_pid
        health = await soak.api(http, "api/health")
        heap = health.get("heap")  # None where the bridge's C library is not glibc
        in_use, free = (heap["in_use"] / 1e6, heap["free"] / 1e6) if heap else (None, None)
        row = (soak.now() / 60, rss_mb(pid), open_fds(pid), threads(pid), int(health["tasks"]),
               in_use, free, rss_by_kind(pid))  # fmt: skip
        soak.samples.append(row)
        while marks and soak.now() >= marks[0] - 10:  # samples are 10 s apart
            marks.pop(0)
            soak.say(f"serve: RSS {row[1]:.1f} MB, {row[2]} fds, {row[3]} threads, {row[4]} tasks, "
                     f"{heap_text(in_use, free)}; {kinds_text(row[7])}")  # fmt: skip
        await asyncio.sleep(10)


async def run(soak: Soak) -> int:
    args = soak.args
    # Every process logs (warnings and up) here for a post-mortem; they live as long as the run.
    sim_log = open(soak.folder / "sim.log", "w")  # noqa: SIM115, ASYNC230
    serve_log = open(soak.folder / "serve.log", "w")  # noqa: SIM115, ASYNC230
    turn_log = open(soak.folder / "turn.log", "w")  # noqa: SIM115, ASYNC230
    faults = list(FAULTS)
    turn_port = free_port()
    turn = start_turn(turn_port, turn_log)
    if turn is None:
        faults = [f for f in faults if f[0] != "TURN-only paths"]
        print("TURN-only paths: skipped (coturn's turnserver is not installed)", flush=True)
    else:
        soak.procs.append(turn)
    soak.procs.append(start_sim(soak.sim_port, quality=0, keyframes=args.keyframes, stderr=sim_log))
    if turn is not None:
        # Every live call names the TURN server, as SkyBell's do; only a relay-only doorbell
        # (the TURN-only fault) forces its use.
        set_extra_ice(soak.sim, turn_ice(turn_port))
    serve = start_serve(
        soak.sim, soak.http_port, soak.rtsp_port, stderr=serve_log,
        storage_clips_dir=str(soak.folder / "clips"), record_min_free_mb="0",
        events_udp_enabled="true", events_udp_host="127.0.0.1",
        events_udp_port=str(soak.udp_port),
    )  # fmt: skip
    soak.procs.append(serve)
    soak.serve_pid = serve.pid
    soak.t0, soak.wall0 = time.monotonic(), time.time()
    soak.say(f"sim {soak.sim}, serve {soak.base} (pid {serve.pid}), keyframes {args.keyframes}")
    timeout = aiohttp.ClientTimeout(total=None, sock_read=60)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        async with http.get(soak.sim + f"/_sim/doorbells/{DEVICE}/media") as resp:
            soak.device_id = (await resp.json())["id"]
        ll_url, _ = await hls_media_playlists(http, soak.base + f"api/stream.m3u8?src={STREAM}")
        consumers = {
            "rtsp recorder": lambda: rtsp_recorder(soak),
            "rtsp frame reader": lambda: rtsp_frames(soak),
            "LL-HLS reader": lambda: hls_reader(soak, http, ll_url),
            "MJPEG viewer": lambda: mjpeg_viewer(soak, http),
            "WHEP viewer": lambda: whep_viewer(soak),
        }
        tasks = [asyncio.create_task(keep(soak, n, c)) for n, c in consumers.items()]
        tasks.append(asyncio.create_task(sample(soak, http)))
        # Every fault at least once in a short run; every 3 minutes in an hour.
        every = args.fault_every or max(20.0, min(180.0, soak.duration / (len(faults) + 1.5)))
        drivers = [run_faults(soak, http, every, faults), run_presses(soak, http)]
        driver_tasks = [asyncio.create_task(d) for d in drivers]
        try:
            await asyncio.sleep(soak.duration)
        finally:
            for task in [*driver_tasks, *tasks]:
                task.cancel()
            results = await asyncio.gather(*driver_tasks, *tasks, return_exceptions=True)
        for result in results[: len(driver_tasks)]:
            if isinstance(result, Exception):
                soak.fail(f"driver failed: {result!r}")
        if serve.poll() is not None:
            soak.fail(f"serve exited with {serve.returncode}")
        return await report(soak, http, FAULTS)


async def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=60.0, help="length of the run")
    parser.add_argument("--keyframes", choices=KEYFRAME_MODES, default="on_request")
    parser.add_argument("--fault-every", type=float, default=0.0, help="seconds (default: scaled)")
    parser.add_argument("--keep", help="keep recordings, clips and logs in this folder")
    args = parser.parse_args()
    if args.minutes < 2:
        parser.error("--minutes must be at least 2 (a press needs time to become a clip)")
    aiortc_patch.restrict_host_candidates(["127.0.0.1"])
    with contextlib.ExitStack() as stack:
        if args.keep:
            folder = Path(args.keep)
            folder.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - once, at the start
        else:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="soak-")))
        soak = Soak(args, folder)
        try:
            return await run(soak)
        finally:
            stop(soak.procs)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    sys.exit(asyncio.run(main()))
