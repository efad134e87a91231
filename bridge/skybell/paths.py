"""Every SkyBell cloud path in one table, so a correction is a one-line change.

Entries marked [U] are not yet verified against the real service (see REFERENCE.md).
Each entry is (method, path template); templates are relative to the configured base URL.
"""

from __future__ import annotations

from typing import Final

__all__ = ["ACTIVITY_DEVICE_PARAM", "FALSE_DATA_OK", "PATHS", "PUBLIC"]

PATHS: Final[dict[str, tuple[str, str]]] = {
    "login": ("POST", "/login/"),
    "refresh": ("PUT", "/token/"),
    "logout": ("GET", "/logout/"),  # [U] GET per the doc, POST per one client
    "user": ("GET", "/user/"),
    "devices": ("GET", "/devices/"),
    "device": ("GET", "/devices/{device_id}/"),
    "settings": ("POST", "/devices/{device_id}/settings/"),
    "snapshot": ("GET", "/devices/{device_id}/snapshot/"),
    "reboot": ("POST", "/devices/{device_id}/reboot/"),
    # [U] The seed documents the call (file_name, answer "Tested tone", data false), not its path.
    "play_tone": ("POST", "/devices/{device_id}/tones/test/"),
    "live_start": ("POST", "/devices/{device_id}/videostream/"),
    "live_stop": ("DELETE", "/devices/{device_id}/videostream/"),
    "activities": ("GET", "/activity"),  # [U] the doc's prose says /activities/
    "activity_video": ("GET", "/activity/{activity_id}/video"),
    "activity_delete": ("DELETE", "/activity/{activity_id}"),
    "triggers": ("GET", "/devices/{device_id}/triggers"),
    "trigger_create": ("POST", "/devices/{device_id}/triggers"),
    "trigger_delete": ("DELETE", "/devices/{device_id}/triggers/{trigger_id}"),  # [U]
    "health": ("GET", "/health"),  # [U] or /status
}

# The activity list's device filter. [U] `device` per the doc, `device_id` per one client.
ACTIVITY_DEVICE_PARAM: Final = "device"

# Endpoints that need no authentication.
PUBLIC: Final = frozenset({"login", "refresh", "health"})

# Endpoints whose success legitimately carries `data: false` ("Ended stream"); elsewhere a
# 200 with data false is the cloud's way of refusing ("Not your device").
FALSE_DATA_OK: Final = frozenset({"live_stop", "logout", "play_tone"})
