"""The built wheel, installed outside this checkout, serves the page (issue 15, part 5).

Nothing is downloaded: the wheel is built with this venv's setuptools (``--no-build-isolation``)
and installed with ``--no-deps``; the temporary venv reaches the dependencies through a ``.pth``
line naming this venv's site-packages. A path line in a ``.pth`` file adds the folder without
running the ``.pth`` files inside it, so this checkout's editable finder stays out and
``import bridge`` can only find the installed wheel.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
from pathlib import Path

import aiohttp
import pytest

REPO = Path(__file__).resolve().parents[1]


def _build_wheel(tmp_path: Path) -> Path:
    # From a copy, so the build leaves no build/ or egg-info behind in the working tree.
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "bridge", src / "bridge", ignore=shutil.ignore_patterns("__pycache__"))
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check",
         "--no-deps", "--no-build-isolation", "--no-index", "-w", str(dist), str(src)],
        check=True, timeout=120,
    )  # fmt: skip
    (wheel,) = dist.glob("skybell_bridge-*.whl")
    return wheel


def _venv_with(wheel: Path, tmp_path: Path) -> Path:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    (Path(site) / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet",
         "--disable-pip-version-check", "--no-index", "--no-deps", str(wheel)],
        check=True, timeout=120,
    )  # fmt: skip
    where = subprocess.run(
        [python, "-c", "import bridge; print(bridge.__file__)"],
        check=True, capture_output=True, text=True, cwd=tmp_path,
    ).stdout.strip()  # fmt: skip
    assert Path(where).is_relative_to(venv), where  # the wheel, not this checkout
    return venv


@pytest.mark.slow
async def test_the_installed_wheel_serves_the_page(tmp_path: Path) -> None:
    wheel = _build_wheel(tmp_path)
    venv = _venv_with(wheel, tmp_path)

    run_dir = tmp_path / "run"  # no web/ folder here or above it to be found by accident
    run_dir.mkdir()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("SKYBELL_BRIDGE_") and k not in ("PYTHONPATH", "VIRTUAL_ENV")
    }
    env |= {"SKYBELL_BRIDGE_SERVER_PORT": "0", "SKYBELL_BRIDGE_SERVER_RTSP_PORT": "0"}
    proc = await asyncio.create_subprocess_exec(
        venv / "bin" / "skybell-bridge", "serve", cwd=run_dir,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    assert proc.stdout is not None
    assert proc.stderr is not None
    try:
        lines = [(await asyncio.wait_for(proc.stdout.readline(), 60)).decode() for _ in range(3)]
        http_url = lines[1].split()[-1]
        async with aiohttp.ClientSession() as http:
            async with http.get(http_url) as resp:
                assert resp.status == 200
                assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
                assert '<script type="module"' in await resp.text()
            async with http.get(http_url + "js/main.js") as resp:
                assert resp.status == 200
                assert resp.headers["Content-Type"] == "text/javascript; charset=utf-8"
                assert "import" in await resp.text()
    finally:
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 30)
        err = (await proc.stderr.read()).decode()
    assert "no web page" not in err
    assert "Traceback" not in err
    assert code == 0
