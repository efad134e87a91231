"""The CLI as a user runs it: a subprocess, with no config, against the built-in simulator."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ENV_KEEP = ("PATH", "HOME", "LANG", "SYSTEMROOT", "TMPDIR")


def run(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k in ENV_KEEP}
    return subprocess.run(
        [sys.executable, "-m", "bridge", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**base, **(env or {})},
        cwd=cwd,
        check=False,
    )


def test_devices_against_the_simulator() -> None:
    result = run("devices")
    assert result.returncode == 0, result.stderr
    assert "using the built-in simulator" in result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["NAME", "STREAM", "ID"]
    assert any(line.startswith("Front Door") and "front-door" in line for line in lines)
    assert any(line.startswith("Back Garden") for line in lines)
    assert "127.0.0.21" in result.stdout


def test_snapshot_writes_a_jpeg(tmp_path: Path) -> None:
    out = tmp_path / "x.jpg"
    result = run("snapshot", "Front Door", "-o", str(out))
    assert result.returncode == 0, result.stderr
    data = out.read_bytes()
    assert data[:3] == b"\xff\xd8\xff"
    import av

    with av.open(str(out)) as container:
        frame = next(container.decode(video=0))
        assert (frame.width, frame.height) == (640, 360)


def test_unknown_device_exits_2() -> None:
    result = run("snapshot", "Garage", "-o", "/dev/null")
    assert result.returncode == 2
    assert "unknown device 'Garage'" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"SKYBELL_BRIDGE_SERVER_PORT": "nope"}, "server.port: expected an integer"),
        ({"SKYBELL_BRIDGE_LOG_FORMAT": "xml"}, "log.format: expected one of text, json"),
        ({"SKYBELL_BRIDGE_CONFIG": "/nonexistent/bridge.toml"}, "does not exist"),
    ],
)
def test_bad_config_exits_2_with_one_line(env: dict[str, str], needle: str) -> None:
    result = run("devices", env=env)
    assert result.returncode == 2
    assert needle in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_unreachable_cloud_is_one_clear_line() -> None:
    env = {
        "SKYBELL_BRIDGE_SKYBELL_API_URL": "http://127.0.0.1:9/api/v5",
        "SKYBELL_BRIDGE_SKYBELL_API_KEY": "11111111-2222-3333-4444-555555555555",
    }
    result = run("devices", env=env)
    assert result.returncode == 1
    assert "cannot reach the SkyBell cloud" in result.stderr
    assert "11111111-2222" not in result.stderr
    assert "Traceback" not in result.stderr


def test_help_lists_commands() -> None:
    result = run("--help")
    assert result.returncode == 0
    for command in ("devices", "snapshot", "sim", "serve"):
        assert command in result.stdout


def test_switchbot_commands_use_the_simulated_account() -> None:
    scenes = run("scenes")
    assert scenes.returncode == 0, scenes.stderr
    assert "Porch light on" in scenes.stdout
    devices = run("switchbot", "devices")
    assert devices.returncode == 0, devices.stderr
    assert "Porch Plug" in devices.stdout
    assert "infrared" in devices.stdout


def test_triggers_need_a_secret_then_register(tmp_path: Path) -> None:
    refused = run("triggers", "add", "--url", "https://bridge.example")
    assert refused.returncode == 2
    assert "events.webhook_secret" in refused.stderr
    env = {"SKYBELL_BRIDGE_EVENTS_WEBHOOK_SECRET": "s3cret-value"}
    added = run("triggers", "add", "--url", "https://bridge.example", "front-door", env=env)
    assert added.returncode == 0, added.stderr
    assert "doorbell, motion" in added.stdout
    assert "s3cret-value" not in added.stdout + added.stderr


def test_clips_commands_on_an_empty_folder(tmp_path: Path) -> None:
    listed = run("clips", "list", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split()[:3] == ["ID", "DEVICE", "EVENT"]
    reindexed = run("clips", "reindex", cwd=tmp_path)
    assert reindexed.returncode == 0, reindexed.stderr
    assert "added: 0" in reindexed.stdout
    assert (tmp_path / "clips" / "index.sqlite3").exists()


def test_sim_press_without_a_simulator_is_one_clear_line() -> None:
    result = run("sim", "press", "Front Door", "--url", "http://127.0.0.1:9")
    assert result.returncode == 1
    assert "no simulator at http://127.0.0.1:9" in result.stderr
    assert "Traceback" not in result.stderr


def test_clips_sync_downloads_the_cloud_recordings(tmp_path: Path) -> None:
    result = run("clips", "sync", "--since", "2d", "--device", "front-door", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "failed 0" in result.stdout
    assert "clips" in result.stderr  # the progress line
    listed = run("clips", "list", cwd=tmp_path)
    rows = [line.split() for line in listed.stdout.splitlines()[1:]]
    assert rows
    assert {(r[1], r[7]) for r in rows} == {("front-door", "cloud")}  # START has a space
    bad = run("clips", "sync", "--since", "yesterday", cwd=tmp_path)
    assert bad.returncode == 2
    assert "--since" in bad.stderr
