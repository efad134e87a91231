"""Memory after rounds of MJPEG viewers (issue 12, finding 11): a leak, or the allocator's high water?

Three processes: the simulator (one doorbell at 854x480), `skybell-bridge serve`, and this script,
which plays N MJPEG viewers per round, lets them go, waits for the stream to stop, and then asks
the bridge (SIGUSR1) for a report: RSS, Python's traced heap, live objects by type, and glibc's
view of its heap. After the last round it asks (SIGUSR2) for ``malloc_trim(0)`` and reports again:
memory that trim gives back was free memory the allocator kept, not a leak.

The bridge runs under this same file with ``--child``, which installs the two signal handlers and
then runs the ordinary ``serve``; ``--tracemalloc`` starts tracing there (slower, more memory).

Run: .venv/bin/python scripts/bench/mjpeg_memory.py [--rounds 4] [--viewers 200] [--seconds 8]
     MALLOC_ARENA_MAX=2 .venv/bin/python scripts/bench/mjpeg_memory.py   # arenas, compared
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import gc
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bridge.sim.cloud import API_PREFIX, DEFAULT_API_KEY  # noqa: E402

STREAM = "front-door"
REPORT = "SKYBELL_BENCH_REPORT"  # where the child writes its reports (one JSON per line)


# -- in the bridge process ------------------------------------------------------------------------


def _rss_mb(pid: int | str = "self") -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _libc() -> Any:
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


class _MallInfo2(ctypes.Structure):
    _names = "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"
    _fields_ = [(name, ctypes.c_size_t) for name in _names.split()]


def _mallinfo() -> dict[str, float]:
    libc = _libc()
    if libc is None or not hasattr(libc, "mallinfo2"):
        return {}
    libc.mallinfo2.restype = _MallInfo2
    info = libc.mallinfo2()
    mb = 1 << 20
    # arena: bytes the main and other arenas got from the system (brk/mmap'd heaps);
    # uordblks: in use; fordblks: free but kept; hblkhd: big blocks mmap'd one by one.
    return {
        "heap_mb": round(info.arena / mb, 1),
        "in_use_mb": round(info.uordblks / mb, 1),
        "free_kept_mb": round(info.fordblks / mb, 1),
        "mmapped_mb": round(info.hblkhd / mb, 1),
    }


def _report(label: str) -> None:
    import tracemalloc

    gc.collect()
    types = Counter(type(o).__name__ for o in gc.get_objects())
    entry: dict[str, Any] = {
        "label": label,
        "rss_mb": round(_rss_mb(), 1),
        "objects": sum(types.values()),
        # pymalloc's small blocks live in its own mmap'd arenas, which glibc's numbers omit.
        "py_blocks": sys.getallocatedblocks(),
        "top_types": types.most_common(8),
        "threads": len(os.listdir("/proc/self/task")),
        "malloc": _mallinfo(),
    }
    if tracemalloc.is_tracing():
        entry["traced_mb"] = round(tracemalloc.get_traced_memory()[0] / (1 << 20), 1)
    with open(os.environ[REPORT], "a") as fh:
        fh.write(json.dumps(entry) + "\n")


def _child(tracing: bool) -> int:
    if tracing:
        import tracemalloc

        tracemalloc.start()
    signal.signal(signal.SIGUSR1, lambda *_: _report("report"))

    def trim(*_: Any) -> None:
        libc = _libc()
        if libc is not None:
            libc.malloc_trim(0)
        _report("after malloc_trim(0)")

    signal.signal(signal.SIGUSR2, trim)
    from bridge.__main__ import main

    return main(["serve"])


# -- in this process ------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _viewer(http: aiohttp.ClientSession, url: str, seconds: float) -> int:
    """Read an MJPEG stream for ``seconds``; returns the bytes read."""
    got = 0
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds), http.get(url) as resp:
            resp.raise_for_status()
            async for chunk in resp.content.iter_any():
                got += len(chunk)
    return got


async def _state(http: aiohttp.ClientSession, base: str) -> str:
    async with http.get(f"{base}api/streams?src={STREAM}") as resp:
        return str((await resp.json())["state"])


async def _ask(pid: int, sig: signal.Signals, path: Path, count: int) -> dict[str, Any]:
    os.kill(pid, sig)
    for _ in range(200):
        text = await asyncio.to_thread(lambda: path.read_text() if path.exists() else "")
        lines = text.splitlines()
        if len(lines) >= count:
            return dict(json.loads(lines[count - 1]))
        await asyncio.sleep(0.05)
    raise TimeoutError("the bridge wrote no report")


def _line(round_label: str, r: dict[str, Any]) -> str:
    m = r["malloc"]
    traced = f", traced {r['traced_mb']} MB" if "traced_mb" in r else ""
    return (
        f"{round_label:<22} RSS {r['rss_mb']:7.1f} MB | glibc heap {m.get('heap_mb', '?')} MB "
        f"(in use {m.get('in_use_mb', '?')}, free kept {m.get('free_kept_mb', '?')}), "
        f"mmapped {m.get('mmapped_mb', '?')} MB | {r['objects']} objects, "
        f"{r['py_blocks']} pymalloc blocks, "
        f"{r['threads']} threads{traced}"
    )


class _Processes:
    """The simulator and the bridge (this file with --child), as subprocesses."""

    def __init__(self, viewers: int, tracing: bool) -> None:
        sim_port, http_port, rtsp_port = _free_port(), _free_port(), _free_port()
        self.base = f"http://127.0.0.1:{http_port}/"
        self.report = Path(tempfile.mkdtemp()) / "report.jsonl"
        self.procs: list[subprocess.Popen[str]] = []
        sim = subprocess.Popen(
            [sys.executable, "-m", "bridge", "sim", "--port", str(sim_port), "--doorbells", "1",
             "--quality", "0", "--fps", "15"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        self.procs.append(sim)
        assert sim.stdout is not None
        sim.stdout.readline()
        env = {k: v for k, v in os.environ.items() if not k.startswith("SKYBELL_BRIDGE_")}
        env |= {
            REPORT: str(self.report),
            "SKYBELL_BRIDGE_SKYBELL_API_URL": f"http://127.0.0.1:{sim_port}{API_PREFIX}",
            "SKYBELL_BRIDGE_SKYBELL_API_KEY": DEFAULT_API_KEY,
            "SKYBELL_BRIDGE_SERVER_PORT": str(http_port),
            "SKYBELL_BRIDGE_SERVER_RTSP_PORT": str(rtsp_port),
            # One address plays every viewer: lift the per-client cap for this.
            "SKYBELL_BRIDGE_SERVER_MAX_CONNECTIONS": str(viewers + 100),
            "SKYBELL_BRIDGE_SERVER_MAX_CONNECTIONS_PER_CLIENT": str(viewers + 50),
            "SKYBELL_BRIDGE_STREAMS_ICE_HOST_ADDRESSES": "127.0.0.1",
            "SKYBELL_BRIDGE_STREAMS_IDLE_TIMEOUT": "2",
            "SKYBELL_BRIDGE_STORAGE_CLIPS_DIR": str(self.report.parent / "clips"),
            "SKYBELL_BRIDGE_RECORD_MIN_FREE_MB": "0",
            "SKYBELL_BRIDGE_LOG_LEVEL": "warning",
        }
        child = [sys.executable, __file__, "--child"] + (["--tracemalloc"] * tracing)
        bridge = subprocess.Popen(
            child, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        self.procs.append(bridge)
        assert bridge.stdout is not None
        bridge.stdout.readline()
        self.pid = bridge.pid

    def close(self) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)


async def _rounds(args: argparse.Namespace, procs: _Processes) -> None:
    pid, report, base = procs.pid, procs.report, procs.base
    count = 1
    print(_line("start", await _ask(pid, signal.SIGUSR1, report, count)), flush=True)
    url = f"{base}api/stream.mjpeg?src={STREAM}"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        for n in range(1, args.rounds + 1):
            peak = 0.0
            task = asyncio.gather(*(_viewer(http, url, args.seconds) for _ in range(args.viewers)))
            while not task.done():
                peak = max(peak, _rss_mb(pid))
                await asyncio.sleep(0.25)
            served = sum(1 for got in task.result() if got > 0)
            for _ in range(150):  # the stream stops once the last viewer has gone
                if await _state(http, base) == "idle":
                    break
                await asyncio.sleep(0.2)
            await asyncio.sleep(1.0)
            count += 1
            entry = await _ask(pid, signal.SIGUSR1, report, count)
            label = f"round {n} ({served} viewers)"
            print(f"{_line(label, entry)} | peak RSS {peak:.0f} MB", flush=True)
    count += 1
    print(_line("after malloc_trim(0)", await _ask(pid, signal.SIGUSR2, report, count)))


def main() -> None:
    """Parse the options and run the rounds (or, with --child, be the bridge)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--viewers", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=8.0, help="how long each viewer reads")
    parser.add_argument("--tracemalloc", action="store_true", help="trace Python allocations")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        sys.exit(_child(args.tracemalloc))
    procs = _Processes(args.viewers, args.tracemalloc)
    try:
        asyncio.run(_rounds(args, procs))
    finally:
        procs.close()


if __name__ == "__main__":
    main()
