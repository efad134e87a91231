"""What an options dataclass may say about its fields, for the settings loader to read.

Each package owns one frozen dataclass of its options (``bridge.record.options.RecordOptions``,
``bridge.mjpeg.options.MjpegOptions``...), and ``bridge.config.Settings`` composes them, one per
TOML section. A field is a config key unless its metadata says ``INTERNAL``; a number's accepted
range is ``bounds(lo, hi)``. This module imports nothing of the bridge, so an options module can
use it without pulling in the config loader or anything that runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Final

__all__ = ["CENTURY_DAYS", "GIB", "INTERNAL", "MAX_GB", "MIB", "bounds", "config_fields"]

MIB: Final = 1 << 20
GIB: Final = 1 << 30
# Upper bounds for keys with no natural one: far beyond any real use, and small enough that
# arithmetic on them (timedelta, bytes) never overflows.
CENTURY_DAYS: Final = 36_500
MAX_GB: Final = 1_000_000  # a petabyte

# A tuning value the code (and tests) may set, but not a key of the config file.
INTERNAL: Final[Mapping[str, Any]] = {"internal": True}


def bounds(lo: float, hi: float | None = None) -> dict[str, Any]:
    """Field metadata: the loader accepts numbers from ``lo`` to ``hi`` (inclusive)."""
    return {"range": (lo, hi)}


def config_fields(cls: type[Any]) -> list[dataclasses.Field[Any]]:
    """The fields of an options dataclass that are config keys (every one not ``INTERNAL``)."""
    return [f for f in dataclasses.fields(cls) if not f.metadata.get("internal", False)]
