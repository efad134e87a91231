"""The ``[[publish]]`` tables: which stream is pushed to which media server, and how.

Parsed here rather than as a config section because it is an array of tables (like
``[[rules]]``); ``bridge.config`` composes the result into ``Settings.publish``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any, Literal, cast
from urllib.parse import parse_qsl, urlsplit

from bridge.errors import ConfigError
from bridge.publish.srt import srt_problem
from bridge.redact import redact, register

__all__ = [
    "EVERY_STREAM",
    "SCHEMES",
    "PublishAudio",
    "PublishMode",
    "PublishTarget",
    "for_stream",
    "parse_publish",
    "safe_url",
    "url_problem",
]

PublishMode = Literal["while_live", "always"]
PublishAudio = Literal["aac", "none"]
# What FFmpeg's own muxers and protocols can push (see bridge.publish.muxer).
SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "srt")
_MODES = ("while_live", "always")
_AUDIO = ("aac", "none")
_KEYS = ("stream", "url", "mode", "audio")
_PASSPHRASE = re.compile(r"(?i)(passphrase=)[^&]*")
EVERY_STREAM = "*"  # stream = "*": a push for each of this bridge's doorbells
STREAM_PLACEHOLDER = "{stream}"


@dataclass(frozen=True)
class PublishTarget:
    """One push of a doorbell's stream to a media server (MediaMTX, nginx-rtmp, go2rtc...)."""

    stream: str  # stream name or device id; checked when the account's doorbells are listed
    url: str
    # while_live: push only while something else keeps the stream live (viewers, recording);
    # always: keep the stream live for the push, which keeps the doorbell awake (wired only).
    mode: PublishMode = "while_live"
    audio: PublishAudio = "aac"


def url_problem(url: str) -> str | None:
    """Why ``url`` cannot be a publish target, or None when it can."""
    try:
        parts = urlsplit(url)
    except ValueError as err:
        return f"not a URL: {err}"
    if parts.scheme.lower() not in SCHEMES:
        return f"scheme must be one of {', '.join(SCHEMES)}, got {parts.scheme or 'none'!r}"
    if not parts.hostname:
        return "the URL names no host"
    if parts.scheme.lower() == "srt":
        return srt_problem()
    return None


def _register_secrets(url: str) -> None:
    # The log filter then masks them wherever FFmpeg or we repeat the URL.
    parts = urlsplit(url)
    if parts.password:
        register(parts.password)
    for name, value in parse_qsl(parts.query):
        if name.lower() == "passphrase" and value:
            register(value)


def for_stream(target: PublishTarget, name: str) -> PublishTarget:
    """``target`` as pushed for the stream called ``name``: ``{stream}`` in its URL filled in.

    ``stream = "*"`` stands for one such push per doorbell of this bridge (its share of the
    account); a table naming one stream may use ``{stream}`` too.
    """
    return replace(target, stream=name, url=target.url.replace(STREAM_PLACEHOLDER, name))


def parse_publish(raw: Any) -> list[PublishTarget]:
    """Validate the ``[[publish]]`` array of tables; raises ConfigError naming the bad key."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ConfigError("publish", "expected an array of tables ([[publish]])")
    return [_target(item, i) for i, item in enumerate(raw)]


def _target(item: Any, i: int) -> PublishTarget:
    key = f"publish[{i}]"
    if not isinstance(item, dict):
        raise ConfigError(key, "expected a table")
    for name in item:
        if name not in _KEYS:
            raise ConfigError(f"{key}.{name}", f"unknown key; accepted keys: {', '.join(_KEYS)}")
    for name in ("stream", "url"):
        if not isinstance(item.get(name), str) or not item[name]:
            raise ConfigError(f"{key}.{name}", "expected a non-empty string")
    url: str = item["url"]
    problem = url_problem(url)
    if problem is not None:
        raise ConfigError(f"{key}.url", problem)
    if item["stream"] == EVERY_STREAM and STREAM_PLACEHOLDER not in url:
        # Every doorbell pushing to one path would have them take turns at it.
        raise ConfigError(
            f"{key}.url", f'with stream = "*" the URL needs {STREAM_PLACEHOLDER} in its path'
        )
    _register_secrets(url)
    mode = item.get("mode", "while_live")
    if mode not in _MODES:
        raise ConfigError(f"{key}.mode", f"expected one of {', '.join(_MODES)}, got {mode!r}")
    audio = item.get("audio", "aac")
    if audio not in _AUDIO:
        raise ConfigError(f"{key}.audio", f"expected one of {', '.join(_AUDIO)}, got {audio!r}")
    return PublishTarget(item["stream"], url, cast(PublishMode, mode), cast(PublishAudio, audio))


def safe_url(url: str) -> str:
    """``url`` with any password (and a user name that may be a key) masked, for logs and APIs."""
    try:
        parts = urlsplit(url)
        userinfo = parts.username is not None or parts.password is not None
    except ValueError:
        return "***"
    if userinfo:
        host = parts.netloc.rsplit("@", 1)[1]
        parts = parts._replace(netloc=f"***:***@{host}")
    # SRT carries its secret as a query parameter; the rest of the query is harmless.
    query = _PASSPHRASE.sub(r"\1***", parts.query)
    return redact(parts._replace(query=query).geturl())
