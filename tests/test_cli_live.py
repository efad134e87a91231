"""``skybell-bridge live`` as a user runs it: a subprocess against the built-in simulator."""

from __future__ import annotations

import re
from pathlib import Path

import av
import pytest

from .test_cli import run

pytestmark = pytest.mark.slow


def test_live_records_a_remuxed_mp4_and_reports_it(tmp_path: Path) -> None:
    out = tmp_path / "live.mp4"
    result = run("live", "Front Door", "--duration", "2", "-o", str(out))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 5, result.stdout
    saved = re.fullmatch(
        rf"saved {re.escape(str(out))}: (\d+) frames in ([\d.]+) s \(([\d.]+) fps\)", lines[0]
    )
    assert saved, lines[0]
    frames, seconds = int(saved.group(1)), float(saved.group(2))
    assert seconds >= 1.9
    assert frames >= 10
    assert re.fullmatch(r"time to first frame: \d+\.\d{3} s after the live-call response", lines[1])
    assert lines[2] == "video: h264 1280x720 (copied, not re-encoded)"
    assert lines[3] == "audio: aac (from opus)"
    assert lines[4] == "reconnects: 0"
    assert "using the built-in simulator" in result.stderr
    with av.open(str(out)) as container:
        video = container.streams.video[0]
        assert (video.codec_context.name, video.width, video.height) == ("h264", 1280, 720)
        assert container.streams.audio[0].codec_context.name == "aac"
        assert sum(1 for _ in container.demux(video)) >= frames


def test_live_without_video_in_time_is_one_clear_line(tmp_path: Path) -> None:
    # The whole run may take --duration plus --timeout: with 0.01 s to spare, the live call and
    # the WebRTC setup alone take longer than that, so the recording cannot finish in time.
    out = tmp_path / "late.mp4"
    result = run("live", "front-door", "--duration", "2", "--timeout", "0.01", "-o", str(out))
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == "error: no live video from Front Door within 0.01 s"
    assert "Traceback" not in result.stderr


def test_live_unknown_device_exits_2(tmp_path: Path) -> None:
    result = run("live", "Garage", "-o", str(tmp_path / "x.mp4"))
    assert result.returncode == 2
    assert "unknown device 'Garage'" in result.stderr
    assert "Traceback" not in result.stderr
