"""Shared by the benchmarks that run the simulator and `serve` as separate processes.

Separate processes keep every figure (CPU, RSS, descriptors) the bridge's own. The simulator
is `python -m bridge sim` and the bridge `python -m bridge serve`, pointed at the simulator
with SKYBELL_BRIDGE_* variables; both print a line once they listen, which is what we wait for.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bridge.sim.cloud import API_PREFIX, DEFAULT_API_KEY  # noqa: E402

# Picks the simulated doorbells' keyframe mode (bridge/sim/doorbell.py reads it per doorbell).
KEYFRAMES_ENV = "SKYBELL_BRIDGE_SIM_KEYFRAMES"
KEYFRAME_MODES = ("on_request", "gop")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int | str = "self") -> float:
    """Resident memory of a process in MB (0 when it is gone)."""
    return _status_field(pid, "VmRSS:") / 1024


def threads(pid: int | str) -> int:
    """Threads of a process (0 when it is gone)."""
    return int(_status_field(pid, "Threads:"))


def open_fds(pid: int | str) -> int:
    """Open file descriptors of a process (0 when it is gone)."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


# glibc's thread arenas are heaps aligned to HEAP_MAX_SIZE (64 MiB on 64-bit): how their
# mappings are told apart from other anonymous memory in smaps.
_ARENA_ALIGN = 64 << 20
RSS_KINDS = ("main heap", "thread arenas", "other anon", "files")


def rss_by_kind(pid: int | str) -> dict[str, float]:
    """Resident MB of a process by kind of mapping, read from /proc/PID/smaps.

    "main heap" is glibc's main arena (brk), "thread arenas" its per-thread heaps, "other anon"
    everything else anonymous (Python's object arenas, malloc's mmapped blocks, thread stacks,
    FFmpeg's large buffers) and "files" mapped files (code, shared libraries). When RSS grows,
    this says whose memory it is.
    """
    kinds = dict.fromkeys(RSS_KINDS, 0.0)
    kind = "files"
    try:
        with open(f"/proc/{pid}/smaps") as fh:
            for line in fh:
                head = line.split(None, 6)
                if "-" in head[0] and len(head) >= 5:  # a mapping's header line
                    start = int(head[0].split("-")[0], 16)
                    name = head[5].strip() if len(head) > 5 else ""
                    if name == "[heap]":
                        kind = "main heap"
                    elif name and not name.startswith("["):
                        kind = "files"
                    elif not name and start % _ARENA_ALIGN == 0:
                        kind = "thread arenas"
                    else:
                        kind = "other anon"
                elif head[0] == "Rss:":
                    kinds[kind] += int(head[1]) / 1024
    except OSError:
        pass
    return kinds


def _status_field(pid: int | str, name: str) -> float:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(name):
                    return float(line.split()[1])
    except OSError:
        pass
    return 0.0


def start_sim(
    port: int,
    *,
    doorbells: int = 1,
    quality: int = 1,
    fps: int = 15,
    bitrate: int | None = None,
    keyframes: str | None = None,
    stderr: IO[str] | int = subprocess.DEVNULL,
) -> subprocess.Popen[str]:
    """`skybell-bridge sim` on 127.0.0.1:port; returns once it listens."""
    cmd = [sys.executable, "-m", "bridge", "sim", "--port", str(port)]
    cmd += ["--doorbells", str(doorbells), "--quality", str(quality), "--fps", str(fps)]
    if bitrate is not None:
        cmd += ["--bitrate", str(bitrate)]
    env = dict(os.environ)
    if keyframes is not None:
        env[KEYFRAMES_ENV] = keyframes
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True
    )
    assert proc.stdout is not None
    if not proc.stdout.readline():  # "simulated SkyBell cloud at ..." once it listens
        raise RuntimeError("the simulator exited before listening")
    return proc


def start_serve(
    sim_url: str,
    http_port: int,
    rtsp_port: int,
    *,
    stderr: IO[str] | int = subprocess.DEVNULL,
    **settings: str,
) -> subprocess.Popen[str]:
    """`skybell-bridge serve` against the simulator at ``sim_url``; returns once it listens.

    ``settings`` are more SKYBELL_BRIDGE_* variables (without the prefix). Any SKYBELL_BRIDGE_*
    of our own environment is left out so a developer's shell cannot change the figures.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKYBELL_BRIDGE_")}
    env |= {
        "SKYBELL_BRIDGE_SKYBELL_API_URL": sim_url + API_PREFIX,
        "SKYBELL_BRIDGE_SKYBELL_API_KEY": DEFAULT_API_KEY,
        "SKYBELL_BRIDGE_SERVER_PORT": str(http_port),
        "SKYBELL_BRIDGE_SERVER_RTSP_PORT": str(rtsp_port),
        "SKYBELL_BRIDGE_STREAMS_ICE_HOST_ADDRESSES": "127.0.0.1",
        "SKYBELL_BRIDGE_WEBRTC_ICE_HOST_ADDRESSES": "127.0.0.1",  # viewers too
        "SKYBELL_BRIDGE_LOG_LEVEL": "warning",
    }
    env |= {f"SKYBELL_BRIDGE_{k.upper()}": v for k, v in settings.items()}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bridge", "serve"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    if not proc.stdout.readline():  # "skybell-bridge: N doorbell(s)" once both listeners are up
        raise RuntimeError("serve exited before listening")
    return proc


TURN_USER = "soak"  # a throwaway credential for a TURN server on loopback


def start_turn(port: int, log: IO[str] | int = subprocess.DEVNULL) -> subprocess.Popen[str] | None:
    """coturn on 127.0.0.1:port (UDP, long-term credentials); None when it is not installed.

    Loopback peers must be allowed explicitly: coturn refuses to relay to 127.0.0.0/8 by default.
    """
    binary = shutil.which("turnserver")
    if binary is None:
        return None
    relay_ports = 40000 + port % 20000
    return subprocess.Popen(
        [binary, "-n", "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1",
         f"--listening-port={port}", f"--min-port={relay_ports}", f"--max-port={relay_ports + 200}",
         f"--user={TURN_USER}:{TURN_USER}", "--realm=soak", "--lt-cred-mech", "--no-tls",
         "--no-dtls", "--allow-loopback-peers", "--no-cli", "--log-file=stdout", "--simple-log",
         "-v"],  # verbose: each allocation is logged, so turn.log shows relays were used
        stdout=log, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def turn_ice(port: int) -> list[dict[str, str]]:
    """The browser-style ICE server entry for start_turn's server."""
    url = f"turn:127.0.0.1:{port}?transport=udp"
    return [{"urls": url, "username": TURN_USER, "credential": TURN_USER}]


def set_extra_ice(sim_url: str, ice: list[dict[str, str]]) -> None:
    """Make every live call of the simulator at ``sim_url`` name these ICE servers too."""
    req = urllib.request.Request(  # noqa: S310 - a loopback URL we built
        sim_url + "/_sim/extra_ice",
        data=json.dumps(ice).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310 - loopback only
        resp.read()


def stop(procs: list[subprocess.Popen[str]]) -> None:
    """Terminate processes, newest first, and wait for each."""
    for proc in reversed(procs):
        if proc.poll() is None:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
