"""Production imports no simulator: starting the CLI, or the bridge itself, loads no ``bridge.sim``.

Each check runs in a fresh interpreter, since this test process has imported everything.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import bridge

# The tree this test belongs to, first on the path, whatever the editable install points at.
ROOT = Path(bridge.__file__).resolve().parents[1]


def loaded_after(code: str) -> list[str]:
    """The modules a fresh interpreter holds after running ``code``."""
    script = textwrap.dedent(code) + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))\n"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    modules: list[str] = json.loads(result.stdout.splitlines()[-1])
    return modules


def simulator(modules: list[str]) -> list[str]:
    return [m for m in modules if m == "bridge.sim" or m.startswith("bridge.sim.")]


def test_importing_the_cli_loads_no_simulator_and_no_media_stack() -> None:
    modules = loaded_after(
        """
        import contextlib, io
        import bridge.__main__
        with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
            bridge.__main__.main(["--help"])  # builds every command's parser
        """
    )
    assert "bridge.__main__" in modules
    assert "bridge.commands.serve" in modules
    assert simulator(modules) == []
    # Only the commands that stream (live, serve) need WebRTC and PyAV, and they import them.
    heavy = {"aiortc", "av", "numpy"}
    assert heavy.isdisjoint(modules), sorted(heavy & set(modules))


def test_the_bridge_itself_loads_no_simulator() -> None:
    modules = loaded_after("import bridge.service, bridge.app, bridge.cloud")
    assert "bridge.service" in modules
    assert simulator(modules) == []


def test_the_simulator_is_loaded_when_a_command_runs_it() -> None:
    # The other side of the coin: the lazy imports are real imports, not dead code.
    modules = loaded_after(
        """
        import asyncio
        from bridge.cloud import open_cloud
        from bridge.config import load_settings

        async def main():
            async with open_cloud(load_settings(None, {}), notice=lambda line: None) as cloud:
                assert cloud.sim is not None

        asyncio.run(main())
        """
    )
    assert "bridge.sim.world" in modules
