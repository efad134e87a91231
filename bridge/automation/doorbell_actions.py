"""The doorbell actions a rule can take besides recording and warming, as injected callables.

The engine must not import the talk service, the SkyBell client or sockets (see
``bridge.automation.engine``), so ``bridge.routes.automation`` builds these from the app's parts.
Each returns the one-line detail stored with the event, or raises (``BridgeError`` or any
exception: the engine records it as the action's failure).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from bridge.skybell.payloads import Event

__all__ = ["Chimer", "DoorbellActions", "LedSetter", "Sayer", "TonePlayer"]

Sayer = Callable[[Event, Path], Awaitable[str]]  # play a file to the event's doorbell
TonePlayer = Callable[[Event, str], Awaitable[str]]  # the cloud's play-tone call
LedSetter = Callable[[Event, str, float], Awaitable[str]]  # colour for N s, then restore
ClipStopper = Callable[[Event], Awaitable[str]]  # end the doorbell's running clip
Chimer = Callable[[str, int | None], Awaitable[str]]  # broadcast the button packet (addr, port)


@dataclass(frozen=True)
class DoorbellActions:
    """What the engine calls for say, tone, led, stop_recording and chime; None: unavailable."""

    say: Sayer | None = None
    tone: TonePlayer | None = None
    led: LedSetter | None = None
    stop_recording: ClipStopper | None = None
    chime: Chimer | None = None
