"""The ``[record]`` and ``[s3]`` options: how clips are cut, kept and uploaded.

``RecordOptions`` is the ``[record]`` section itself, per-device overrides included
(``[record.devices.NAME]``, a ``DeviceRecordOptions`` each); ``for_device`` resolves them into
the ``DeviceOptions`` one clip is cut with. Fields marked ``INTERNAL`` are tuning the code and
tests may set, not config keys.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from bridge.options import CENTURY_DAYS, GIB, INTERNAL, MAX_GB, MIB, bounds

__all__ = ["DeviceOptions", "DeviceRecordOptions", "RecordOptions", "S3Options"]


def _gib(value: float | None) -> int | None:
    return None if value is None else int(value * GIB)


@dataclass(frozen=True)
class DeviceRecordOptions:
    """One doorbell's overrides of [record] (unset keys keep the global value)."""

    preroll: float | None = field(default=None, metadata=bounds(0, 60))
    postroll: float | None = field(default=None, metadata=bounds(0, 600))
    max_length: float | None = field(default=None, metadata=bounds(1, 3600))
    record_motion: bool | None = None
    keep_warm: bool | None = None
    audio: bool | None = None
    # This device's clips, in total.
    max_gb: float | None = field(default=None, metadata=bounds(0, MAX_GB))
    max_age_days: float | None = field(default=None, metadata=bounds(0, CENTURY_DAYS))

    @property
    def max_bytes(self) -> int | None:
        """``max_gb`` in bytes; None for no limit."""
        return _gib(self.max_gb)


@dataclass(frozen=True)
class DeviceOptions:
    """The options in force for one doorbell (globals with its overrides applied)."""

    preroll: float
    postroll: float
    max_length: float
    record_motion: bool
    keep_warm: bool
    audio: bool
    max_bytes: int | None
    max_age_days: float | None


@dataclass(frozen=True)
class RecordOptions:
    """Event clips: how they are cut and how much of them is kept.

    ``devices`` is keyed by stream name (slug) or device id. ``reserve_bytes`` is the room a new
    clip must find before it starts (about two minutes of 2 Mbit/s video), so a clip is refused
    up front rather than cut short at once.
    """

    # Seconds before the event, taken from the stream's buffer; only there when the live
    # session was already running (see keep_warm).
    preroll: float = field(default=5.0, metadata=bounds(0, 60))
    postroll: float = field(default=10.0, metadata=bounds(0, 600))
    max_length: float = field(default=120.0, metadata=bounds(1, 3600))
    record_motion: bool = True
    # Keep every doorbell's live session open so events always have pre-roll. This holds the
    # doorbell's camera and radio on and a cloud session open around the clock: it drains a
    # battery doorbell in days. Leave it off unless the doorbell is wired.
    keep_warm: bool = False
    audio: bool = True
    # At most 10 TB: more is a value given in bytes or KB by mistake (and `serve` also refuses
    # more than the disk holding the clips), which would refuse every clip as "storage full".
    min_free_mb: int = field(default=1024, metadata=bounds(0, 10_000_000))
    max_total_gb: float | None = field(default=None, metadata=bounds(0, MAX_GB))
    max_age_days: float | None = field(default=None, metadata=bounds(0, CENTURY_DAYS))
    # Per-doorbell overrides: [record.devices.front-door] preroll = 8.0
    devices: dict[str, DeviceRecordOptions] = field(default_factory=dict)
    reserve_bytes: int = field(default=32 * MIB, metadata=INTERNAL)
    retention_interval: float = field(default=600.0, metadata=INTERNAL)
    space_check_interval: float = field(default=2.0, metadata=INTERNAL)
    fragment_seconds: float = field(default=1.0, metadata=INTERNAL)
    # How long a clip waits for the first keyframe.
    start_timeout: float = field(default=30.0, metadata=INTERNAL)

    def __post_init__(self) -> None:
        # The config keys' ranges are the loader's business; this guards the tuning values.
        if self.fragment_seconds <= 0:
            raise ValueError("fragment_seconds must be > 0")

    @property
    def min_free_bytes(self) -> int:
        """``min_free_mb`` in bytes."""
        return self.min_free_mb * MIB

    @property
    def max_total_bytes(self) -> int | None:
        """``max_total_gb`` in bytes; None for no limit."""
        return _gib(self.max_total_gb)

    def for_device(self, device_id: str, name: str = "") -> DeviceOptions:
        """The options for one doorbell: its overrides (by name, else id) over the globals."""
        over = self.devices.get(name) or self.devices.get(device_id) or DeviceRecordOptions()
        # An override wins when set; max_bytes exists per device only (None: no limit).
        values: dict[str, Any] = {}
        for f in dataclasses.fields(DeviceOptions):
            mine = getattr(over, f.name)
            values[f.name] = mine if mine is not None else getattr(self, f.name, None)
        return DeviceOptions(**values)


@dataclass(frozen=True)
class S3Options:
    """Uploading clips and thumbnails to S3 (or any S3-compatible store); times are seconds.

    Credentials come from boto3's usual sources (AWS_* variables, ~/.aws, instance roles),
    never from the config file.
    """

    enabled: bool = False
    bucket: str = ""
    prefix: str = ""
    endpoint_url: str = ""  # empty: AWS; set it for MinIO, Backblaze, Wasabi...
    region: str = ""  # empty: from the environment / AWS config
    delete_local: bool = False  # keep only the S3 copy once uploaded (the index row stays)
    addressing_style: Literal["auto", "path", "virtual"] = "auto"  # "path" for most MinIOs
    # Queue every finished clip, not only those enqueue()d.
    upload_existing: bool = field(default=True, metadata=INTERNAL)
    # First retry delay, doubled per failed attempt.
    backoff: float = field(default=5.0, metadata=INTERNAL)
    max_backoff: float = field(default=3600.0, metadata=INTERNAL)
    # How often new finished clips are looked for.
    scan_interval: float = field(default=60.0, metadata=INTERNAL)
    connect_timeout: float = field(default=10.0, metadata=INTERNAL)
    read_timeout: float = field(default=60.0, metadata=INTERNAL)

    def __post_init__(self) -> None:
        if self.backoff <= 0 or self.max_backoff < self.backoff:
            raise ValueError("backoff must be > 0 and max_backoff >= backoff")

    def for_instance(self, instance: str) -> S3Options:
        """These options with ``bridge.instance`` under the prefix: ``<prefix>/<instance>/...``,
        so bridges sharing a bucket never write over each other's clips."""
        if not instance:
            return self
        prefix = self.prefix.strip("/")
        return dataclasses.replace(self, prefix=f"{prefix}/{instance}" if prefix else instance)

    def key_for(self, relative: str) -> str:
        """The object key of a file at ``relative`` in the clips folder."""
        prefix = self.prefix.strip("/")
        return f"{prefix}/{relative}" if prefix else relative
