"""Registering the bridge's webhook with SkyBell: what ``skybell-bridge triggers add|list|remove`` do.

A POST trigger gets every chosen event on one URL, with the payload saying which. A GET trigger
carries no body, so each (device, event) gets its own trigger whose URL query names both; the
receiver builds the event from it. Either way SkyBell sends the shared secret in a custom header.

SkyBell cannot edit a trigger, and its list omits ``meta_config`` (the URL and the secret), so a
trigger is removed by id, by URL where the cloud does show it, or as "every webhook".
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Final, Literal
from urllib.parse import urlencode

from bridge.redact import Secret
from bridge.skybell.models import Device, Trigger
from bridge.skybell.payloads import EVENT_TYPES

if TYPE_CHECKING:  # annotations only: the events options read DEFAULT_HEADER without the client
    from bridge.skybell.client import SkyBellClient

__all__ = [
    "DEFAULT_EVENTS",
    "DEFAULT_HEADER",
    "TRIGGER_EVENTS",
    "WEBHOOK_PATH",
    "add_webhook_triggers",
    "list_triggers",
    "remove_triggers",
    "webhook_url",
]

WEBHOOK_PATH: Final = "/api/skybell/webhook"
DEFAULT_HEADER: Final = "X-Skybell-Bridge-Secret"
# Every event type but our own "unknown" can be subscribed to.
TRIGGER_EVENTS: Final = tuple(t for t in EVENT_TYPES if t != "unknown")
# Telemetry arrives hourly per device and ota rarely matters to automations: opt in for those.
DEFAULT_EVENTS: Final = ("doorbell", "motion", "availability", "vready")


def webhook_url(public_base_url: str) -> str:
    """The webhook URL for a bridge reachable at ``public_base_url`` (``https://host:port``)."""
    return public_base_url.rstrip("/") + WEBHOOK_PATH


async def add_webhook_triggers(
    client: SkyBellClient,
    devices: Sequence[Device],
    url: str,
    *,
    secret: Secret,
    header_name: str = DEFAULT_HEADER,
    events: Sequence[str] = DEFAULT_EVENTS,
    method: Literal["post", "get"] = "post",
) -> list[Trigger]:
    """Create webhook triggers calling ``url`` for ``events`` on each device; returns them."""
    bad = sorted(set(events) - set(TRIGGER_EVENTS))
    if bad or not events:
        raise ValueError(
            f"events must be some of {', '.join(TRIGGER_EVENTS)}; got {', '.join(bad) or 'none'}"
        )
    if not secret:
        raise ValueError("a webhook secret is needed, so the bridge can tell SkyBell's calls apart")
    made: list[Trigger] = []
    for device in devices:
        if method == "post":
            targets = [(url, list(events))]
        else:
            sep = "&" if "?" in url else "?"
            targets = [
                (f"{url}{sep}{urlencode({'event': e, 'device_id': device.id})}", [e])
                for e in events
            ]
        for target, on in targets:
            made.append(
                await client.create_trigger(
                    device.id,
                    target,
                    on,
                    method=method,
                    header_name=header_name,
                    header_value=secret,
                )
            )
    return made


async def list_triggers(
    client: SkyBellClient, devices: Sequence[Device]
) -> list[tuple[Device, Trigger]]:
    """Every trigger (webhook or not) of each device."""
    return [(device, t) for device in devices for t in await client.triggers(device.id)]


async def remove_triggers(
    client: SkyBellClient,
    devices: Sequence[Device],
    *,
    trigger_ids: Collection[str] = (),
    url: str | None = None,
    all_webhooks: bool = False,
) -> list[Trigger]:
    """Delete the chosen triggers (by id, by URL, or every webhook); returns those deleted.

    Raises ValueError when nothing is chosen, or when a given id is not on these devices.
    """
    if not trigger_ids and url is None and not all_webhooks:
        raise ValueError("choose triggers to remove: ids, a URL, or all webhooks")
    base = url.split("?", 1)[0] if url else None
    chosen: list[Trigger] = []
    for _device, trigger in await list_triggers(client, devices):
        by_url = base is not None and trigger.url.split("?", 1)[0] == base
        webhook = trigger.type == "webhook" and all_webhooks
        if trigger.id in trigger_ids or by_url or webhook:
            chosen.append(trigger)
    missing = set(trigger_ids) - {t.id for t in chosen}
    if missing:
        raise ValueError(f"no such trigger on these devices: {', '.join(sorted(missing))}")
    for trigger in chosen:
        await client.delete_trigger(trigger.device_id, trigger.id)
    return chosen
