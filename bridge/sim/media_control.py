"""Parsing for ``POST /_sim/doorbells/{name_or_id}/media``: JSON in, SimMediaSettings changes out.

JSON is loose (``true`` is a number to Python, a list is not a tuple), so each field is checked
for its JSON type here; the value ranges are SimMediaSettings' own checks. Everything raises
ValueError with a one-line reason, which the route returns as a 400.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .doorbell import SimMediaSettings, check_resolution

__all__ = ["parse_media_changes", "settings_json"]


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number")
    return float(value)


def _integer(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer")
    return value


def _string(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string")
    return value


def _boolean(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false")
    return value


def _size(name: str, value: Any) -> tuple[int, int]:
    if not isinstance(value, list) or len(value) != 2:
        raise ValueError(f"{name} must be [width, height]")
    return check_resolution(_integer(name, value[0]), _integer(name, value[1]))


def _schedule(name: str, value: Any) -> tuple[tuple[float, int, int], ...]:
    if not isinstance(value, list):
        raise ValueError(f"{name} must be a list of [seconds, width, height]")
    steps = []
    for step in value:
        if not isinstance(step, list) or len(step) != 3:
            raise ValueError(f"{name} must be a list of [seconds, width, height]")
        width, height = _size(name, step[1:])
        steps.append((_number(name, step[0]), width, height))
    return tuple(steps)


# field -> (parser, may be null)
_FIELDS: dict[str, tuple[Any, bool]] = {
    "keyframes": (_string, False),
    "gop_seconds": (_number, False),
    "resolution": (_size, True),
    "scale_schedule": (_schedule, False),
    "image_quality": (_integer, False),
    "fps": (_integer, False),
    "bitrate": (_integer, True),
    "profile": (_string, False),
    "audio_codec": (_string, True),
    "talk": (_boolean, False),
    "loss_percent": (_number, False),
    "retransmit": (_boolean, False),
    "cut_after": (_number, True),
    "trickle": (_boolean, False),
    "relay_only": (_boolean, False),
    "label": (_string, False),
    "seed": (_integer, True),
}


def parse_media_changes(body: Any, current: SimMediaSettings) -> dict[str, Any]:
    """Validate a JSON object of setting changes against ``current``; return them typed."""
    if not isinstance(body, dict) or not body:
        raise ValueError("expected a JSON object of media settings to change")
    changes: dict[str, Any] = {}
    for name, value in body.items():
        spec = _FIELDS.get(name)
        if spec is None:
            raise ValueError(f"unknown media setting {name!r}; known: {', '.join(_FIELDS)}")
        parse, nullable = spec
        if value is None:
            if not nullable:
                raise ValueError(f"{name} cannot be null")
            changes[name] = None
        else:
            changes[name] = parse(name, value)
    # SimMediaSettings checks the ranges (and raises ValueError with the reason).
    dataclasses.replace(current, **changes)
    return changes


def _as_kwargs(settings: SimMediaSettings) -> dict[str, Any]:
    return {name: getattr(settings, name) for name in _FIELDS}


def settings_json(settings: SimMediaSettings) -> dict[str, Any]:
    """The settings as JSON (tuples as lists), with the size actually sent first."""
    result = _as_kwargs(settings)
    result["resolution"] = list(settings.size)
    result["scale_schedule"] = [list(step) for step in settings.scale_schedule]
    return result
