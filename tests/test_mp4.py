"""MP4 remuxing: H.264 copied (never re-encoded), audio to AAC, sized from the SPS."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import av
import numpy as np
import pytest

from bridge.media.mp4 import Mp4Writer
from bridge.media.packet import MediaPacket, extract_sps_pps
from bridge.media.sps import parse_sps

from .h264util import encode


def g711_packets(seconds: float, codec: str = "pcm_mulaw") -> list[MediaPacket]:
    enc = av.CodecContext.create(codec, "w")
    enc.sample_rate = 8000
    enc.layout = "mono"
    enc.format = "s16"
    enc.open()
    out = []
    for n in range(int(seconds * 50)):  # 20 ms frames, as RTP carries them
        t = np.arange(160) + n * 160
        tone = (np.sin(2 * np.pi * 440 * t / 8000) * 8000).astype(np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(tone, format="s16", layout="mono")
        frame.sample_rate = 8000
        for pkt in enc.encode(frame):
            out.append(MediaPacket("audio", "pcmu", bytes(pkt), n * 160, 8000, True, 0.0))
    return out


def test_sps_dimensions() -> None:
    for size in (64, 128):
        sps, _ = extract_sps_pps(encode(1, size=size)[0].data)
        assert sps is not None
        info = parse_sps(sps)
        assert (info.width, info.height) == (size, size)
        assert info.profile_level_id.startswith("42")  # baseline from ultrafast
    with pytest.raises(ValueError, match="not an SPS"):
        parse_sps(b"\x68\x00")


def test_remux_video_and_audio(tmp_path: Path) -> None:
    video = list(encode(45, fps=15, size=128))  # 3 s
    audio = g711_packets(3.0)
    merged = sorted(
        [dataclasses.replace(p, arrival=p.pts / 90000) for p in video]
        + [dataclasses.replace(p, arrival=p.pts / 8000) for p in audio],
        key=lambda p: p.arrival,
    )
    out = tmp_path / "clip.mp4"
    writer = Mp4Writer(out)
    for p in merged:
        writer.write(p)
    writer.close()
    writer.close()
    assert writer.frames == 45
    probe = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-count_packets",
            "-show_entries",
            "stream=codec_name,width,height,nb_read_packets",
            "-of",
            "csv=p=0",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert probe[0] == "h264,128,128,45"
    assert probe[1].startswith("aac,")
    # The copied bitstream is byte-identical to what came in: no re-encode.
    with av.open(str(out)) as container:
        first = next(container.demux(video=0))
        assert bytes(first).endswith(video[0].data[-24:])


def test_no_keyframe_no_file(tmp_path: Path) -> None:
    writer = Mp4Writer(tmp_path / "none.mp4")
    for p in encode(10, gop=10)[1:]:
        writer.write(p)
    writer.close()
    assert not (tmp_path / "none.mp4").exists()
