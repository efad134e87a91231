"""The ``[events]`` options: where doorbell events come from and how long the log keeps them."""

from __future__ import annotations

from dataclasses import dataclass, field

from bridge.options import CENTURY_DAYS, bounds
from bridge.redact import Secret
from bridge.skybell.triggers import DEFAULT_HEADER

__all__ = ["EventOptions"]


@dataclass(frozen=True)
class EventOptions:
    """Where doorbell events come from: SkyBell webhooks, the local UDP broadcast, polling."""

    # The webhook refuses every call until a secret is set; `triggers add` sends it to SkyBell.
    webhook_secret: Secret | None = None
    webhook_header: str = DEFAULT_HEADER
    # SkyBell's largest payloads (with a preview) are ~25 kB.
    webhook_max_bytes: int = field(default=65536, metadata=bounds(1024, 1 << 20))
    # The doorbell's UDP broadcast only reaches a bridge on its LAN, hence off by default.
    udp_enabled: bool = False
    udp_host: str = "0.0.0.0"
    udp_port: int = field(default=5000, metadata=bounds(1, 65535))
    udp_button_token: str = ""  # empty: the token from SkyBell's documentation
    udp_motion_token: str = ""
    # Polling the activity list is the fallback that always works, a few seconds late.
    poll_enabled: bool = True
    poll_interval: float = field(default=10.0, metadata=bounds(1, 3600))
    poll_max_backoff: float = field(default=300.0, metadata=bounds(1, 3600))
    # Seconds before start whose activities are still reported.
    poll_backfill: float = field(default=0.0, metadata=bounds(0, 30 * 86400))
    # Reports of one press from several sources within this window are one event.
    dedup_window: float = field(default=5.0, metadata=bounds(0, 60))
    log_max_age_days: float = field(default=30.0, metadata=bounds(0, CENTURY_DAYS))
    log_max_rows: int = field(default=100_000, metadata=bounds(100, 100_000_000))
