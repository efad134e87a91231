"""Recording options: global defaults plus per-device overrides, resolved once per clip."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DeviceOptions", "DeviceRecordOptions", "RecordOptions"]

_MIB = 1 << 20


@dataclass(frozen=True)
class DeviceRecordOptions:
    """Overrides for one doorbell; ``None`` keeps the global value."""

    preroll: float | None = None
    postroll: float | None = None
    max_length: float | None = None
    record_motion: bool | None = None
    keep_warm: bool | None = None
    audio: bool | None = None
    max_bytes: int | None = None  # this device's clips, in total
    max_age_days: float | None = None


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
    """How clips are cut, where the storage limits lie, and how often retention runs.

    ``devices`` is keyed by stream name (slug) or device id. Sizes are bytes; ``None`` means
    no limit. ``reserve_bytes`` is the room a new clip must find before it starts (about two
    minutes of 2 Mbit/s video), so a clip is refused up front rather than cut short at once.
    """

    preroll: float = 5.0
    postroll: float = 10.0
    max_length: float = 120.0
    record_motion: bool = True
    keep_warm: bool = False
    audio: bool = True
    min_free_bytes: int = 1024 * _MIB
    max_total_bytes: int | None = None
    max_age_days: float | None = None
    reserve_bytes: int = 32 * _MIB
    retention_interval: float = 600.0
    space_check_interval: float = 2.0
    fragment_seconds: float = 1.0
    start_timeout: float = 30.0  # how long a clip waits for the first keyframe
    devices: Mapping[str, DeviceRecordOptions] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("preroll", "postroll"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.max_length <= 0 or self.fragment_seconds <= 0:
            raise ValueError("max_length and fragment_seconds must be > 0")

    def for_device(self, device_id: str, name: str = "") -> DeviceOptions:
        """The options for one doorbell: its overrides (by name, else id) over the globals."""
        over = self.devices.get(name) or self.devices.get(device_id) or DeviceRecordOptions()
        # Only the whole-folder limits live on RecordOptions; max_bytes is per device only.
        values: dict[str, Any] = {
            f.name: getattr(self, f.name, None) for f in dataclasses.fields(DeviceOptions)
        }
        values.update({k: v for k, v in dataclasses.asdict(over).items() if v is not None})
        return DeviceOptions(**values)
