"""What the simulated doorbell sends and what it counts: its media settings and peer counters.

The default keyframe mode of every ``SimMediaSettings`` built without an explicit ``keyframes``
comes from the env var ``SKYBELL_BRIDGE_SIM_KEYFRAMES`` (``on_request`` or ``gop``), so a whole
test run can be switched; settings a test passes explicitly win.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from typing import Literal

from bridge.media import aiortc_patch

__all__ = [
    "AUDIO_MIME",
    "KEYFRAMES_ENV",
    "LIVE_FIELDS",
    "MEDIA_LOG_ENV",
    "AudioCodec",
    "KeyframeMode",
    "Profile",
    "SimMediaSettings",
    "SimPeerStats",
    "check_resolution",
    "note_media_for_test",
    "resolution_for",
]

Profile = Literal["baseline", "main", "high"]
AudioCodec = Literal["opus", "pcmu", "pcma"]
KeyframeMode = Literal["on_request", "gop"]
KEYFRAMES_ENV = "SKYBELL_BRIDGE_SIM_KEYFRAMES"
# When set, a file the simulated doorbell appends each test's id to (pytest's
# PYTEST_CURRENT_TEST, inherited by subprocesses too) when it sends that test video: the test
# run's second pass, against a fixed-GOP doorbell, runs just those tests (scripts/test).
MEDIA_LOG_ENV = "SKYBELL_BRIDGE_SIM_MEDIA_LOG"
_KEYFRAME_MODES: tuple[KeyframeMode, ...] = ("on_request", "gop")
# What SimDoorbellPeer.update can change while a viewer is connected.
LIVE_FIELDS = frozenset({"loss_percent", "retransmit", "keyframes", "gop_seconds", "resolution"})

AUDIO_MIME = {"opus": "audio/opus", "pcmu": "audio/PCMU", "pcma": "audio/PCMA"}

# SkyBell image_quality -> (width, height, default bitrate). 0 is the 16:9 480p SkyBell uses.
_QUALITIES: dict[int, tuple[int, int, int]] = {
    0: (854, 480, 800_000),
    1: (1280, 720, 1_000_000),
    2: (1280, 720, 2_000_000),
    3: (1920, 1080, 4_000_000),
}


def resolution_for(image_quality: int) -> tuple[int, int, int]:
    """(width, height, bitrate) for a SkyBell ``image_quality`` setting (0-3)."""
    try:
        return _QUALITIES[image_quality]
    except KeyError:
        raise ValueError(f"image_quality must be 0-3, not {image_quality}") from None


def check_resolution(width: int, height: int) -> tuple[int, int]:
    """Validate a picture size (even, big enough for the stamp); return it."""
    if not (160 <= width <= 3840 and 90 <= height <= 2160) or width % 2 or height % 2:
        raise ValueError(f"resolution must be even, 160x90 to 3840x2160, not {width}x{height}")
    return width, height


def _default_keyframe_mode() -> KeyframeMode:
    value = os.environ.get(KEYFRAMES_ENV, "on_request").strip() or "on_request"
    for mode in _KEYFRAME_MODES:
        if value == mode:
            return mode
    raise ValueError(f"{KEYFRAMES_ENV} must be one of {_KEYFRAME_MODES}, not {value!r}")


@dataclass(frozen=True, slots=True)
class SimMediaSettings:
    """What the simulated doorbell sends, and which faults it injects."""

    image_quality: int = 1
    fps: int = 15
    bitrate: int | None = None  # None: the quality's default
    profile: Profile = "main"
    # on_request: one IDR, then only on PLI/FIR (libwebrtc). gop: also every gop_seconds.
    keyframes: KeyframeMode = field(default_factory=_default_keyframe_mode)
    gop_seconds: float = 2.0  # keyframe interval in "gop" mode
    resolution: tuple[int, int] | None = None  # None: the image_quality's size
    # Quality-scaler script: (seconds after the first frame, width, height), in order.
    scale_schedule: tuple[tuple[float, int, int], ...] = ()
    audio_codec: AudioCodec | None = "opus"  # None: no audio m-line answered
    # Whether the doorbell takes audio from a viewer (answers audio sendrecv, and hears it);
    # False answers sendonly, as a doorbell without a speaker would: talk is unsupported.
    talk: bool = True
    loss_percent: float = 0.0  # outgoing RTP dropped at random
    retransmit: bool = True  # False: NACKed packets are lost too (forces PLI recovery)
    cut_after: float | None = None  # seconds of media before the stream is cut
    trickle: bool = False  # answer without candidates and trickle them via on_candidate
    # Gather relay candidates only, through the live call's TURN server (a doorbell behind a
    # symmetric NAT): every path to it is then a TURN-only path.
    relay_only: bool = False
    label: str = "SIM DOORBELL"
    seed: int | None = None  # for reproducible loss

    def __post_init__(self) -> None:
        resolution_for(self.image_quality)
        if self.keyframes not in _KEYFRAME_MODES:
            raise ValueError(f"keyframes must be one of {_KEYFRAME_MODES}, not {self.keyframes!r}")
        if not self.gop_seconds > 0:
            raise ValueError(f"gop_seconds must be positive, not {self.gop_seconds}")
        if not 1 <= self.fps <= 60:
            raise ValueError(f"fps must be 1-60, not {self.fps}")
        if self.profile not in aiortc_patch.H264_PROFILE_LEVEL_IDS:
            raise ValueError(f"profile must be baseline, main or high, not {self.profile!r}")
        if self.audio_codec is not None and self.audio_codec not in AUDIO_MIME:
            raise ValueError(
                f"audio_codec must be opus, pcmu, pcma or null, not {self.audio_codec!r}"
            )
        if not 0 <= self.loss_percent <= 100:
            raise ValueError(f"loss_percent must be 0-100, not {self.loss_percent}")
        if self.resolution is not None:
            check_resolution(*self.resolution)
        for _at, width, height in self.scale_schedule:
            check_resolution(width, height)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the first frame."""
        return self.resolution or resolution_for(self.image_quality)[:2]


@dataclass(slots=True)
class SimPeerStats:
    """Counters a test can read (``as_dict`` for the control API)."""

    frames_sent: int = 0
    keyframes_sent: int = 0
    keyframe_requests: int = 0  # PLI + FIR received, whatever became of them
    pli_received: int = 0
    fir_received: int = 0
    nack_received: int = 0  # NACK packets
    nacked_packets: int = 0  # sequence numbers they asked for
    rtx_sent: int = 0  # retransmissions that left on the RTX SSRC
    keyframe_requests_honoured: int = 0
    keyframe_requests_ignored: int = 0  # the sum of the three reasons below
    ignored_throttled: int = 0
    ignored_wrong_ssrc: int = 0
    ignored_repeated_fir: int = 0
    resolution_changes: int = 0
    width: int = 0  # of the last frame sent
    height: int = 0
    rtp_dropped: int = 0

    def as_dict(self) -> dict[str, int]:
        """Every counter by name."""
        return {f.name: int(getattr(self, f.name)) for f in fields(self)}


_noted: set[str] = set()


def note_media_for_test() -> None:
    """Record, once per test, that the running test got video from a simulated doorbell."""
    path = os.environ.get(MEDIA_LOG_ENV)
    current = os.environ.get("PYTEST_CURRENT_TEST")
    if not path or not current:
        return
    test_id = current.rsplit(" (", 1)[0]  # "tests/x.py::test_y (call)" -> its node id
    if test_id not in _noted:
        _noted.add(test_id)
        with open(path, "a", encoding="utf-8") as log:
            log.write(test_id + "\n")
