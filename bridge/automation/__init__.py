"""Home automations: the SwitchBot API v1.1 client, its errors and its daily call budget.

Exports are imported on first use (``bridge.lazy``), so ``bridge.automation.rules`` loads
without the SwitchBot client.
"""

from typing import TYPE_CHECKING

from bridge.lazy import lazy_exports

if TYPE_CHECKING:
    from bridge.automation.budget import DAILY_LIMIT, BudgetUsage, CallBudget
    from bridge.automation.switchbot import DEFAULT_API_URL, SwitchBotClient, sign, signed_headers
    from bridge.automation.switchbot_errors import (
        AutomationError,
        BudgetExhausted,
        CommandNotSupported,
        DeviceNotFound,
        DeviceOffline,
        DeviceTypeError,
        HubOffline,
        SwitchBotAuthError,
        SwitchBotBadResponse,
        SwitchBotError,
        SwitchBotRateLimited,
        SwitchBotSystemError,
        SwitchBotUnavailable,
    )
    from bridge.automation.switchbot_models import (
        Scene,
        SwitchBotDevice,
        SwitchBotDeviceStatus,
        Webhook,
        find_scene,
        find_switchbot_device,
    )

__all__ = [
    "DAILY_LIMIT",
    "DEFAULT_API_URL",
    "AutomationError",
    "BudgetExhausted",
    "BudgetUsage",
    "CallBudget",
    "CommandNotSupported",
    "DeviceNotFound",
    "DeviceOffline",
    "DeviceTypeError",
    "HubOffline",
    "Scene",
    "SwitchBotAuthError",
    "SwitchBotBadResponse",
    "SwitchBotClient",
    "SwitchBotDevice",
    "SwitchBotDeviceStatus",
    "SwitchBotError",
    "SwitchBotRateLimited",
    "SwitchBotSystemError",
    "SwitchBotUnavailable",
    "Webhook",
    "find_scene",
    "find_switchbot_device",
    "sign",
    "signed_headers",
]

__getattr__ = lazy_exports(
    __name__,
    {
        "bridge.automation.budget": (
            "DAILY_LIMIT",
            "BudgetUsage",
            "CallBudget",
        ),
        "bridge.automation.switchbot": (
            "DEFAULT_API_URL",
            "SwitchBotClient",
            "sign",
            "signed_headers",
        ),
        "bridge.automation.switchbot_errors": (
            "AutomationError",
            "BudgetExhausted",
            "CommandNotSupported",
            "DeviceNotFound",
            "DeviceOffline",
            "DeviceTypeError",
            "HubOffline",
            "SwitchBotAuthError",
            "SwitchBotBadResponse",
            "SwitchBotError",
            "SwitchBotRateLimited",
            "SwitchBotSystemError",
            "SwitchBotUnavailable",
        ),
        "bridge.automation.switchbot_models": (
            "SwitchBotDevice",
            "SwitchBotDeviceStatus",
            "Scene",
            "Webhook",
            "find_switchbot_device",
            "find_scene",
        ),
    },
)
