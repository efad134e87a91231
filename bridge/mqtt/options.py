"""The ``[mqtt]`` options: the broker, the topics and Home Assistant discovery.

``MqttOptions`` is the section itself; the loader reads ``password_file`` for the ``password``
secret, as for every secret key. ``broker_address`` checks the URL (``mqtt://`` or ``mqtts://``)
and ``instance_id`` is the one place the bridge's instance id comes from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import NamedTuple
from urllib.parse import urlsplit

from bridge.options import INTERNAL, bounds
from bridge.redact import Secret

__all__ = [
    "DEFAULT_INSTANCE",
    "BrokerAddress",
    "MqttOptions",
    "broker_address",
    "instance_id",
    "problems",
    "topic_base",
]

DEFAULT_INSTANCE = "skybell-bridge"
_DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}
_NODE_ID = re.compile(r"[^A-Za-z0-9_-]+")


@dataclass(frozen=True)
class MqttOptions:
    """Publishing doorbells to an MQTT broker, with Home Assistant discovery; off by default."""

    enabled: bool = False
    url: str = "mqtt://127.0.0.1:1883"  # mqtts:// for TLS, checked against the system CAs
    username: str = ""
    password: Secret | None = None
    topic: str = "skybell"  # every state and command topic starts with this
    discovery: bool = True
    discovery_prefix: str = "homeassistant"
    # How long the Ding (and Motion) binary sensors stay on after a press.
    ding_seconds: float = field(default=10.0, metadata=bounds(1, 3600))
    # Messages kept while the broker is away; the oldest go first when it is full.
    queue_size: int = field(default=1000, metadata=INTERNAL)
    # Reconnect delay: doubled after each failed attempt, up to max_backoff.
    backoff: float = field(default=1.0, metadata=INTERNAL)
    max_backoff: float = field(default=30.0, metadata=INTERNAL)
    keepalive: int = field(default=30, metadata=INTERNAL)
    # How often the doorbells' cloud records (online, battery, Wi-Fi, settings) and the
    # bridge's own figures are read again. Reading the record does not wake a doorbell.
    device_interval: float = field(default=300.0, metadata=INTERNAL)
    stats_interval: float = field(default=30.0, metadata=INTERNAL)

    def __post_init__(self) -> None:
        # The config keys are the loader's business; this guards the tuning values.
        if self.queue_size < 1 or self.backoff <= 0 or self.max_backoff < self.backoff:
            raise ValueError("queue_size must be >= 1, backoff > 0 and max_backoff >= backoff")


class BrokerAddress(NamedTuple):
    """Where the broker is, from ``mqtt.url``."""

    host: str
    port: int
    tls: bool


def broker_address(url: str) -> BrokerAddress:
    """``mqtt://HOST[:PORT]`` or ``mqtts://HOST[:PORT]``; ValueError says what is wrong."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as err:  # a port that is not a number, or out of range
        raise ValueError(f"expected mqtt://HOST:PORT or mqtts://HOST:PORT ({err})") from None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise ValueError(f"expected mqtt://HOST:PORT or mqtts://HOST:PORT, got {url!r}")
    if parts.username or parts.password:
        # A password in the URL would end up in logs and `ps`; it has its own keys.
        raise ValueError("put the credentials in mqtt.username and mqtt.password_file")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"expected no path or query after the port, got {url!r}")
    return BrokerAddress(
        parts.hostname, port or _DEFAULT_PORTS[parts.scheme], parts.scheme == "mqtts"
    )


def problems(options: MqttOptions) -> list[tuple[str, str]]:
    """(key, what is wrong) for each key of an enabled ``[mqtt]`` that cannot work."""
    found: list[tuple[str, str]] = []
    try:
        broker_address(options.url)
    except ValueError as err:
        found.append(("url", str(err)))
    for key in ("topic", "discovery_prefix"):
        value = getattr(options, key)
        # A wildcard or an empty level would subscribe to, or publish over, other clients' topics.
        levels = value.split("/")
        if not value or any(not level or level in ("+", "#") for level in levels):
            found.append(
                (key, f"expected topic levels like skybell or home/skybell, got {value!r}")
            )
        elif "+" in value or "#" in value or any(not c.isprintable() for c in value):
            found.append((key, f"no +, # or control characters in a topic, got {value!r}"))
    if options.password is not None and not options.username:
        found.append(("username", "a password is set, so a username is needed too"))
    return found


def instance_id(options: MqttOptions, instance: str = "") -> str:
    """The id that keeps this bridge's unique ids and discovery topics apart from another's.

    Stable across restarts, so Home Assistant keeps its entities. Two bridges on one broker
    already need different ``mqtt.topic``s, so a non-default topic names the instance. This is
    the one place that reads ``bridge.instance`` (``instance``): set, it names the bridge
    (``skybell-bridge-east``), and its topics are ``<mqtt.topic>/<instance>/...``.
    """
    if instance:
        return f"{DEFAULT_INSTANCE}-{instance}"
    if options.topic == MqttOptions.topic:
        return DEFAULT_INSTANCE
    return f"{DEFAULT_INSTANCE}-{_NODE_ID.sub('_', options.topic).strip('_') or 'x'}"


def topic_base(options: MqttOptions, instance: str = "") -> str:
    """Where this bridge's state and command topics start: ``mqtt.topic``, then
    ``bridge.instance`` when set (``skybell/east``), so two instances never share a topic."""
    return f"{options.topic}/{instance}" if instance else options.topic
