"""Issue 12, findings 1 and 9: what ``serve`` refuses at start, as a user meets it on the CLI.

Each refusal is exit code 2 and one ``config error: KEY: ...`` line, never a traceback. The
checks that come before the cloud (exposure, clips folder, the loader) end in well under a
second; the listener checks start the simulator first, as a real run would.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .serve_util import BridgeFactory, get_json
from .web_util import browser_fixture, new_page, until  # noqa: F401 - browser_fixture is a fixture

ROOT = Path(__file__).parents[1]
PASSWORD_ENV = {
    "SKYBELL_BRIDGE_SERVER_USERNAME": "admin",
    "SKYBELL_BRIDGE_SERVER_PASSWORD": "front-door-pw",
}


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("SKYBELL_BRIDGE_")}


def serve(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {
        "SKYBELL_BRIDGE_SERVER_PORT": "0",
        "SKYBELL_BRIDGE_SERVER_RTSP_PORT": "0",
        "SKYBELL_BRIDGE_STORAGE_CLIPS_DIR": str(tmp_path / "clips"),
    }
    return subprocess.run(
        [sys.executable, "-m", "bridge", *args, "serve"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean_env(), **base, **env},
        cwd=tmp_path,
        check=False,
    )


def refused(result: subprocess.CompletedProcess[str], key: str) -> str:
    """The one error line, after checking exit 2, no traceback, and the key named first."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith(f"config error: {key}: "), result.stderr
    return line


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


# -- finding 1: no password, no LAN ---------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"SKYBELL_BRIDGE_SERVER_HOST": "0.0.0.0"}, "server.host"),
        ({"SKYBELL_BRIDGE_SERVER_HOST": ""}, "server.host"),  # "" is every interface too
        ({"SKYBELL_BRIDGE_SERVER_HOST": "::"}, "server.host"),
        ({"SKYBELL_BRIDGE_SERVER_HOST": "bridge.lan"}, "server.host"),
        ({"SKYBELL_BRIDGE_SERVER_RTSP_HOST": "0.0.0.0"}, "server.rtsp_host"),
        (  # an empty password is no password, never "auth off"
            {
                "SKYBELL_BRIDGE_SERVER_RTSP_HOST": "192.168.1.20",
                "SKYBELL_BRIDGE_SERVER_PASSWORD": "",
            },
            "server.rtsp_host",
        ),
    ],
)
def test_finding_1_lan_without_password_exits_2(
    tmp_path: Path, env: dict[str, str], key: str
) -> None:
    line = refused(serve(tmp_path, **env), key)
    assert "no password is set" in line
    assert "SKYBELL_BRIDGE_SERVER_PASSWORD" in line
    assert "password_file" in line
    assert "server.allow_lan_without_password" in line
    assert not (tmp_path / "clips").exists()  # refused before touching anything


def test_finding_1_empty_password_file_is_no_password(tmp_path: Path) -> None:
    empty = tmp_path / "pw"
    empty.write_text("\n")
    env = {
        "SKYBELL_BRIDGE_SERVER_HOST": "0.0.0.0",
        "SKYBELL_BRIDGE_SERVER_USERNAME": "admin",
        "SKYBELL_BRIDGE_SERVER_PASSWORD_FILE": str(empty),
    }
    refused(serve(tmp_path, **env), "server.host")


def test_finding_1_loopback_names_need_no_password(tmp_path: Path) -> None:
    # 127.0.0.0/8, ::1 and localhost reach this machine only: nothing to refuse. A busy
    # clips path stops these runs right after the exposure check, before any listener.
    (tmp_path / "clips").write_text("not a folder")
    for host in ("127.0.0.1", "127.0.0.2", "localhost", "::1"):
        result = serve(
            tmp_path, SKYBELL_BRIDGE_SERVER_HOST=host, SKYBELL_BRIDGE_SERVER_RTSP_HOST=host
        )
        refused(result, "storage.clips_dir")


def test_finding_1_dockerfile_without_password_exits_2(tmp_path: Path) -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    instructions = dockerfile.replace("\\\n", " ").splitlines()  # join continued lines
    env_lines = [line.removeprefix("ENV ") for line in instructions if line.startswith("ENV ")]
    env = dict(re.findall(r"(SKYBELL_BRIDGE_\w+)=(\S+)", " ".join(env_lines)))
    assert env["SKYBELL_BRIDGE_SERVER_HOST"] == "0.0.0.0"  # what makes the container reachable
    env["SKYBELL_BRIDGE_STORAGE_CLIPS_DIR"] = str(tmp_path / "clips")
    assert re.search(r'^CMD \["serve"\]', dockerfile, re.M)
    line = refused(serve(tmp_path, **env), "server.host")
    assert "SKYBELL_BRIDGE_SERVER_PASSWORD_FILE" in line


@pytest.mark.slow
async def test_finding_1_allowed_lan_warns_and_prints_the_bound_address(tmp_path: Path) -> None:
    # The one test that binds beyond loopback (HTTP only, port 0, for a few seconds); every
    # request still goes to 127.0.0.1.
    env = clean_env() | {
        "SKYBELL_BRIDGE_SERVER_HOST": "0.0.0.0",
        "SKYBELL_BRIDGE_SERVER_ALLOW_LAN_WITHOUT_PASSWORD": "true",
        "SKYBELL_BRIDGE_SERVER_PORT": "0",
        "SKYBELL_BRIDGE_SERVER_RTSP_PORT": "0",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge", "serve", cwd=tmp_path, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    assert proc.stderr is not None
    try:
        lines = [(await asyncio.wait_for(proc.stdout.readline(), 30)).decode() for _ in range(3)]
        bound = re.search(r"http://0\.0\.0\.0:(\d+)/", lines[1])
        assert bound, lines  # the address really bound, not a friendly 127.0.0.1
        assert "rtsp://127.0.0.1:" in lines[2]
        status, config = await get_json(f"http://127.0.0.1:{bound.group(1)}/api/config")
        assert status == 200
        assert config["lan_without_password"] is True
    finally:
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 30)
        err = (await proc.stderr.read()).decode()
    assert code == 0
    warning = next(line for line in err.splitlines() if "WARNING" in line)
    assert "no server.password" in warning
    assert "server.host" in warning
    assert "server.rtsp_host" not in warning


@pytest.mark.slow
async def test_finding_1_page_shows_the_lan_warning(
    make_bridge: BridgeFactory, browser: Any
) -> None:
    open_bridge = await make_bridge(
        SKYBELL_BRIDGE_SERVER_HOST="0.0.0.0",
        SKYBELL_BRIDGE_SERVER_ALLOW_LAN_WITHOUT_PASSWORD="true",
    )
    local_bridge = await make_bridge()
    page, _ = await new_page(browser)
    await page.goto(open_bridge.http_url)
    warning = page.locator("#lan-warning")
    await until(warning.is_visible)
    assert "No password" in await warning.inner_text()
    await page.goto(local_bridge.http_url)
    await page.wait_for_selector("#doorbells article.doorbell")
    assert not await warning.is_visible()
    _, config = await get_json(local_bridge.http_url + "api/config")
    assert config["lan_without_password"] is False


# -- finding 9: config that must stop the start ---------------------------------------------


def test_finding_9_toml_not_utf8_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "bridge.toml"
    config.write_bytes("[server]\n# caf\u00e9 on the porch\nport = 0\n".encode("latin-1"))
    result = serve(tmp_path, "--config", str(config))
    assert "not UTF-8" in refused(result, "config file")
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("toml", "env", "key"),
    [
        ("[streams]\nidle_timeout = nan\n", {}, "streams.idle_timeout"),
        ("[events]\npoll_backfill = inf\n", {}, "events.poll_backfill"),
        ("", {"SKYBELL_BRIDGE_EVENTS_POLL_BACKFILL": "inf"}, "events.poll_backfill"),
        ("", {"SKYBELL_BRIDGE_RECORD_MAX_TOTAL_GB": "-inf"}, "record.max_total_gb"),
        ("[record]\nmin_free_mb = 1099511627776\n", {}, "record.min_free_mb"),
    ],
)
def test_finding_9_nan_infinity_and_absurd_values_exit_2(
    tmp_path: Path, toml: str, env: dict[str, str], key: str
) -> None:
    config = tmp_path / "bridge.toml"
    config.write_text(toml)
    result = serve(tmp_path, "--config", str(config), **env)
    refused(result, key)
    assert len(result.stderr.strip().splitlines()) == 1


def test_finding_9_min_free_beyond_the_disk_exits_2(tmp_path: Path) -> None:
    total_mb = shutil.disk_usage(tmp_path).total >> 20
    if total_mb >= 10_000_000:
        pytest.skip("this disk is larger than the key's upper bound")
    result = serve(tmp_path, SKYBELL_BRIDGE_RECORD_MIN_FREE_MB=str(total_mb + 1))
    assert "more than the whole disk" in refused(result, "record.min_free_mb")


def test_finding_9_clips_dir_that_is_a_file_exits_2(tmp_path: Path) -> None:
    (tmp_path / "clips").write_text("")
    assert "not a folder" in refused(serve(tmp_path), "storage.clips_dir")
    nested = str(tmp_path / "clips" / "inner")
    refused(serve(tmp_path, SKYBELL_BRIDGE_STORAGE_CLIPS_DIR=nested), "storage.clips_dir")


def test_finding_9_read_only_clips_dir_exits_2(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        # Permission bits do not stop root; sysfs refuses new files to everyone.
        clips = Path("/sys/fs")
        if not clips.is_dir():
            pytest.skip("no /sys/fs to stand for a read-only folder")
    else:
        clips = tmp_path / "ro"
        clips.mkdir()
        clips.chmod(0o555)
    result = serve(tmp_path, SKYBELL_BRIDGE_STORAGE_CLIPS_DIR=str(clips))
    assert "not writable" in refused(result, "storage.clips_dir")


@pytest.mark.parametrize(
    ("which", "key"), [("SERVER_PORT", "server.port"), ("SERVER_RTSP_PORT", "server.rtsp_port")]
)
def test_finding_9_port_in_use_exits_2_before_announcing(
    tmp_path: Path, busy_port: int, which: str, key: str
) -> None:
    result = serve(tmp_path, **{f"SKYBELL_BRIDGE_{which}": str(busy_port)})
    assert "already in use" in refused(result, key)
    assert "listening" not in result.stderr  # RTSP never claimed a port the start gave up on
    assert result.stdout == ""


@pytest.mark.parametrize("which", ["host", "rtsp_host"])
def test_finding_9_host_not_on_this_machine_exits_2(tmp_path: Path, which: str) -> None:
    # 192.0.2.1 (TEST-NET-1) is nobody's address here: the bind fails without any traffic.
    env = {f"SKYBELL_BRIDGE_SERVER_{which.upper()}": "192.0.2.1", **PASSWORD_ENV}
    result = serve(tmp_path, **env)
    assert "not an address of this machine" in refused(result, f"server.{which}")
    assert "listening" not in result.stderr
