"""MQTT: the doorbells and the bridge in Home Assistant, through discovery, on any broker.

``MqttService`` is the entry point: it takes the ``[mqtt]`` options and the bridge's parts
(``Parts``, implemented by ``bridge.routes.mqtt``) and owns the broker connection
(``MqttLink``). This package imports neither aiohttp.web nor the config module nor another
protocol package. Exports are imported on first use (``bridge.lazy``), so
``bridge.mqtt.options`` loads without aiomqtt.
"""

from typing import TYPE_CHECKING

from bridge.lazy import lazy_exports

if TYPE_CHECKING:
    from .link import LinkStats, MqttLink
    from .options import MqttOptions
    from .parts import Figures, Parts
    from .service import MqttService

__all__ = ["Figures", "LinkStats", "MqttLink", "MqttOptions", "MqttService", "Parts"]

__getattr__ = lazy_exports(
    __name__,
    {
        ".link": ("LinkStats", "MqttLink"),
        ".options": ("MqttOptions",),
        ".parts": ("Figures", "Parts"),
        ".service": ("MqttService",),
    },
)
