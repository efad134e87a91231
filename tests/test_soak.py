"""The soak benchmark's 5-minute smoke run: nothing lost and no consumer reconnected.

scripts/bench/soak.py runs the simulator and `serve` as separate processes with an RTSP
recorder, LL-HLS, MJPEG and WHEP viewers, presses and rotating faults. The suite runs twice
(scripts/test sets SKYBELL_BRIDGE_SIM_KEYFRAMES=gop for the second pass), so each pass soaks
one keyframe mode. Timings are printed by the script, never asserted here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_five_minute_soak_loses_nothing(tmp_path: Path) -> None:
    mode = os.environ.get("SKYBELL_BRIDGE_SIM_KEYFRAMES") or "on_request"
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts/bench/soak.py"), "--minutes", "5",
         "--keyframes", mode, "--keep", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=560, check=False,
    )  # fmt: skip
    lines = [ln for ln in result.stdout.splitlines() if ln.startswith("SOAK-SUMMARY ")]
    assert lines, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads(lines[-1].removeprefix("SOAK-SUMMARY "))
    report = result.stdout[-4000:]
    assert summary["backwards"] == 0, report
    assert summary["reconnects"] == {}, report
    assert summary["presses"] >= 2, report
    assert summary["events_lost"] == 0, report
    assert summary["clips_lost"] == 0, report
    assert summary["unplayable"] == [], report
    assert summary["failures"] == [], report
    assert result.returncode == 0, report
