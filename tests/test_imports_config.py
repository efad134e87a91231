"""Importing the settings loads the packages' options modules and nothing that runs.

Checked in a fresh interpreter: this one has long since imported everything.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import pytest

_FORBIDDEN = (
    "aiortc",
    "av",
    "numpy",
    "bridge.sim",
    "bridge.kvs.viewer",
    "bridge.skybell.client",
    "bridge.automation.engine",
    "bridge.media.hub",
    "aiomqtt",
    "bridge.mqtt.link",
)
# Packages whose exports are imported on first use (bridge.lazy), so their options stay light.
_LAZY = (
    "bridge.automation",
    "bridge.events",
    "bridge.hls",
    "bridge.kvs",
    "bridge.media",
    "bridge.mjpeg",
    "bridge.mqtt",
    "bridge.publish",
    "bridge.record",
    "bridge.skybell",
    "bridge.talk",
    "bridge.webrtc",
)


def _modules_after(statement: str) -> list[str]:
    code = f"import json, sys\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    loaded: list[str] = json.loads(out.stdout)
    return loaded


def _offenders(loaded: list[str]) -> list[str]:
    return [m for m in loaded if any(m == f or m.startswith(f + ".") for f in _FORBIDDEN)]


def test_importing_the_config_loads_nothing_that_runs() -> None:
    loaded = _modules_after("import bridge.config")
    assert _offenders(loaded) == []
    # It does load every package's options, the sections Settings is made of.
    for package in ("events", "hls", "media", "mjpeg", "mqtt", "record", "webrtc"):
        assert f"bridge.{package}.options" in loaded
    assert "bridge.automation.rules" in loaded  # [[rules]] are checked at load time


def test_loading_settings_loads_nothing_that_runs() -> None:
    rules = '[[rules]]\\non = [\\"doorbell\\"]\\ndo = [{ scene = \\"Porch light\\" }]\\n'
    loaded = _modules_after(
        "import pathlib, tempfile\n"
        "from bridge.config import load_settings\n"
        "path = pathlib.Path(tempfile.mkdtemp(), 'bridge.toml')\n"
        f'path.write_text("{rules}")\n'
        "load_settings(path, env={})"
    )
    assert _offenders(loaded) == []


def test_the_canary_would_notice() -> None:
    # The check itself: the runtime this test keeps out is really found when it is there.
    assert "bridge.media.hub" in _offenders(_modules_after("import bridge.service"))


@pytest.mark.parametrize("name", _LAZY)
def test_every_lazy_export_resolves(name: str) -> None:
    package = importlib.import_module(name)
    for export in package.__all__:
        assert getattr(package, export) is not None, f"{name}.{export}"
    with pytest.raises(AttributeError):
        _ = package.no_such_export
