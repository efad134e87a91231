"""What several commands share: printing tables and choosing devices."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from bridge.config import Settings
from bridge.skybell import Device, find_device

__all__ = ["Command", "choose_devices", "print_table"]

Command = Callable[[Settings, argparse.Namespace], Coroutine[Any, Any, int]]


def print_table(rows: Sequence[Sequence[str]]) -> None:
    """Left-aligned columns, the first row as the header."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def choose_devices(devices: list[Device], names: Sequence[str]) -> list[Device]:
    """The named devices (name, stream name or id), or all of them when none are named."""
    return [find_device(devices, n) for n in names] if names else devices
