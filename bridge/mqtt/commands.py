"""Command payloads from Home Assistant (or anyone on the broker) parsed, or refused in one line.

Any bytes give either a value or a ``CommandError`` whose message is one short line naming the
control and what was wrong, echoing a bounded ASCII rendering of the payload: it goes to the log
and to ``<topic>/bridge/error`` as is. The payloads are HA's defaults: ``ON``/``OFF`` for a
switch, ``PRESS`` for a button, the option itself for a select, a decimal for a number, and the
JSON schema's object for a light.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["CommandError", "Control", "ControlKind", "parse_command"]

ControlKind = Literal["switch", "button", "select", "number", "light"]

_MAX_PAYLOAD = 1024  # far more than any command needs; a megabyte of JSON is not parsed
_SHOWN = 40


class CommandError(ValueError):
    """A command payload that cannot be obeyed; the message is one line."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Control:
    """What a command topic controls, and so what its payload must be."""

    key: str
    kind: ControlKind
    options: tuple[str, ...] = ()  # select
    minimum: int = 0  # number
    maximum: int = 0


def parse_command(control: Control, payload: bytes) -> Any:
    """The value a payload asks for: bool (switch), None (button), str (select), int (number),
    or a partial settings dict (light, e.g. ``{"led": True, "led_color": "#FF0000"}``)."""
    text = _text(control.key, payload)
    if control.kind == "light":
        return _light(control.key, text)
    if text[:1] in ("{", "[", '"'):
        raise CommandError(control.key, f"expected a plain value, not JSON: {_shown(text)}")
    if control.kind == "switch":
        word = text.upper()
        if word not in ("ON", "OFF"):
            raise CommandError(control.key, f"expected ON or OFF, got {_shown(text)}")
        return word == "ON"
    if control.kind == "button":
        # Not the empty payload: that is what clearing a retained message sends.
        if text.upper() != "PRESS":
            raise CommandError(control.key, f"expected PRESS, got {_shown(text)}")
        return None
    if control.kind == "select":
        if text not in control.options:
            choices = ", ".join(control.options)
            raise CommandError(control.key, f"{_shown(text)} is not one of: {choices}")
        return text
    return _number(control, text)


def _text(key: str, payload: bytes) -> str:
    if len(payload) > _MAX_PAYLOAD:
        raise CommandError(key, f"payload of {len(payload)} bytes (at most {_MAX_PAYLOAD})")
    try:
        return payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise CommandError(key, f"payload is not UTF-8 text: {_shown(payload)}") from None


def _number(control: Control, text: str) -> int:
    try:
        value = float(text)
    except ValueError:
        raise CommandError(control.key, f"expected a number, got {_shown(text)}") from None
    if not math.isfinite(value) or not value.is_integer():
        raise CommandError(control.key, f"expected a whole number, got {_shown(text)}")
    if not control.minimum <= value <= control.maximum:
        raise CommandError(
            control.key, f"{_shown(text)} is out of range {control.minimum} to {control.maximum}"
        )
    return int(value)


def _light(key: str, text: str) -> dict[str, Any]:
    try:
        body = json.loads(text)
    except (ValueError, RecursionError):
        raise CommandError(
            key, f'expected a JSON object like {{"state": "ON"}}, got {_shown(text)}'
        ) from None
    if not isinstance(body, dict):
        raise CommandError(
            key, f'expected a JSON object like {{"state": "ON"}}, got {_shown(text)}'
        )
    state = body.get("state")
    if state not in ("ON", "OFF"):
        raise CommandError(key, f"state must be ON or OFF, got {_shown(state)}")
    if state == "OFF":
        return {"led": False}
    partial: dict[str, Any] = {"led": True}
    if "color" in body:
        partial["led_color"] = _colour(key, body["color"])
    return partial


def _colour(key: str, color: Any) -> str:
    """``{"r": 255, "g": 0, "b": 0}`` as ``#FF0000``: the only colour form an RGB light gets."""
    if not isinstance(color, dict) or not {"r", "g", "b"} <= color.keys():
        raise CommandError(key, f'unknown colour {_shown(color)}; expected {{"r", "g", "b"}}')
    channels = [color["r"], color["g"], color["b"]]
    if not all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in channels):
        raise CommandError(key, f"unknown colour {_shown(color)}; r, g, b are 0 to 255")
    if channels == [0, 0, 0]:
        raise CommandError(key, "black is the LED off; send state OFF instead")
    return "#{:02X}{:02X}{:02X}".format(*channels)


def _shown(value: Any) -> str:
    """A value as bounded ASCII on one line, whatever it holds."""
    if isinstance(value, bytes | str):
        text = ascii(value)
    else:
        try:
            text = json.dumps(value, ensure_ascii=True)
        except (TypeError, ValueError, RecursionError):
            text = type(value).__name__
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."
