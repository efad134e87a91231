"""The soak's end: outages per fault, the RTSP recording, clips, events, memory; exit status.

Split from soak.py so the run (processes, consumers, faults) and the judging stay small.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import json
import math
import statistics
import subprocess
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import av

from bridge.sim.picture import read_stamp

CLIP_WAIT = 45.0  # seconds for the last clips to finish (post-roll) after the run


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(len(ordered) * q) - 1)]


# Seconds after a fault in which its outage is looked for: beyond the bridge's media timeout
# (10 s) plus its longest backoff (30 s), and the 599-then-500 fault's two refused calls.
OUTAGE_WINDOW = 60.0


def outages(soak: Any, faults: list[Any]) -> list[tuple[str, float, float]]:
    """(name, seconds since start, outage s): from the fault to the picture ending the largest
    gap in the RTSP reader's arrivals within OUTAGE_WINDOW (and before the next fault)."""
    expect = {name: outage for name, _, outage in faults}
    frames = sorted(soak.frames)
    out = []
    for i, (name, t) in enumerate(soak.faults):
        end = soak.faults[i + 1][1] if i + 1 < len(soak.faults) else soak.t0 + soak.duration
        # Only the fault's own aftermath: a longer hiccup of the reader minutes later (a loaded
        # machine) must not count as this fault's outage. No picture within it shows as inf.
        end = min(end, t + OUTAGE_WINDOW)
        k = bisect.bisect_right(frames, t)
        window = [t, *frames[k : bisect.bisect_right(frames, end)]]
        if len(window) < 2:
            out.append((name, t - soak.t0, float("inf")))
            continue
        gaps = [(b - a, b) for a, b in itertools.pairwise(window)]
        gap, ends = max(gaps)
        # A fault that breaks the session: fault -> next picture after the gap. One that should
        # not (loss, resolution): the largest gap in pictures while it lasted.
        out.append((name, t - soak.t0, ends - t if expect.get(name) else gap))
    return out


def probe_recording(path: Path) -> dict[str, Any]:
    """Per stream: packets, span, largest DTS gap, backwards DTS (ffprobe on the MP4)."""
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "packet=stream_index,dts_time,pts_time",
         "-of", "csv=p=0", str(path)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    streams: dict[str, list[float]] = {}
    for line in result.stdout.splitlines():
        parts = line.split(",")
        if len(parts) < 3 or "N/A" in parts[1:3]:
            continue
        streams.setdefault(parts[0], []).append(float(parts[2]))  # dts_time
    out: dict[str, Any] = {"ok": result.returncode == 0, "error": result.stderr.strip()[-300:]}
    for index, dts in streams.items():
        back = [i for i in range(1, len(dts)) if dts[i] < dts[i - 1]]
        gaps = [dts[i] - dts[i - 1] for i in range(1, len(dts))]
        out[index] = {
            "packets": len(dts),
            "span": (max(dts) - min(dts)) if dts else 0.0,
            "largest_gap": max(gaps, default=0.0),
            "largest_gap_at": dts[gaps.index(max(gaps))] - dts[0] if gaps else 0.0,
            "backwards": len(back),
            "backwards_at": [round(dts[i] - dts[0], 2) for i in back[:10]],
        }
    return out


def first_stamp(path: Path) -> float | None:
    """The burned-in capture time (s) of a clip's first decodable picture."""
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            try:
                return read_stamp(frame.to_ndarray(format="gray"))[1] / 1000
            except ValueError:
                return None
    return None


def playable(path: Path) -> tuple[bool, str]:
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
         "-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", str(path)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    frames = result.stdout.strip().split(",")[0]
    ok = result.returncode == 0 and frames.isdigit() and int(frames) > 0
    return ok, f"{frames} frames" if ok else (result.stderr.strip()[-200:] or "no frames")


async def check_clips(soak: Any, http: aiohttp.ClientSession) -> dict[str, Any]:
    deadline = time.monotonic() + CLIP_WAIT
    while True:
        body = await soak.api(http, "api/clips?event=doorbell&limit=100")
        clips = sorted(body["clips"], key=lambda c: c["start"])
        busy = [c for c in clips if c["state"] not in ("done", "failed")]
        if not busy or time.monotonic() > deadline:
            break
        await asyncio.sleep(2)
    unplayable, prerolls, lost = [], [], 0
    for n, pressed in enumerate(soak.presses, 1):
        mine = [c for c in clips if pressed - 30 <= c["start"] <= pressed + 15]
        when = f"press {n} at {pressed - soak.wall0:.0f} s"
        if not mine:
            lost += 1
            soak.fail(f"no clip for {when}")
            continue
        clip = mine[0]
        path = soak.folder / f"clip-{clip['id']}.mp4"
        async with http.get(soak.base + f"api/clips/{clip['id']}/video") as resp:
            path.write_bytes(await resp.read() if resp.status == 200 else b"")
        ok, detail = await asyncio.to_thread(playable, path)
        if not ok or clip["state"] != "done":
            unplayable.append(clip["id"])
            soak.fail(f"clip {clip['id']} ({when}) unplayable: {clip['state']} {detail}")
            continue
        stamp = await asyncio.to_thread(first_stamp, path)
        preroll = pressed - stamp if stamp is not None else None
        if preroll is not None:
            prerolls.append(preroll)
        shown = f"{preroll:.2f} s" if preroll is not None else "unreadable stamp"
        soak.say(
            f"clip {clip['id']} ({when}): playable, {detail}, {clip['duration']:.1f} s, "
            f"pre-roll {shown} (index says {clip['preroll']:.2f} s)"
        )
    return {"clips": len(clips), "lost": lost, "unplayable": unplayable, "prerolls": prerolls}


def heap_text(in_use: float | None, free: float | None) -> str:
    """The C heap's figures for a line, or why there are none."""
    if in_use is None or free is None:
        return "C heap n/a (not glibc)"
    return f"C heap {in_use:.1f} MB in use, {free:.1f} MB free"


def kinds_text(kinds: dict[str, float]) -> str:
    """RSS by kind of mapping for a line."""
    return "RSS by kind: " + ", ".join(f"{kind} {mb:.1f}" for kind, mb in kinds.items())


async def report(soak: Any, http: aiohttp.ClientSession, faults: list[Any]) -> int:
    """Print the figures; 0 when nothing was lost, else 1."""
    say = soak.say
    say("---- figures ----")
    for minute, rss, fds, thr, tasks, in_use, free, kinds in soak.samples[
        :: max(1, len(soak.samples) // 12)
    ]:
        say(f"  t={minute:5.1f} min: RSS {rss:6.1f} MB, {fds} fds, {thr} threads, {tasks} tasks, "
            f"{heap_text(in_use, free)}; {kinds_text(kinds)}")  # fmt: skip
    warm = max(1.0, soak.duration / 60 / 6)  # minutes of warm-up left out of the slope
    later = [row for row in soak.samples if row[0] >= warm]
    if len(later) >= 3:
        # RSS beside malloc's in-use and free bytes: in-use growing is a leak, free growing
        # with in-use flat is fragmentation glibc keeps in its arenas.
        for label, col in (("RSS", 1), ("C heap in use", 5), ("C heap free", 6)):
            points = [(row[0], row[col]) for row in later if row[col] is not None]
            if len(points) >= 3:
                minutes, values = [m for m, _ in points], [v for _, v in points]
                slope = statistics.linear_regression(minutes, values).slope
                say(f"{label} slope after {warm:.1f} min warm-up: {slope * 60:+.1f} MB/hour")
        # Whose memory grows: glibc's arenas (fragmentation a trim may give back) or the rest.
        kinds = later[0][7]
        slopes = [
            statistics.linear_regression([row[0] for row in later], [row[7][k] for row in later])
            for k in kinds
        ]
        say("RSS slope by kind: " + ", ".join(
            f"{k} {fit.slope * 60:+.1f}" for k, fit in zip(kinds, slopes, strict=True)
        ) + " MB/hour")  # fmt: skip
        settled = [row for row in soak.samples if row[0] >= warm]
        for label, col in (("fds", 2), ("threads", 3), ("asyncio tasks", 4)):
            values = [row[col] for row in settled]
            say(f"{label} after warm-up: {min(values)}-{max(values)}")
    timed = outages(soak, faults)
    broken = [o for n, _, o in timed if dict((f[0], f[2]) for f in faults)[n]]
    for name, at, seconds in timed:
        say(f"  outage after '{name}' at {at:.0f} s: {seconds:.2f} s")
    if broken:
        say(
            f"reconnect outage: p50 {statistics.median(broken):.2f} s, p95 {pct(broken, 0.95):.2f} s"
        )
    turn_log = soak.folder / "turn.log"
    if turn_log.exists():
        allocations = turn_log.read_text(errors="replace").count("ALLOCATE processed, success")
        say(f"TURN allocations (the bridge's on each connect, the doorbell's when relay-only): "
            f"{allocations}")  # fmt: skip
    say(f"frames: RTSP reader {len(soak.frames)}, " + ", ".join(
        f"{k} {v}" for k, v in soak.counts.items()))  # fmt: skip
    backwards = 0
    for path in soak.recordings:
        figures = await asyncio.to_thread(probe_recording, path)
        if not figures["ok"]:
            soak.fail(f"recording {path.name} unreadable: {figures['error']}")
        for index in sorted(k for k in figures if k.isdigit()):
            s = figures[index]
            backwards += s["backwards"]
            say(
                f"recording {path.name} stream {index}: {s['packets']} packets over "
                f"{s['span']:.1f} s, largest gap {s['largest_gap']:.2f} s "
                f"(at {s['largest_gap_at']:.0f} s), backwards timestamps {s['backwards']}"
            )
            if s["backwards"]:
                soak.fail(
                    f"recording stream {index}: {s['backwards']} backwards timestamps at "
                    f"{s['backwards_at']} s into the recording"
                )
    clips = await check_clips(soak, http)
    if clips["prerolls"]:
        p = clips["prerolls"]
        say(f"pre-roll against the burned-in clock: min {min(p):.2f} s, max {max(p):.2f} s")
    since = int(soak.wall0)
    events = await soak.api(http, f"api/events?type=doorbell&since={since}&limit=500")
    times = [datetime.fromisoformat(e["time"]).timestamp() for e in events["events"]]
    lost_events = 0
    for n, pressed in enumerate(soak.presses, 1):
        # The event's time is the press's own (UDP) or the activity's (polling): seconds apart.
        if not any(abs(t - pressed) <= 15 for t in times):
            lost_events += 1
            soak.fail(f"press {n} at {pressed - soak.wall0:.0f} s never became an event")
    say(f"presses {len(soak.presses)}, doorbell events {events['total']}, lost {lost_events}")
    summary = {
        "minutes": soak.duration / 60,
        "keyframes": soak.args.keyframes,
        "backwards": backwards,
        "reconnects": soak.reconnects,
        "presses": len(soak.presses),
        "events": events["total"],
        "events_lost": lost_events,
        "clips": clips["clips"],
        "clips_lost": clips["lost"],
        "unplayable": clips["unplayable"],
        "faults": [n for n, _ in soak.faults],
        "failures": soak.failures,
    }
    say("failures: " + ("none" if not soak.failures else ""))
    for line in soak.failures:
        print(f"  {line}", flush=True)
    print("SOAK-SUMMARY " + json.dumps(summary), flush=True)
    return 1 if soak.failures else 0
